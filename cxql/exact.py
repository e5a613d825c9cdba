"""SEARCH ... EXACT: the proven-best formula of at most L leaves, by branch and bound over signatures.

The space (SPEC section 7). Left-deep formulas over distinct concepts:
``f1 = c``, ``f(i+1) = f(i) OR c | f(i) AND c | f(i) AND NOT c``, at most L
leaves. A formula is the *key* ``(c1, c2, op2, c3, op3, ...)`` of concept
store indices and ops (0 OR, 1 AND, 2 AND NOT). The answer is the formula of
greatest IoU; ties go to the shorter one, then to the smaller key in tuple
order (the *canonical order*: by first leaf, then for each step by its
concept, then its op; for one parent that is the order compexp's beam
generates children in). When the best IoU is 0 the answer is NONE, as beam
search answers. Exact comparisons are integer cross products, never floats.

Why pieces can be left out (each keeps the optimum, given the tie rule):

* Empty concepts: ``f OR e = f``, ``f AND NOT e = f`` (same mask, longer),
  ``f AND e`` is empty; a formula that starts with e equals a shorter one.
* A child with its parent's mask, or an empty one, and all its extensions:
  dropping the child's leaf (or, for an empty prefix, the whole prefix before
  the next OR) gives the same mask with fewer leaves.
* ``(d OR c)`` and ``(d AND c)`` with c < d: ``(c OR d)`` / ``(c AND d)``
  has the same mask and a smaller key, and so does every extension.

Counts. A formula's mask is a set of signatures, so |F| = sum n_s and
|M AND F| = sum m_s over its signatures (n_s positions, m_s of them in the
unit). Expanding a prefix G scores all 3K children at once from |G AND c|
(a bincount over G's signature-concept pairs, shared by every unit) and
|M AND G AND c| (a bincount over the unit's few signature-concept pairs).

The bound (admissible). Take a prefix H with r leaves still to add, and an
extension F. Either every step left is OR: then F = H + the part of each of
r OR-ed concepts not yet in, so F holds all of H. Or at most r - 1 steps are
OR: then F lies inside H plus r - 1 OR-ed concepts, each step at most
adding one concept's signatures. Relax both families to sets of signatures
(overlaps counted twice, which only allows more): "all of H plus any parts
of r concepts" and "any part of H plus any parts of r - 1 concepts". For
v = a/b, F has IoU >= v iff b*tp(F) - a*fp(F) >= a*|M| (multiply out), and
over a relaxed family the left side is largest when each free signature is
taken iff w_s = b*m_s - a*fp_s > 0. So with h(X) = sum of max(0, w_s) over
X's signatures and top_j the j largest h(c) over concepts::

    Phi(v) = max(b*tp(H) - a*fp(H) + top_r, h(H) + top_(r-1)) - a*|M|

and Phi(v) < 0 proves no extension reaches v: the node is pruned; Phi(v) = 0
prunes it unless an extension could tie v and still win by being shorter.
Only unit signatures have w_s > 0, so h costs a bincount over the unit's
(signature, concept) pairs. The relaxations' optimum itself (a node's
priority, and ``bound`` when stopped early) comes from Dinkelbach steps on
the same sums, in integers, so it ends exactly. At the root, every formula
lies inside its first leaf plus its OR-ed concepts: top_L.

The last step (nodes with one leaf to go). A child's value b*tp - a*fp
splits into W(X), the sum of w_s (signs kept) over the unit's signatures in
X, known per unit from its own (signature, concept) pairs, and N(X), X's
positions on signatures where the unit never fires, each costing a. For
H = A op d and any concept c, with n = N(H AND c): H OR c is worth
W(H OR c) - a*(N(H) + N(c) - n), H AND c is W(H AND c) - a*n and H AND NOT c
is W(H AND NOT c) - a*(N(H) - n), so an interval [lo, hi] holding n bounds
all three exactly as far as the interval is tight. n is derived from
t = N(A AND d AND c), and |A AND c| (counted when A was expanded) and
|d AND c| (per concept, once per store) less the unit's positions give
x_A = N(A AND c), x_d = N(d AND c): t <= min(x_A, x_d, N(A AND d)) and
t >= max(0, x_A + x_d - N(c), x_A + N(A AND d) - N(A), x_d + N(A AND d) - N(d)),
each "two subsets of one set overlap by at least their sizes' excess over
it". Then n = x_A + x_d - t (OR), t (AND) or x_A - t (AND NOT); always
0 <= n <= min(N(H), N(c)), the fallback when A's counts left the cache.
Every step is an identity or an inequality on the measure N, so the bound
is admissible; tests/test_exact.py checks it against every child of every
prefix of random tiny stores. A node whose children all fall below the
incumbent is dropped when its parent is expanded (all siblings at once,
first with the crude interval [0, min(N(H), N(c))], then the exact one
where that is not enough); a popped one counts |H AND c| only for the
concepts whose children may still win.

Search. A greedy beam (width 5, distinct leaves) seeds the incumbent; then
best-first on the bound: children inherit their parent's bound as priority,
and a popped node is re-tested against the incumbent and expanded. Every
formula is scored when its parent is expanded or proven unable to win, and
a subtree is only dropped with a proof, so an empty frontier means the
incumbent is optimal. A deadline or cancel stops early: the answer is the
incumbent, and ``bound`` is the largest priority left (each is >= its
subtree) after the top nodes are tightened to their own relaxation (for at
most 50 ms; during a full proof that tightening only cost time, as the
work barely depends on the order), so the gap is ``bound - iou``.

Limits. The bound is tight when a unit's mask follows concepts; when a unit
fires on many scattered signatures at high precision, the "any part of a
concept" relaxations promise far more than formulas can deliver, and the
proof may take minutes (WITHIN then returns the gap honestly).

Repeated concepts. compexp's beam may repeat a concept. For L <= 3 every
such formula has the mask of a shorter distinct-leaf one or is empty
(checked over all Boolean functions in tests/test_exact.py), so EXACT is
optimal over compexp's whole space there. From L = 4 on it is not:
(((x AND NOT y) OR z) AND x) is x AND (NOT y OR z), which no distinct
left-deep formula over x, y, z writes; EXACT then proves optimality over
the distinct space only, and a beam answer with a repeated leaf may score
higher.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

OR, AND, AND_NOT = 0, 1, 2
Key = tuple  # (c1, c2, op2, c3, op3, ...) of store indices and ops
CACHE_BYTES = 256 << 20  # |G AND c| vectors kept for reuse by later units


def leaves(key: Key) -> tuple[int, ...]:
    """The concepts of a key, in leaf order."""
    return (key[0],) + tuple(key[1::2])


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

    def cached(self, key: Key) -> tuple[np.ndarray, int] | None:
        """(|G AND c| for the candidates, |G|) when G's overlaps are in the cache, else None."""
        out = self._overlaps.get(key)
        return None if out is None else (out, self._sizes[key])


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
        self.out_c = (space.cand_sizes - self.tp_c - self.fp_c).astype(self.dtype)  # N(c): c's positions off M's signatures
        self._member: np.ndarray | None = None
        self._off: dict[int, np.ndarray] = {}
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
        new = [int(d) for d in dict.fromkeys(ds.tolist()) if int(d) not in self._off]
        if new:
            unit_part = self.spread_rows((self.m + self.fp) * self.member[new])
            for d, row in zip(new, unit_part):
                self._off[d] = (space.overlaps((d,), space.column(d)) - row).astype(self.dtype)
        return np.stack([self._off[int(d)] for d in ds])

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


