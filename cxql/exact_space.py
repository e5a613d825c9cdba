"""The data of SEARCH ... EXACT: a store's signatures as (signature, concept) pairs, and one unit's histogram.

Counts. A formula's mask is a set of signatures, so |F| = sum n_s and
|M AND F| = sum m_s over its signatures (n_s positions, m_s of them in the
unit). Expanding a prefix G scores all 3K children at once from |G AND c|
(a bincount over G's signature-concept pairs, shared by every unit) and
|M AND G AND c| (a bincount over the unit's few signature-concept pairs).

"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

OR, AND, AND_NOT = 0, 1, 2
Key = tuple  # (c1, c2, op2, c3, op3, ...) of store indices and ops
CACHE_BYTES = 256 << 20  # |G AND c| vectors kept for reuse by later units
PAIR_CELLS = 1 << 24     # the whole |c AND d| table is kept when it has at most this many cells (128 MB)


def leaves(key: Key) -> tuple[int, ...]:
    """The concepts of a key, in leaf order."""
    return (key[0],) + tuple(key[1::2])


def within_pairs(ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (i, j), i == j included, of entries that share a group of a CSR pointer ``ptr``:
    (group, i, j) as index arrays, group by group."""
    n = np.diff(ptr)
    sq = n * n
    group = np.repeat(np.arange(len(n)), sq)
    within = np.arange(int(sq.sum())) - np.repeat(np.cumsum(sq) - sq, sq)
    width = n[group]
    start = ptr[:-1][group]
    return group, start + within // np.maximum(width, 1), start + within % np.maximum(width, 1)


