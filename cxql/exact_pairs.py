"""The first two leaves of SEARCH ... EXACT in one batch: every two-leaf formula scored and screened from pair counts.

Why. Expanding each first leaf on its own costs about a millisecond (a few
dozen numpy calls), and for a unit whose best IoU is low nearly every first
leaf passed the prefix bound, so a 1,000-concept store cost most of a second
per unit. Here every two-leaf formula of a unit comes out of a handful of
[R, K] array operations (R first leaves, K concepts) instead.

Counts. For first leaves c (rows) and every concept d (columns): |c AND d|
over the store (:meth:`Space.pair_sizes`, shared by all units) and, summed
over the unit's signatures holding both, T (positions where the unit fires),
U (all positions) and P (the positive weights w_s+ of exact_bounds). Then
|F| and |M AND F| of ``c OR d`` (inclusion-exclusion), ``c AND d`` and
``c AND NOT d`` (difference) are exact, and so are their positive weight h
and value p = b*tp - a*fp, which the bounds take.

Dominance (why rows and nodes are left out). With v = a/b the incumbent, a
signature is positive when w_s > 0; one that is not stays so for every v'
>= v. A part D of a formula F with no positive signature cannot raise its
IoU once that is v or more: if F without D is a shorter formula G of the
space, G ties or beats F and wins the tie, so F is never the answer. Hence:

* a first leaf with no positive signature (with OR next, drop it; with AND
  or AND NOT next, the formula up to the first OR lies inside it; with no OR
  at all F lies inside it): no formula starting with it;
* ``c OR d`` where d adds no positive signature to c (drop d), or c none to
  d (drop c);
* a prefix with no positive signature (``c AND d``, ``c AND NOT d``): every
  extension is inside it or an OR after it (drop the prefix).

The screen (LENGTH 3: one leaf to go). A node H = c op d survives only if
some child H OR e, H AND e, H AND NOT e may reach v (b*tp - a*fp >= a|M|).
Write P(X) for X's positive weights, V(X) = b*tp - a*fp for its value and
Neg(X) = P(X) - V(X) for its negative weights: the most that cutting part
of X away can add. OR children: Phi's OR term (exact_bounds), and V(e
without c) <= bo(c), the best such value over e, plus what H leaves of c
(P(c - H) for H inside c; Neg(d without c) for H = c OR d). Children
inside H (F = c AND L AND L', L and L' literals d / NOT d, e / NOT e):

* cut: F's positions where the unit never fires (N) are at least N(H) less
  what L' removes of c's, N(c AND NOT L'), and F's weight is at most P(H)
  and at most P(c AND L'); so with cap(c) the most N(c AND NOT L') over
  literals with P(c AND L') >= a|M|, V(F) <= P(H) - a * max(0, N(H) - cap(c));
* two-leaf: V(F) = V(c AND L') - V(c AND L' AND NOT L) <= b2(c) + Neg(c AND
  NOT L), b2(c) the best V(c AND L') over literals, exact from the tables;
  for H = c OR d, V(H AND L') = V(c AND L') + V(d AND L') - V(c AND d AND
  L') <= b2(c) + min(P(d without c), b2(d) + Neg(c AND d)).

Each is an identity or an inequality on measures; tests/test_exact_pairs.py
checks them against every child of random tiny stores. The nodes left go to
:mod:`cxql.exact`, whose batched ``hopeful`` (the last step's per-concept
bound) drops most of the rest before any child is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .exact_bounds import _Pruner
from .exact_space import AND, AND_NOT, OR, Space, Unit, within_pairs

PROBE, PROBE_ROUNDS = 8, 3  # nodes probed per round, and rounds, to raise the incumbent before the full screen
NEG = -(1 << 60)  # "no such formula": far below any b*tp - a*fp, yet a few sums of it stay in int64


@dataclass
class Nodes:
    """Two-leaf prefixes ``(c1, c2, op)`` (store indices) left to search, with |H| and |M AND H|."""

    c1: np.ndarray
    c2: np.ndarray
    op: np.ndarray
    size: np.ndarray
    tp: np.ndarray

    @classmethod
    def none(cls) -> "Nodes":
        empty = np.zeros(0, np.int64)
        return cls(empty, empty, empty, empty, empty)

    def __len__(self) -> int:
        return len(self.c1)

    def fields(self) -> tuple[np.ndarray, ...]:
        return self.c1, self.c2, self.op, self.size, self.tp

    def take(self, keep: np.ndarray) -> "Nodes":
        return Nodes(*(f[keep] for f in self.fields()))


def usable(unit: Unit) -> bool:
    """Whether the tables stay exact: float64 sums (``Unit.fast``) and int64 products (not object dtype)."""
    return bool(unit.fast) and unit.dtype is not object


def first_two(space: Space, unit: Unit, prune: _Pruner, best: Any, length: int,
              probe: Callable[[tuple, int, int], None] | None = None) -> Nodes:
    """Offer the best two-leaf formula to ``best`` (a ``_Best``); return the two-leaf prefixes that may still
    lead to a better formula of at most ``length`` leaves (none for ``length`` 2: every formula is scored),
    most promising first.

    ``probe(key, |H|, |M AND H|)`` scores a node's children into ``best``: the few most promising nodes are
    probed, and while that raises the incumbent the screen runs again (a higher incumbent prunes more).
    """
    prune.update(best)
    rows = np.flatnonzero(np.asarray(prune.h_c) > 0)
    if not len(rows):
        return Nodes.none()
    tables = _Tables(space, unit, rows)
    ops = []  # (op, its pairs, their |M AND H|, |H| and validity): computed once, read by every round
    for op in (OR, AND, AND_NOT):
        entries = tables.entries(op)
        ops.append((op, entries, _counts(tables, entries, op)))
    for op, e, counts in ops:
        _offer(best, tables, e, op, counts)
    if length < 3:
        return Nodes.none()
    probed: set[tuple] = set()
    for _ in range(PROBE_ROUNDS + 1):
        prune.update(best)
        tables.weigh(prune, best.a, best.b)
        parts = [_screen(tables, e, op, counts, prune, best, length) for op, e, counts in ops]
        nodes = Nodes(*(np.concatenate([part[f] for part in parts]) for f in range(5)))
        nodes = nodes.take(np.argsort(-np.concatenate([part[5] for part in parts]), kind="stable"))
        version = best.version
        for c1, c2, op, n, tp in list(zip(*(f.tolist() for f in nodes.fields())))[:PROBE if probe else 0]:
            if (c1, c2, op) not in probed:
                probed.add((c1, c2, op))
                probe((c1, c2, op), n, tp)
        if best.version == version:
            break
    return nodes


@dataclass
class _Entries:
    """Pairs (row r, column slot d) of one op, as 1-D arrays in key order, with their pair counts."""

    r: np.ndarray
    d: np.ndarray
    tp: np.ndarray         # T: positions of both where the unit fires
    unit_part: np.ndarray  # U: positions of both on the unit's signatures
    size: np.ndarray       # |c AND d|
    at: np.ndarray         # index into the tables' overlapping pairs, or -1 (c and d do not overlap)


class _Tables:
    """Pair counts of the first leaves ``rows`` (candidate slots) against the concepts they overlap.

    Only overlapping pairs are listed (c AND d empty gives nothing new: AND is empty, AND NOT is c), and the
    unit's own sums are over its signatures, so the work follows those pairs, not R x K.
    """

    def __init__(self, space: Space, unit: Unit, rows: np.ndarray) -> None:
        self.space, self.unit, self.rows, self.k = space, unit, rows, len(space.candidates)
        self.row_of = np.full(self.k, -1, np.int64)               # candidate slot -> row
        self.row_of[rows] = np.arange(len(rows))
        sizes = space.pair_sizes(rows)
        self.r, self.d = np.nonzero(sizes)                         # overlapping pairs, key order
        self.size = sizes[self.r, self.d]
        self.flat = self.r * self.k + self.d
        sig, first, second = within_pairs(unit.row_ptr)            # the unit's signatures' concept pairs
        x, y = unit.slot[first], unit.slot[second]
        keep = self.row_of[x] >= 0
        self._sig = sig[keep]
        self._at = np.searchsorted(self.flat, self.row_of[x[keep]] * self.k + y[keep])  # all overlap
        self.tp = self._sum(unit.m)
        self.unit_part = self._sum(unit.m + unit.fp)
        self.positive = np.zeros(len(self.r), np.int64)

    def _sum(self, per_sig: np.ndarray) -> np.ndarray:
        values = np.asarray(per_sig, np.float64)[self._sig]   # exact: Unit.fast
        return np.bincount(self._at, weights=values, minlength=len(self.r)).astype(np.int64)

    def entries(self, op: int) -> _Entries:
        """OR: every pair of first leaves c < d; AND: overlapping such pairs; AND NOT: every overlapping d."""
        rows = self.rows
        if op == OR:
            r, j = np.triu_indices(len(rows), 1)
            d = rows[j]
            at = np.full(len(rows) * len(rows), -1, np.int64)
            mine = self.row_of[self.d] >= 0
            at[self.r[mine] * len(rows) + self.row_of[self.d[mine]]] = np.flatnonzero(mine)
            at = at[r * len(rows) + j]
        else:
            keep = self.d != rows[self.r]
            if op == AND:
                keep &= (self.row_of[self.d] >= 0) & (self.d > rows[self.r])
            at = np.flatnonzero(keep)
            r, d = self.r[at], self.d[at]
        return _Entries(r, d, *(np.where(at >= 0, x[at], 0) for x in (self.tp, self.unit_part, self.size)), at)

    def weigh(self, prune: _Pruner, a: int, b: int) -> None:
        """The incumbent's positive weights P, and per first leaf c: cap(c), b2(c), bo(c) (module docstring)."""
        unit, space, rows, r = self.unit, self.space, self.rows, self.r
        self.positive = self._sum(prune.w)
        self.h_c = np.asarray(prune.h_c, np.int64)
        aM = a * unit.size
        tp_c = unit.tp_c.astype(np.int64)
        self.value_c = b * tp_c - a * (space.cand_sizes - tp_c)
        other = self.d != rows[r]
        v12 = b * self.tp - a * (self.size - self.tp)              # V(c AND d)
        off12 = self.size - self.unit_part                          # N(c AND d)
        off_r, value_r, h_r = unit.out_c.astype(np.int64)[rows], self.value_c[rows], self.h_c[rows]
        # cap: the most a literal L' cuts of c's positions off the unit's signatures, among those keeping
        # P(c AND L') >= a|M|; a concept disjoint from c as NOT L' cuts nothing (0), as L' (a = 0 only) all
        cap = np.where(h_r >= aM, 0, NEG) if aM > 0 else off_r.copy()
        cap = _row_max(cap, r, other & (self.positive >= aM), (off_r[r] - off12))
        self.cap = _row_max(cap, r, other & (h_r[r] - self.positive >= aM), off12)
        # b2: the best V(c AND L'); a disjoint concept gives 0 (AND) or V(c) (AND NOT)
        self.b2 = _row_max(np.maximum(0, value_r), r, other, np.maximum(v12, value_r[r] - v12))
        # bo: the best V(e without c); a disjoint e gives V(e): the best of any other concept bounds those
        order = np.argsort(-self.value_c, kind="stable")[:2]
        top = np.where(rows == order[0], self.value_c[order[1]] if len(order) > 1 else NEG, self.value_c[order[0]])
        self.bo = _row_max(top, r, other, self.value_c[self.d] - v12)