@dataclass
class Answer:
    """The exact search's result for one unit."""

    key: Key | None
    inter: int
    size: int
    mask_size: int
    optimal: bool
    bound: float
    expanded: int = 0

    @property
    def iou(self) -> float:
        union = self.mask_size + self.size - self.inter
        return self.inter / union if union else 0.0

    @property
    def length(self) -> int:
        return 0 if self.key is None else (len(self.key) + 1) // 2


@dataclass
class _Best:
    """The incumbent: exact IoU a/b, then length, then key (NONE: 0/1, length 0)."""

    a: int = 0
    b: int = 1
    length: int = 0
    key: Key | None = None
    inter: int = 0
    size: int = 0
    version: int = 0

    def offer(self, tp: int, union: int, length: int, key: Key, size: int) -> None:
        lhs, rhs = tp * self.b, self.a * union
        if lhs > rhs or (lhs == rhs and tp > 0 and (length, key) < (self.length, self.key or ())):
            self.a, self.b, self.length, self.key, self.inter, self.size = tp, union, length, key, tp, size
            self.version += 1


def children(space: Space, unit: Unit, key: Key, mask: np.ndarray, n_g: int, tp_g: int):
    """(size, tp, ok), each [K', 3]: the children ``key OP c``; ok drops repeats and dominated ones."""
    n_gc = space.overlaps(key, mask)
    gu = mask[unit.sigs]
    tp_gc = np.asarray(unit.spread(unit.m * gu), np.int64)
    size = np.stack([n_g + space.cand_sizes - n_gc, n_gc, n_g - n_gc], 1)
    tp = np.stack([tp_g + unit.tp_c - tp_gc, tp_gc, tp_g - tp_gc], 1)
    ok = (size > 0) & (size != n_g)
    used = space.slot[np.asarray(leaves(key), np.int64)]
    ok[used] = False
    if len(key) == 1:  # (d OR c), (d AND c) with c < d repeat (c OR d), (c AND d)
        ok[:used[0], OR] = False
        ok[:used[0], AND] = False
    return size, tp, ok