class Space:
    """A store's signatures: which concepts each holds, and how many positions."""

    def __init__(self, sig: np.ndarray, concept: np.ndarray, counts: np.ndarray, n_concepts: int) -> None:
        order = np.lexsort((concept, sig))
        self.sig = np.asarray(sig, np.int64)[order]                    # signature-major pairs
        self.concept = np.asarray(concept, np.int64)[order]
        self.counts = np.asarray(counts, np.int64)
        self.n_concepts = n_concepts
        self.weight = self.counts[self.sig].astype(np.float64)
        self.sig_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.sig, minlength=len(self.counts)))])
        self.sizes = np.bincount(self.concept, weights=self.weight, minlength=n_concepts).astype(np.int64)
        self.candidates = np.flatnonzero(self.sizes > 0)                # non-empty concepts, store order
        self.slot = np.full(n_concepts, -1, np.int64)
        self.slot[self.candidates] = np.arange(len(self.candidates))
        self.cand_sizes = self.sizes[self.candidates]
        by_concept = np.argsort(self.concept, kind="stable")
        self.concept_sigs = self.sig[by_concept]                        # concept-major: each concept's signatures
        self.concept_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.concept, minlength=n_concepts))])
        self._columns: dict[int, np.ndarray] = {}
        self._overlaps: dict[Key, np.ndarray] = {}
        self._sizes: dict[Key, int] = {}
        self._pairs: np.ndarray | None = None
        self.n_positions = int(self.counts.sum())

    @classmethod
    def from_member(cls, member: np.ndarray, counts: np.ndarray) -> "Space":
        """From a bool [S, K] membership table."""
        sig, concept = np.nonzero(np.asarray(member, bool))
        return cls(sig, concept, counts, member.shape[1])

    def pairs_of(self, rows: np.ndarray) -> np.ndarray:
        """Indices of the (signature, concept) pairs of signatures ``rows``, signature by signature."""
        first, n = self.sig_ptr[rows], self.sig_ptr[rows + 1] - self.sig_ptr[rows]
        return np.repeat(first - np.cumsum(n) + n, n) + np.arange(int(n.sum()))

    def some_overlaps(self, key: Key, mask: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """int64 [len(slots)]: |G AND c| for the candidates ``slots`` only (the full vector when cached or cheaper)."""
        full = self._overlaps.get(key)
        if full is not None:
            return full[slots]
        ks = self.candidates[slots]
        first, n = self.concept_ptr[ks], self.concept_ptr[ks + 1] - self.concept_ptr[ks]
        if int(n.sum()) * 2 > len(self.sig):  # as dear as all of G's pairs: compute (and cache) them all
            return self.overlaps(key, mask)[slots]
        take = np.repeat(first - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        weight = np.where(mask, self.counts, 0)[self.concept_sigs[take]]
        return np.bincount(np.repeat(np.arange(len(ks)), n), weights=weight, minlength=len(ks)).astype(np.int64)

    def column(self, k: int) -> np.ndarray:
        """bool [S]: signatures holding concept k."""
        col = self._columns.get(k)
        if col is None:
            col = np.zeros(len(self.counts), bool)
            col[self.sig[self.concept == k]] = True
            self._columns[k] = col
        return col

    def mask(self, key: Key) -> np.ndarray:
        """bool [S]: the signatures of the formula ``key``."""
        out = self.column(key[0]).copy()
        for i in range(1, len(key), 2):
            col, op = self.column(key[i]), key[i + 1]
            out = out | col if op == OR else out & col if op == AND else out & ~col
        return out

    def overlaps(self, key: Key, mask: np.ndarray) -> np.ndarray:
        """int64 [K']: |G AND c| for the candidates (cached per formula: every unit shares it)."""
        out = self._overlaps.get(key)
        if out is None:
            rows = np.flatnonzero(mask)
            if len(rows) * 4 < len(self.counts):  # few signatures: gather just their pairs
                take = self.pairs_of(rows)
            else:
                take = mask[self.sig]
            out = np.bincount(self.concept[take], weights=self.weight[take], minlength=self.n_concepts)
            out = out[self.candidates].astype(np.int64)
            if len(self._overlaps) * out.nbytes > CACHE_BYTES:
                self._overlaps.clear()
                self._sizes.clear()
            self._overlaps[key] = out
            self._sizes[key] = int(self.counts[mask].sum())
        return out

    def _pair_table(self, k: int, chunk: int = 1 << 22) -> np.ndarray:
        """int64 [K', K']: |c AND d| as bincounts over the concept pairs of each signature, a block of
        signatures (about ``chunk`` pairs) at a time so the temporaries stay small."""
        out = np.zeros(k * k, np.float64)  # sums of counts: exact below 2**53 positions
        pairs = np.cumsum(np.diff(self.sig_ptr) ** 2)
        start = 0
        while start < len(pairs):
            done = int(pairs[start - 1]) if start else 0
            stop = max(start + 1, int(np.searchsorted(pairs, done + chunk, side="right")))
            ptr = self.sig_ptr[start:stop + 1]
            _, first, second = within_pairs(ptr - ptr[0])
            first, second = first + ptr[0], second + ptr[0]
            flat = self.slot[self.concept[first]] * k + self.slot[self.concept[second]]
            out += np.bincount(flat, weights=self.weight[first], minlength=k * k)
            start = stop
        return out.astype(np.int64).reshape(k, k)

    def cached(self, key: Key) -> tuple[np.ndarray, int] | None:
        """(|G AND c| for the candidates, |G|) when G's overlaps are in the cache, else None."""
        out = self._overlaps.get(key)
        if out is None and len(key) == 1 and self._pairs is not None and self.slot[key[0]] >= 0:
            return self._pairs[self.slot[key[0]]], int(self.sizes[key[0]])
        return None if out is None else (out, self._sizes[key])

    def pair_sizes(self, slots: np.ndarray) -> np.ndarray:
        """int64 [len(slots), K']: |c AND d| for the candidates ``slots`` (rows) and every candidate d.

        Built once for the whole store (``_pair_table``) when it has at most PAIR_CELLS cells; else row by
        row from ``overlaps``, which caches them.
        """
        k = len(self.candidates)
        if self._pairs is None and k * k <= PAIR_CELLS:
            self._pairs = self._pair_table(k)
        if self._pairs is not None:
            return self._pairs[slots]
        rows = [self.overlaps((int(c),), self.column(int(c))) for c in self.candidates[slots]]
        return np.stack(rows) if rows else np.zeros((0, k), np.int64)


class Unit:
    """One unit's signature histogram: its E signatures and the positions it fires on in each."""

    def __init__(self, space: Space, sigs: np.ndarray, hits: np.ndarray) -> None:
        keep = np.asarray(hits) > 0
        self.sigs = np.asarray(sigs, np.int64)[keep]
        big = space.n_positions > 0 and space.n_positions ** 2 * 64 >= 2 ** 62  # int64 headroom for b*m, sums
        self.dtype = object if big else np.int64
        self.m = np.asarray(hits, np.int64)[keep].astype(self.dtype)
        self.fp = (space.counts[self.sigs] - np.asarray(hits, np.int64)[keep]).astype(self.dtype)
        self.size = int(self.m.sum()) if len(self.m) else 0
        if len(np.unique(self.sigs)) != len(self.sigs):
            raise ValueError("a unit's histogram lists a signature twice")
        n = space.sig_ptr[self.sigs + 1] - space.sig_ptr[self.sigs]
        rows, slots = np.repeat(np.arange(len(self.sigs)), n), space.slot[space.concept[space.pairs_of(self.sigs)]]
        ok = slots >= 0
        self.row, self.slot = rows[ok], slots[ok]      # the unit's (signature, concept) pairs, by signature
        self.row_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.row, minlength=len(self.sigs)))])
        self.n_cand = len(space.candidates)
        self.sizes_c = space.cand_sizes
        self.fast = space.n_positions ** 2 * 4 < 2 ** 53     # weighted sums stay exact in float64
        self.tp_c = self.spread(self.m)
        self.fp_c = self.spread(self.fp)
        # N(c): c's positions on signatures where the unit never fires
        self.out_c = (space.cand_sizes - self.tp_c - self.fp_c).astype(self.dtype)
        self._member: np.ndarray | None = None
        self._off: dict[int, np.ndarray] = {}
        self._w: dict[int, np.ndarray] = {}
        self._w_tag: tuple | None = None
        self._candidates, self._n_concepts = space.candidates, space.n_concepts

    @property
    def member(self) -> np.ndarray:
        """bool [K, E]: which of the unit's signatures each concept (store index) holds."""
        if self._member is None:
            self._member = np.zeros((self._n_concepts, len(self.sigs)), bool)
            self._member[self._candidates[self.slot], self.row] = True
        return self._member

    def off_rows(self, space: "Space", ds: np.ndarray) -> np.ndarray:
        """[J, K']: N(d_j AND c), the positions of d_j AND c where the unit never fires (kept per concept)."""
        return _kept_rows(self._off, ds, lambda new: (
            (pairs - row).astype(self.dtype)
            for row, pairs in zip(self.spread_rows((self.m + self.fp) * self.member[new]),
                                  space.pair_sizes(space.slot[new]))))

    def weight_rows(self, ds: np.ndarray, w: np.ndarray, tag: tuple) -> np.ndarray:
        """[J, K']: W(d_j AND c), the weights ``w`` [E] of the unit's signatures in both (kept per concept
        while ``tag``, the incumbent the weights belong to, stays the same)."""
        if self._w_tag != tag:
            self._w_tag, self._w = tag, {}
        return _kept_rows(self._w, ds, lambda new: self.spread_rows(w * self.member[new]))

    def inside(self, space: "Space", key: Key) -> np.ndarray:
        """bool [E]: which of the unit's signatures the formula ``key`` holds (no pass over the whole store)."""
        member = self.member
        out = member[key[0]].copy()
        for i in range(1, len(key), 2):
            col, op = member[key[i]], key[i + 1]
            out = out | col if op == OR else out & col if op == AND else out & ~col
        return out

    def spread_rows(self, values: np.ndarray) -> np.ndarray:
        """[J, K']: ``spread`` of each row of ``values`` [J, E] (exact), visiting only its non-zero entries."""
        j, s = np.nonzero(values)
        n = self.row_ptr[s + 1] - self.row_ptr[s]
        take = np.repeat(self.row_ptr[s] - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        flat = np.repeat(j, n) * self.n_cand + self.slot[take]
        weight = np.repeat(values[j, s], n)
        if self.fast:
            out = np.bincount(flat, weights=weight.astype(np.float64), minlength=len(values) * self.n_cand)
            return out.astype(np.int64).reshape(len(values), self.n_cand)
        out = np.zeros(len(values) * self.n_cand, self.dtype)
        np.add.at(out, flat, weight)
        return out.reshape(len(values), self.n_cand)

    def spread(self, values: np.ndarray) -> np.ndarray:
        """[K']: per candidate concept, the sum of ``values`` [E] over the unit's signatures in it (exact)."""
        if self.fast:
            out = np.bincount(self.slot, weights=values[self.row].astype(np.float64), minlength=self.n_cand)
            return out.astype(np.int64)
        out = np.zeros(self.n_cand, self.dtype)
        np.add.at(out, self.slot, values[self.row])
        return out


def _kept_rows(kept: dict[int, np.ndarray], ds: np.ndarray,
               make: Callable[[list[int]], Iterable[np.ndarray]]) -> np.ndarray:
    """[J, K']: the row of each concept in ``ds``, computed by ``make`` (for the ones not ``kept`` yet, in one
    batch) and kept for later calls."""
    new = [int(d) for d in dict.fromkeys(ds.tolist()) if int(d) not in kept]
    if new:
        kept.update(zip(new, make(new)))
    return np.stack([kept[int(d)] for d in ds])