def _row_max(start: np.ndarray, r: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row: the max of ``start`` and ``values`` over that row's entries where ``mask``."""
    out = start.astype(np.int64).copy()
    np.maximum.at(out, r[mask], values[mask])
    return out


def _counts(t: _Tables, e: _Entries, op: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|M AND H|, |H|, valid) of H = c op d for every entry."""
    unit, space = t.unit, t.space
    c = t.rows[e.r]
    tp_r, s_r = unit.tp_c[c].astype(np.int64), space.cand_sizes[c]
    if op == OR:
        tp = tp_r + unit.tp_c[e.d].astype(np.int64) - e.tp
        size = s_r + space.cand_sizes[e.d] - e.size
        return tp, size, size != s_r
    if op == AND:
        return e.tp, e.size, e.size != s_r
    return tp_r - e.tp, s_r - e.size, e.size != s_r


def _offer(best: Any, t: _Tables, e: _Entries, op: int, counts: tuple) -> None:
    """Offer the first (key order) two-leaf formula of greatest exact IoU for ``op``."""
    tp, size, valid = counts
    cand = t.space.candidates
    offer_first(best, tp, size, t.unit.size + size - tp, valid,
                 lambda i: (int(cand[t.rows[e.r[i]]]), int(cand[e.d[i]]), op))


def offer_first(best: Any, tp: np.ndarray, size: np.ndarray, union: np.ndarray, valid: np.ndarray,
                key_of: Callable[[int], tuple]) -> None:
    """Offer the first (in array order, which is key order) formula of greatest exact IoU among ``valid``."""
    iou = np.where(valid & (tp > 0), tp / np.maximum(union, 1), -1.0)
    top = iou.max(initial=-1.0)
    if top <= 0:
        return
    near = np.flatnonzero(iou >= top * (1 - 1e-9))  # float ties: settle in integers, in key order
    win = near[0]
    for j in near[1:]:
        if int(tp[j]) * int(union[win]) > int(tp[win]) * int(union[j]):
            win = j
    key = key_of(int(win))
    best.offer(int(tp[win]), int(union[win]), (len(key) + 1) // 2, key, int(size[win]))


def _screen(t: _Tables, e: _Entries, op: int, counts: tuple, prune: _Pruner, best: Any, length: int) -> tuple:
    """(c1, c2, op, |H|, |M AND H|, bound) of the nodes H = c op d that may still lead to a better formula."""
    a, b, aM = best.a, best.b, best.a * t.unit.size
    tp, size, valid = counts
    pos = np.where(e.at >= 0, t.positive[e.at], 0)
    h_r, h_d = t.h_c[t.rows[e.r]], t.h_c[e.d]
    if op == OR:
        h = h_r + h_d - pos
        live = valid & (h_d - pos > 0) & (h_r - pos > 0)   # each leaf adds a positive signature
    else:
        h = pos if op == AND else h_r - pos
        live = valid & (h > 0)
    idx = np.flatnonzero(live)
    e = _Entries(*(x[idx] for x in (e.r, e.d, e.tp, e.unit_part, e.size, e.at)))
    tp, size, h, pos = tp[idx], size[idx], h[idx], pos[idx]
    p = b * tp - a * (size - tp)
    if length > 3:
        phi = prune.phi(h, p, length - 2)
    else:
        inner = _inner_children(t, e, op, a, b, h, pos)
        phi = np.maximum(_or_children(t, e, op, prune, a, b, h, p, pos, aM), inner) - aM
    keep = (phi > 0) | ((phi == 0) & (3 <= best.length))  # a tie wins only by a smaller key at equal length
    cand = t.space.candidates
    return (cand[t.rows[e.r[keep]]], cand[e.d[keep]], np.full(int(keep.sum()), op, np.int64), size[keep],
            tp[keep], phi[keep])


def _or_children(t: _Tables, e: _Entries, op: int, prune: _Pruner, a: int, b: int, h: np.ndarray, p: np.ndarray,
                 pos: np.ndarray, aM: int) -> np.ndarray:
    """A bound on b*tp - a*fp of H OR e' over every e': p + bo(c) + what H leaves of c, then Phi's OR term
    where that is not already below a|M|."""
    c = t.rows[e.r]
    if op == OR:  # e' without (c OR d) is e' without c less its part in d: it gains at most Neg(d without c)
        v12 = b * e.tp - a * (e.size - e.tp)
        neg_d = (t.h_c[e.d] - pos) - (t.value_c[e.d] - v12)        # Neg(d without c) = P - V
        neg_c = (t.h_c[c] - pos) - (t.value_c[c] - v12)
        out = np.minimum(p + t.bo[e.r] + neg_d, p + t.bo[t.row_of[e.d]] + neg_c)
    else:
        out = p + t.bo[e.r] + (t.h_c[c] - h)                       # H inside c: e' gains at most P(c - H)
        if op == AND:
            out = np.minimum(out, p + t.bo[t.row_of[e.d]] + (t.h_c[e.d] - h))
    high = out >= aM
    if high.any():
        out[high] = np.minimum(out[high], prune.or_child(h[high], p[high]))
    return out


def _inner_children(t: _Tables, e: _Entries, op: int, a: int, b: int, h: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A bound on b*tp - a*fp of H AND e' and H AND NOT e' over every e': the cut and two-leaf bounds."""
    unit = t.unit
    c = t.rows[e.r]
    v12 = b * e.tp - a * (e.size - e.tp)                            # V(c AND d)
    neg12 = pos - v12                                               # Neg(c AND d) = P - V
    if op == OR:  # V((c OR d) AND L) = V(c AND L) + V(d AND L) - V(c AND d AND L)
        rd = t.row_of[e.d]
        both = t.b2[e.r] + t.b2[rd] + neg12
        return np.minimum(h, np.minimum(np.minimum(t.b2[e.r] + t.h_c[e.d] - pos, t.b2[rd] + t.h_c[c] - pos), both))
    off_cd = e.size - e.unit_part                                   # N(c AND d)
    n_h = off_cd if op == AND else unit.out_c.astype(np.int64)[c] - off_cd   # N(H)
    # V(c AND L AND L2) = V(c AND L2) - V(c AND L2 AND NOT L): at most b2(c) + Neg(c AND NOT L)
    neg_c = neg12 if op == AND_NOT else (t.h_c[c] - pos) - (t.value_c[c] - v12)
    out = np.minimum(_cut(h, n_h, t.cap[e.r], a), t.b2[e.r] + neg_c)
    if op == AND:  # H lies inside d as well
        rd = t.row_of[e.d]
        neg_d = (t.h_c[e.d] - pos) - (t.value_c[e.d] - v12)
        out = np.minimum(out, np.minimum(_cut(h, n_h, t.cap[rd], a), t.b2[rd] + neg_d))
    return out


def _cut(h: np.ndarray, n_h: np.ndarray, cap: np.ndarray, a: int) -> np.ndarray:
    """h - a * max(0, N(H) - cap), or NEG where no literal qualifies (cap is NEG)."""
    return np.where(cap == NEG, NEG, h - a * np.maximum(0, n_h - np.maximum(cap, 0)))