class _Pruner:
    """Phi(v) of the module docstring for the current incumbent v = a/b, per remaining leaves r."""

    def __init__(self, unit: Unit, length: int) -> None:
        self.unit, self.length, self.version = unit, length, -1

    def update(self, best: _Best) -> None:
        if best.version == self.version:
            return
        self.version, self.a, self.b = best.version, best.a, best.b
        u = self.unit
        w = u.m * best.b - u.fp * best.a
        self.w = np.where(w > 0, w, 0).astype(u.dtype) if len(w) else w
        h_c = u.spread(self.w)
        top = np.sort(np.asarray(h_c, dtype=u.dtype))[::-1][:self.length] if len(h_c) else np.zeros(0, np.int64)
        self.tops = np.concatenate([[0], np.cumsum(top)]).astype(u.dtype)  # tops[r]: the r best concepts
        self.aM = best.a * u.size
        self.h_c = h_c
        # g(t) = max over concepts of min(h_c, P_c + t), P_c = b*tp - a*fp of the whole concept: the most a last
        # OR step can add to a prefix whose negative weights sum to -t (see phi); as sorted prefix/suffix maxima
        p_c = u.tp_c.astype(u.dtype) * best.b - (u.sizes_c - u.tp_c).astype(u.dtype) * best.a
        order = np.argsort(h_c - p_c, kind="stable")
        self.d = (h_c - p_c)[order]
        self.pre = np.concatenate([[0], np.maximum.accumulate(h_c[order])]).astype(u.dtype)
        self.suf = np.concatenate([np.maximum.accumulate(p_c[order][::-1])[::-1], [p_c.min()]]).astype(u.dtype)

    def top(self, r: int) -> int:
        return self.tops[max(0, min(r, len(self.tops) - 1))]

    def phi(self, h, p, r: int):
        """Phi(v) * b for nodes with r leaves to go: h = their positive weight, p = b*tp - a*fp (their own).

        With one leaf to go the OR child is H + (e minus H), whose weight is at most p + min(h_e, P_e - N)
        with N = p - h the negative weights of H (e AND H can lose at most those): that is p + g(h - p).
        """
        if r == 1:
            t = np.asarray(h - p)
            i = np.searchsorted(self.d, t, side="right")
            return np.maximum(p + np.maximum(self.pre[i], self.suf[i] + t), h) - self.aM
        return np.maximum(p + self.top(r), h + self.top(r - 1)) - self.aM


def relaxed_bound(unit: Unit, r: int, a: int, b: int, gu: np.ndarray | None = None,
                  tp_h: int = 0, fp_h: int = 0) -> tuple[int, int]:
    """The relaxations' optimum as a fraction >= a/b: the larger of "all of H plus r concept pieces" and
    "any part of H plus r - 1 pieces" (at the root, no H: r pieces). Dinkelbach steps, exact in integers."""
    if gu is None:
        return _dinkelbach(unit, r, a, b, None, 0, 0)
    whole = _dinkelbach(unit, r, a, b, None, tp_h, fp_h)
    part = _dinkelbach(unit, r - 1, a, b, gu, 0, 0)
    return whole if whole[0] * part[1] >= part[0] * whole[1] else part


