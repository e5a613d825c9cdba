"""A layer's activations at the store's positions, ranked per unit, for AUROC, p-values and AUPRC.

Each position gets the unit's value that its mask is made from: for a
spatial layer [samples, units, h, w], the map upsampled bilinearly to the
mask shape (as :func:`cxql.store.units.active_positions` does, in the same
precision, so ties and order agree with the masks); for a layer
[samples, units], its sample's value at every position of the sample. So
``auroc`` is measured at position level (pixels, tokens, pairs), the level
at which IoU is; on stores with one position per sample it is sample level.

The AUROC and the Mann-Whitney test do not depend on the threshold: they
rank every position. A unit's ranking costs one sort of N values; the last
two are kept (a ranking holds 16 N bytes), the per-signature rank sums
(8 S bytes) for every unit asked.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .errors import QueryError
from .metrics import AUROC
from .ranking_metrics import Ranking, p_value
from .store import ConceptStore, Layer
from .store import units as un

KEEP_RANKINGS = 2
#: Peak bytes per position of ranking one unit while ``KEEP_RANKINGS`` rankings are kept (16 bytes each:
#: order and doubled ranks), plus the values, their sorted copy and the formula's positions.
RANK_BYTES_PER_POSITION = 16 * KEEP_RANKINGS + 32


def masks_only_error(layer: Layer, what: str = "AUROC, p-values and AUPRC") -> QueryError:
    """The error for a layer that keeps only masks, saying how to add its activations."""
    return QueryError(f"layer {layer.name!r} keeps only masks, and {what} rank positions by the unit's "
                      "activations", hint=f"re-add it with its activations: cxql units add STORE {layer.name} "
                      "ACTIVATIONS.npy --replace (without --masks-only), or store.add_units(...) in Python")


class ActivationSource:
    """Per-unit rankings of one layer's activations over the store's positions."""

    def __init__(self, store: ConceptStore, layer: Layer) -> None:
        if layer.activations is None:
            raise masks_only_error(layer)
        n = store.n_positions
        if n * (n + 1) >= 2**53:  # doubled rank sums must stay exact in float64 (cxql.ranking_metrics)
            raise QueryError(f"ranking {n:,} positions is beyond exact float64 rank sums (at most 94,906,265 "
                             "positions); AUROC, p-values and AUPRC are not available on this store")
        self.store, self.layer = store, layer
        self._rankings: OrderedDict[int, Ranking] = OrderedDict()
        self._sums: dict[int, tuple[np.ndarray, float]] = {}
        self._sample_peaks: dict[int, np.ndarray] = {}

    def values(self, u: int) -> np.ndarray:
        """[N]: unit u's value at every position, in the precision masks compare it."""
        acts = self.layer.activations
        dtype = un.compare_dtype(acts.dtype)
        column = np.array(acts[:, u], dtype=dtype)
        if column.ndim == 3:
            import torch  # here: opening a store must not wait for torch

            shape = tuple(self.store.mask_shape or ())
            maps = torch.from_numpy(column[:, None])
            if tuple(maps.shape[2:]) != shape:
                maps = torch.nn.functional.interpolate(maps, size=shape, mode="bilinear", align_corners=False)
            return maps.reshape(-1).numpy()
        if self.store.kind == "tokens":  # one value per token: already one per position
            return column
        return np.repeat(column, np.diff(self.store.sample_offsets))

    def positives(self, sig_mask: np.ndarray) -> np.ndarray:
        """bool [N]: where a formula holds, from its signature mask."""
        return np.asarray(sig_mask, dtype=bool)[np.asarray(self.store.position_signatures[:], dtype=np.int64)]

    def scores(self, u: int, sig_mask: np.ndarray, size: int, positives: np.ndarray) -> dict[str, float]:
        """auroc, p_value and auprc of a formula (signature mask, |F|, its positions) for unit u.

        ``auroc`` comes from the same exact integers and the same division as
        the AUROC metric that SEARCH maximises, so the two agree to the bit.
        """
        sums, tie = self.rank_sums(u)
        rank2 = int(round(float(sums[np.asarray(sig_mask, dtype=bool)].sum())))  # an exact integer in float64
        n = self.store.n_positions
        return {"auroc": float(AUROC(rank2, size, 0, n)), "p_value": p_value(rank2, size, n, tie),
                "auprc": self.ranking(u).average_precision(positives), "sample_auroc": self.sample_auroc(u, positives)}

    def sample_auroc(self, u: int, positives: np.ndarray) -> float:
        """AUROC at sample level: each sample scored by the unit's peak over its positions, positive
        where the formula holds anywhere in it (a scene, an image-level label)."""
        starts = self.store.sample_offsets[:-1]
        if u not in self._sample_peaks:
            self._sample_peaks[u] = np.maximum.reduceat(self.values(u), starts)
        labels = np.logical_or.reduceat(np.asarray(positives, dtype=bool), starts)
        ranking = Ranking.of(self._sample_peaks[u])
        rank2 = int(ranking.rank2[np.argsort(ranking.order)][labels].sum())
        return float(AUROC(rank2, int(labels.sum()), 0, len(labels)))

    def ranking(self, u: int) -> Ranking:
        if u in self._rankings:
            self._rankings.move_to_end(u)
            return self._rankings[u]
        ranking = Ranking.of(self.values(u))
        self._rankings[u] = ranking
        while len(self._rankings) > KEEP_RANKINGS:
            self._rankings.popitem(last=False)
        return ranking

    def rank_sums(self, u: int) -> tuple[np.ndarray, float]:
        """(float64 [S] doubled rank sums per signature, tie term) of unit u."""
        if u not in self._sums:
            r = self.ranking(u)
            self._sums[u] = (r.rank_sums(self.store.position_signatures, self.store.n_signatures), r.tie_term)
        return self._sums[u]

    def rank_hists(self, units: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR (indptr, signature ids, 2R) over every unit of the layer, filled for ``units`` only:
        what a searcher reads as the units' histograms when it maximises AUROC."""
        n_units = self.layer.n_units
        parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for u in units:
            sums = self.rank_sums(u)[0]
            ids = np.flatnonzero(sums)
            parts[u] = (ids, sums[ids])
        sizes = [len(parts[u][0]) if u in parts else 0 for u in range(n_units)]
        indptr = np.zeros(n_units + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(sizes)
        ordered = [parts[u] for u in range(n_units) if u in parts]
        sig = np.concatenate([p[0] for p in ordered]).astype(np.int64) if ordered else np.zeros(0, np.int64)
        weights = np.concatenate([p[1] for p in ordered]) if ordered else np.zeros(0)
        return indptr, sig, weights
