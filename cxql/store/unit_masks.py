"""A layer's unit masks in memory (CSR) and on disk (sorted positions or bit-packed rows).

Masks are kept in whichever of two exact encodings is smaller: sorted active
positions per unit (CSR; best for the sparse 0.5 % vision masks) or bit-packed
rows [U, ceil(N/8)] (best for dense text masks). Alongside, each unit keeps a
histogram over signature ids (``hist``), which is all IoU ever needs:
``|M AND F| = sum_s F(s) * hist_u(s)``. Thresholding, which makes the masks,
is :mod:`cxql.store.units`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .ids import SampleLocalIds


@dataclass
class UnitMasks:
    """A layer's masks in CSR form: unit u is active at ``positions[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray    # int64 [U + 1]
    positions: np.ndarray  # int64 [nnz], sorted within each unit

    @property
    def n_units(self) -> int:
        return len(self.indptr) - 1

    def unit(self, u: int) -> np.ndarray:
        return self.positions[self.indptr[u]:self.indptr[u + 1]]


def masks_from_pairs(pairs: Iterator[tuple[np.ndarray, np.ndarray]], n_units: int) -> UnitMasks:
    """Collect (unit ids, positions) pairs, each batch ordered by unit then position, into CSR."""
    per_unit: list[list[np.ndarray]] = [[] for _ in range(n_units)]
    for unit, pos in pairs:
        bounds = np.searchsorted(unit, np.arange(n_units + 1))
        for u in np.flatnonzero(np.diff(bounds)):
            per_unit[u].append(pos[bounds[u]:bounds[u + 1]])
    return csr_from_lists([np.concatenate(p).astype(np.int64) if p else np.zeros(0, np.int64) for p in per_unit])


def masks_from_dense(masks: np.ndarray) -> UnitMasks:
    """Bool [N, U] -> CSR."""
    masks = np.asarray(masks, dtype=bool)
    return csr_from_lists([np.flatnonzero(masks[:, u]) for u in range(masks.shape[1])])


def csr_from_lists(per_unit: list[np.ndarray]) -> UnitMasks:
    indptr = np.zeros(len(per_unit) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(p) for p in per_unit])
    positions = np.concatenate(per_unit).astype(np.int64) if per_unit else np.zeros(0, np.int64)
    return UnitMasks(indptr, positions)


def histograms(masks: UnitMasks, position_sig: "np.ndarray | SampleLocalIds") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit signature histograms in CSR form: (indptr, signature ids, counts)."""
    sig_parts, count_parts, sizes = [], [], []
    for u in range(masks.n_units):
        sig = np.asarray(position_sig[masks.unit(u)], dtype=np.int64)
        ids, counts = np.unique(sig, return_counts=True)
        sig_parts.append(ids)
        count_parts.append(counts.astype(np.int64))
        sizes.append(len(ids))
    indptr = np.zeros(masks.n_units + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(sizes)
    sig = np.concatenate(sig_parts) if sig_parts else np.zeros(0, np.int64)
    cnt = np.concatenate(count_parts) if count_parts else np.zeros(0, np.int64)
    return indptr, sig, cnt


def choose_encoding(masks: UnitMasks, n_positions: int) -> str:
    """'positions' (4 bytes per active position) or 'bits' (N/8 bytes per unit), whichever is smaller."""
    as_positions = 4 * len(masks.positions) if n_positions < 2**32 else 8 * len(masks.positions)
    as_bits = masks.n_units * ((n_positions + 7) // 8)
    return "bits" if as_bits < as_positions else "positions"


def encode_bits(masks: UnitMasks, n_positions: int) -> np.ndarray:
    """CSR -> uint8 [U, ceil(N/8)], little bit order."""
    out = np.zeros((masks.n_units, (n_positions + 7) // 8), dtype=np.uint8)
    for u in range(masks.n_units):
        dense = np.zeros(n_positions, dtype=bool)
        dense[masks.unit(u)] = True
        out[u] = np.packbits(dense, bitorder="little")
    return out


def decode_bits_row(row: np.ndarray, n_positions: int) -> np.ndarray:
    """One bit-packed unit row -> its sorted active positions."""
    return np.flatnonzero(np.unpackbits(row, count=n_positions, bitorder="little"))