def _dinkelbach(unit: Unit, r: int, a: int, b: int, sub: np.ndarray | None, tp0: int, fp0: int) -> tuple[int, int]:
    """max (tp0 + tp(X)) / (|M| + fp0 + fp(X)) over X = any part of ``sub`` plus any parts of r concepts."""
    u = unit
    if not len(u.m):
        return a, b
    while True:
        w = u.m * b - u.fp * a
        pos = w > 0
        piece = pos & sub if sub is not None else None
        h_c = u.spread(np.where(pos, w, 0).astype(u.dtype))
        take = np.argpartition(-h_c, r - 1)[:r] if 0 < r < len(h_c) else np.arange(len(h_c) if r > 0 else 0)
        take = take[h_c[take] > 0]
        phi = b * tp0 - a * fp0 - a * u.size + (h_c[take].sum() if len(take) else 0)
        tp, fp = tp0, fp0
        if piece is not None:
            phi += w[piece].sum()
            tp, fp = tp + u.m[piece].sum(), fp + u.fp[piece].sum()
        if phi <= 0:
            return a, b
        if len(take):
            times = np.bincount(u.row[np.isin(u.slot, take)], minlength=len(u.m)).astype(u.dtype)
            tp, fp = tp + (u.m * pos) @ times, fp + (u.fp * pos) @ times
        a, b = int(tp), int(u.size + fp)


def _frac(a: int, b: int) -> float:
    return min(1.0, a / b) if b else 0.0


def seed(space: Space, unit: Unit, length: int, best: _Best, width: int = 5) -> None:
    """A greedy beam (distinct leaves) for a good first incumbent."""
    beam = [((int(c),), int(n), int(t)) for c, n, t in zip(space.candidates, space.cand_sizes, unit.tp_c)]
    for key, n, t in beam:
        best.offer(t, unit.size + n - t, 1, key, n)
    beam.sort(key=lambda e: -e[2] / (unit.size + e[1] - e[2]))
    beam = beam[:width]
    for step in range(2, length + 1):
        cands = []
        for key, n, t in beam:
            size, tp, ok = children(space, unit, key, space.mask(key), n, t)
            iou = np.where(ok, tp / np.maximum(unit.size + size - tp, 1), -1.0)
            for flat in np.argsort(-iou, axis=None, kind="stable")[:width]:
                ci, op = divmod(int(flat), 3)
                if iou[ci, op] <= 0:
                    break
                child = key + (int(space.candidates[ci]), op)
                cands.append((float(iou[ci, op]), child, int(size[ci, op]), int(tp[ci, op])))
                best.offer(int(tp[ci, op]), unit.size + int(size[ci, op]) - int(tp[ci, op]), step, child,
                           int(size[ci, op]))
        cands.sort(key=lambda e: -e[0])
        beam = [(k, n, t) for _, k, n, t in cands[:width]]


def search_unit(space: Space, unit: Unit, length: int, *, deadline: float | None = None,
                cancelled: Callable[[], bool] | None = None) -> Answer:
    """The best formula of at most ``length`` leaves for ``unit``, with a proof or (stopped early) a bound."""
    best = _Best()
    if unit.size == 0 or not len(space.candidates):
        return Answer(None, 0, 0, unit.size, True, 0.0)
    seed(space, unit, length, best)
    prune = _Pruner(unit, length)
    prune.update(best)
    root_a, root_b = relaxed_bound(unit, length, best.a, best.b)
    heap: list = []
    counter = 0

    def keep(phi, child_length: int) -> np.ndarray:
        # Phi > 0: an extension may beat v; Phi == 0: it may tie v, and wins only if shorter.
        return (phi > 0) | ((phi == 0) & (child_length + 1 <= best.length))

    if length > 1:  # the root's children: every candidate concept alone
        own = unit.tp_c * best.b - (space.cand_sizes - unit.tp_c).astype(unit.dtype) * best.a
        live = np.flatnonzero(keep(prune.phi(np.asarray(prune.h_c), own, length - 1), 1))
        prio = -_frac(root_a, root_b)
        for ci in live:
            heap.append((prio, counter, (int(space.candidates[ci]),), int(space.cand_sizes[ci]),
                         int(unit.tp_c[ci]), False))
            counter += 1
        heapq.heapify(heap)
    expanded, stopped = 0, False
    while heap:
        if (deadline is not None and time.monotonic() > deadline) or (cancelled and cancelled()):
            stopped = True
            break
        if -heap[0][0] < _frac(best.a, best.b):  # every subtree left is below the incumbent
            heap.clear()
            break
        prio, _, key, n_g, tp_g, refined = heapq.heappop(heap)
        k = (len(key) + 1) // 2
        prune.update(best)
        gu = unit.inside(space, key)
        h_g = prune.w[gu].sum() if len(prune.w) else 0
        if not keep(prune.phi(h_g, tp_g * best.b - (n_g - tp_g) * best.a, length - k), k):
            continue
        if k + 1 == length:  # the last step: bound each child from M's signatures, count only the hopeful ones
            expanded += last_step(space, unit, prune, best, key, n_g, tp_g)
            continue
        expanded += 1
        size, tp, ok = children(space, unit, key, space.mask(key), n_g, tp_g)
        union = unit.size + size - tp
        _offer_best_child(best, space, key, size, tp, union, ok)
        if k + 1 >= length:
            continue
        prune.update(best)
        h_g = prune.w[gu].sum() if len(prune.w) else 0
        h_gc = unit.spread(prune.w * gu)
        h = np.stack([h_g + np.asarray(prune.h_c) - h_gc, h_gc, h_g - h_gc], 1)
        own = tp.astype(unit.dtype) * best.b - (size - tp).astype(unit.dtype) * best.a
        live = np.argwhere(ok & keep(prune.phi(h, own, length - k - 1), k + 1))
        if k + 2 == length and len(live):  # the children are last-step nodes: drop those whose children cannot win
            ds, ops = space.candidates[live[:, 0]], live[:, 1]
            n_d, tp_d = size[live[:, 0], ops], tp[live[:, 0], ops]
            live = live[hopeful(space, unit, key, ds, ops, n_d, tp_d, best.a, best.b)]
        for ci, op in live:
            child = key + (int(space.candidates[ci]), int(op))
            heapq.heappush(heap, (prio, counter, child, int(size[ci, op]), int(tp[ci, op]), False))
            counter += 1
    v = _frac(best.a, best.b)
    left = _tighten(space, unit, length, best, heap) if stopped and heap else 0.0
    optimal = left < v or not stopped or not heap
    bound = v if optimal else min(max(v, left), _frac(root_a, root_b))
    key = best.key if best.a > 0 else None
    return Answer(key, best.inter if key else 0, best.size if key else 0, unit.size, optimal, bound, expanded)


def last_step(space: Space, unit: Unit, prune: "_Pruner", best: _Best, key: Key, n_g: int, tp_g: int) -> bool:
    """Score the children of ``key`` that may still beat the incumbent; False when none may (nothing counted).

    A child's value b*tp - a*fp splits into M's signatures, known per unit without a pass over the store
    (W(X), the sum of w_s with their signs), and N(X), its positions on other signatures, each costing a.
    So H OR c is worth W(H OR c) - a*(N(H) + N(c) - N(H AND c)), H AND c W(H AND c) - a*N(H AND c), and
    H AND NOT c W(H AND NOT c) - a*(N(H) - N(H AND c)): an interval [lo, hi] for N(H AND c) bounds all three
    (see ``off_unit_overlap``). Only the children kept get |H AND c| counted, and only for their concepts.
    """
    gu = unit.inside(space, key)
    parent, d, op = (key[:-2], key[-2], key[-1]) if len(key) > 1 else (None, key[0], OR)
    may = child_bounds(space, unit, parent, np.array([d]), np.array([op]), np.array([n_g]), np.array([tp_g]),
                       best.a, best.b)[0] >= prune.aM
    used = space.slot[np.asarray(leaves(key), np.int64)]
    may[used] = False
    if len(key) == 1:
        may[:used[0], OR] = False
        may[:used[0], AND] = False
    slots = np.flatnonzero(may.any(1))
    if not len(slots):
        return False
    n_gc = space.some_overlaps(key, space.mask(key), slots)
    tp_gc = np.asarray(unit.spread(unit.m * gu), np.int64)[slots]
    n_c, tp_c = space.cand_sizes[slots], np.asarray(unit.tp_c, np.int64)[slots]
    size = np.zeros((len(space.candidates), 3), np.int64)
    tp = np.zeros_like(size)
    size[slots] = np.stack([n_g + n_c - n_gc, n_gc, n_g - n_gc], 1)
    tp[slots] = np.stack([tp_g + tp_c - tp_gc, tp_gc, tp_g - tp_gc], 1)
    ok = may & (size > 0) & (size != n_g)
    _offer_best_child(best, space, key, size, tp, unit.size + size - tp, ok)
    return True


def child_bounds(space: Space, unit: Unit, parent: Key | None, ds: np.ndarray, ops: np.ndarray,
                 n_g: np.ndarray, tp_g: np.ndarray, a: int, b: int) -> np.ndarray:
    """[J, K', 3]: for the children ``H_j OP c`` of the J nodes H_j = parent op_j d_j (or H_j = d_j without a
    parent), an upper bound on b*tp - a*fp, without counting |H_j AND c| (see ``last_step``).

    First with N(H AND c) anywhere in [0, min(N(H), N(c))]; then, where that still reaches a*|M|, with the
    interval of ``off_unit_overlap`` (the same bound, tighter, paid only where it can matter)."""
    parts = _crude(space, unit, parent, ds, ops, n_g, tp_g, a, b)
    big_w, w_hc, w_c, n_h, cap = parts[:5]
    ub = np.stack([big_w + w_c - w_hc - a * np.maximum(n_h, unit.out_c), w_hc,
                   big_w - w_hc - a * np.maximum(n_h - unit.out_c, 0)], 2)
    j, c = np.nonzero((ub >= a * unit.size).any(2))
    if len(j):
        ub[j, c] = _refined(space, unit, parent, ds, parts, j, c, a)
    return ub


def hopeful(space: Space, unit: Unit, parent: Key, ds: np.ndarray, ops: np.ndarray, n_g: np.ndarray,
            tp_g: np.ndarray, a: int, b: int) -> np.ndarray:
    """bool [J]: whether some child H_j OP c with c a new leaf has ``child_bounds`` >= a*|M| (same bound,
    computed only as far as the answer needs)."""
    parts = _crude(space, unit, parent, ds, ops, n_g, tp_g, a, b)
    big_w, w_hc, w_c, n_h = parts[:4]
    reach = a * unit.size
    may = (w_hc >= reach) | (big_w - w_hc - a * np.maximum(n_h - unit.out_c, 0) >= reach)
    may |= big_w + w_c - w_hc - a * np.maximum(n_h, unit.out_c) >= reach
    may[:, space.slot[np.asarray(leaves(parent), np.int64)]] = False
    may[np.arange(len(ds)), space.slot[ds]] = False
    j, c = np.nonzero(may)
    out = np.zeros(len(ds), bool)
    if len(j):
        out[j[(_refined(space, unit, parent, ds, parts, j, c, a) >= reach).any(1)]] = True
    return out


def _crude(space: Space, unit: Unit, parent: Key | None, ds: np.ndarray, ops: np.ndarray, n_g: np.ndarray,
           tp_g: np.ndarray, a: int, b: int) -> tuple:
    """The parts of the child bounds every (j, c) needs: W(H_j), W(H_j AND c), W(c), N(H_j), min(N(H_j), N(c))."""
    w_all = (unit.m * b - unit.fp * a).astype(unit.dtype)
    g_a = unit.inside(space, parent) if parent else np.zeros(len(unit.sigs), bool)
    in_d = unit.member[ds]                                                # [J, E]
    ops_ = np.asarray(ops)[:, None]
    g_h = np.where(ops_ == OR, g_a | in_d, np.where(ops_ == AND, g_a & in_d, g_a & ~in_d))
    w_h = w_all * g_h
    big_w = w_h.sum(1)[:, None]
    w_hc = unit.spread_rows(w_h)
    w_c = np.asarray(unit.spread(w_all), dtype=unit.dtype)[None]
    n_h = (np.asarray(n_g) - np.asarray(tp_g)).astype(unit.dtype)[:, None] - (unit.fp * g_h).sum(1)[:, None]
    cap = np.minimum(unit.out_c[None], n_h)
    return big_w, w_hc, w_c, n_h, cap, g_a, in_d, ops_[:, 0]


def _refined(space: Space, unit: Unit, parent: Key | None, ds: np.ndarray, parts: tuple, j: np.ndarray,
             c: np.ndarray, a: int) -> np.ndarray:
    """[P, 3]: the child bounds of the pairs (j, c) with the interval of ``off_unit_overlap``."""
    big_w, w_hc, w_c, n_h, cap, g_a, in_d, ops = parts
    lo, hi = off_unit_overlap(space, unit, parent, ds, ops, g_a, in_d, j, c, cap[j, c])
    big_w, w_hc, n_h = big_w[j, 0], w_hc[j, c], n_h[j, 0]
    return np.stack([big_w + w_c[0, c] - w_hc - a * (n_h + unit.out_c[c] - hi), w_hc - a * lo,
                     big_w - w_hc - a * (n_h - hi)], 1)


def off_unit_overlap(space: Space, unit: Unit, parent: Key | None, ds: np.ndarray, ops: np.ndarray, g_a: np.ndarray,
                     in_d: np.ndarray, j: np.ndarray, c: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of N(H_j AND c) for the pairs (j, c), H_j = A op_j d_j, from |A AND c| and |d_j AND c|.

    Those vectors are counted anyway (A's when A was expanded; a concept's once per store), and
    N(X AND c) is that count less M's signatures' positions in it (a sum over the unit's pairs).
    With t = N(A AND d AND c): t <= min(x_A, x_d, N(A AND d)), and t >= each of 0, x_A + x_d - N(c),
    x_A + N(A AND d) - N(A), x_d + N(A AND d) - N(d) (two subsets of one set overlap by at least their
    sizes' excess over it). H AND c is then A OR d: x_A + x_d - t, A AND d: t, A AND NOT d: x_A - t.
    No parent: A is empty (H = d, known exactly). A parent whose counts left the cache: [0, cap].
    """
    got = space.cached(parent) if parent else (np.zeros(len(space.candidates), np.int64), 0)
    if got is None:
        return np.zeros_like(cap), cap
    p_a, size_a = got
    counts = unit.m + unit.fp
    x_a = (p_a[c] - np.asarray(unit.spread(counts * g_a), np.int64)[c]).astype(unit.dtype)
    x_d = unit.off_rows(space, ds)[j, c]
    n_a = size_a - _dot(counts, g_a)
    slot_d = space.slot[ds]
    n_d = unit.out_c[slot_d][j]
    n_ad = (p_a[slot_d] - (counts * (g_a & in_d)).sum(1)).astype(unit.dtype)[j]
    n_c = unit.out_c[c]
    lo_t = np.maximum(np.maximum(0, x_a + x_d - n_c), np.maximum(x_a + n_ad - n_a, x_d + n_ad - n_d))
    hi_t = np.minimum(np.minimum(x_a, x_d), n_ad)
    op = ops[j]
    lo = np.where(op == OR, x_a + x_d - hi_t, np.where(op == AND, lo_t, x_a - hi_t))
    hi = np.where(op == OR, x_a + x_d - lo_t, np.where(op == AND, hi_t, x_a - lo_t))
    return np.maximum(lo, 0), np.minimum(hi, cap)


def _dot(values: np.ndarray, take: np.ndarray):
    return values[take].sum() if len(values) else 0
def _tighten(space: Space, unit: Unit, length: int, best: _Best, heap: list, seconds: float = 0.05) -> float:
    """The largest bound left in a stopped search, after tightening the top nodes to their own bounds.

    Nodes carry their parent's bound; the search does not tighten them (a full proof does the same work in
    any order), so a stopped one does it here, from the top of the heap, for at most ``seconds``.
    """
    end = time.monotonic() + seconds
    while not heap[0][5] and time.monotonic() < end:
        prio, counter, key, n_g, tp_g, _ = heapq.heappop(heap)
        a, b = relaxed_bound(unit, length - (len(key) + 1) // 2, best.a, best.b, unit.inside(space, key), tp_g,
                             n_g - tp_g)
        heapq.heappush(heap, (max(prio, -_frac(a, b)), counter, key, n_g, tp_g, True))
    return -heap[0][0]


def _offer_best_child(best: _Best, space: Space, key: Key, size: np.ndarray, tp: np.ndarray,
                      union: np.ndarray, ok: np.ndarray) -> None:
    """Offer the first (canonical order) child of greatest exact IoU to the incumbent."""
    if not ok.any():
        return
    iou = np.where(ok, tp / np.maximum(union, 1), -1.0)
    top = iou.max()
    if top <= 0:
        return
    near = np.flatnonzero(iou.ravel() >= top * (1 - 1e-9))  # float ties: settle in integers, in key order
    flat_tp, flat_union, flat_size = tp.ravel(), union.ravel(), size.ravel()
    win = near[0]
    for j in near[1:]:
        if int(flat_tp[j]) * int(flat_union[win]) > int(flat_tp[win]) * int(flat_union[j]):
            win = j
    ci, op = divmod(int(win), 3)
    child = key + (int(space.candidates[ci]), op)
    best.offer(int(flat_tp[win]), int(flat_union[win]), (len(child) + 1) // 2, child, int(flat_size[win]))
