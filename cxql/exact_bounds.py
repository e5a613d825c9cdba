"""The admissible bounds of SEARCH ... EXACT: what no extension of a prefix can beat (see :mod:`cxql.exact`).

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

"""

from __future__ import annotations

from typing import Any

import numpy as np

from .exact_space import AND, OR, Key, Space, Unit, leaves


class _Pruner:
    """Phi(v) of the module docstring for the current incumbent v = a/b, per remaining leaves r."""

    def __init__(self, unit: Unit, length: int) -> None:
        self.unit, self.length, self.version = unit, length, -1

    def update(self, best: Any) -> None:
        """Recompute for the incumbent ``best`` (a ``_Best`` of :mod:`cxql.exact`: a, b, version)."""
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
            return np.maximum(self.or_child(h, p), h) - self.aM
        return np.maximum(p + self.top(r), h + self.top(r - 1)) - self.aM

    def or_child(self, h, p):
        """The most b*tp - a*fp of H OR e, over every concept e, for prefixes with positive weight h and value p."""
        t = np.asarray(h - p)
        i = np.searchsorted(self.d, t, side="right")
        return p + np.maximum(self.pre[i], self.suf[i] + t)


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
    if _per_row(parent):
        may[np.arange(len(ds)), space.slot[parent]] = False
    else:
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
    in_d = unit.member[ds]                                                # [J, E]
    ops_ = np.asarray(ops)[:, None]
    if _per_row(parent):
        g_a = unit.member[parent]                                        # [J, E]: each node's own first leaf
    else:
        g_a = unit.inside(space, parent) if parent else np.zeros(len(unit.sigs), bool)
    g_h = np.where(ops_ == OR, g_a | in_d, np.where(ops_ == AND, g_a & in_d, g_a & ~in_d))
    big_w = (w_all * g_h).sum(1)[:, None]
    if _per_row(parent):  # two-leaf nodes c op d: W(H AND e) from per-concept rows and the small c AND d part
        both = unit.spread_rows(w_all * (g_a & in_d))
        w_a, w_d = unit.weight_rows(parent, w_all, (a, b)), unit.weight_rows(ds, w_all, (a, b))
        w_hc = np.where(ops_ == OR, w_a + w_d - both, np.where(ops_ == AND, both, w_a - both))
    else:
        w_hc = unit.spread_rows(w_all * g_h)
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
    counts = unit.m + unit.fp
    slot_d = space.slot[ds]
    if _per_row(parent):  # one first leaf A per node: N(A AND c) is A's row, kept per concept
        off_a = unit.off_rows(space, parent)
        x_a = off_a[j, c]
        n_a = unit.out_c[space.slot[parent]][j]
        n_ad = off_a[np.arange(len(ds)), slot_d][j]
    else:
        got = space.cached(parent) if parent else (np.zeros(len(space.candidates), np.int64), 0)
        if got is None:
            return np.zeros_like(cap), cap
        p_a, size_a = got
        x_a = (p_a[c] - np.asarray(unit.spread(counts * g_a), np.int64)[c]).astype(unit.dtype)
        n_a = size_a - _dot(counts, g_a)
        n_ad = (p_a[slot_d] - (counts * (g_a & in_d)).sum(1)).astype(unit.dtype)[j]
    x_d = unit.off_rows(space, ds)[j, c]
    n_d = unit.out_c[slot_d][j]
    n_c = unit.out_c[c]
    lo_t = np.maximum(np.maximum(0, x_a + x_d - n_c), np.maximum(x_a + n_ad - n_a, x_d + n_ad - n_d))
    hi_t = np.minimum(np.minimum(x_a, x_d), n_ad)
    op = ops[j]
    lo = np.where(op == OR, x_a + x_d - hi_t, np.where(op == AND, lo_t, x_a - hi_t))
    hi = np.where(op == OR, x_a + x_d - lo_t, np.where(op == AND, hi_t, x_a - lo_t))
    return np.maximum(lo, 0), np.minimum(hi, cap)


def _per_row(parent: Any) -> bool:
    """Whether ``parent`` is an array of first leaves, one per node (the nodes are two-leaf prefixes)."""
    return isinstance(parent, np.ndarray)


def _dot(values: np.ndarray, take: np.ndarray):
    return values[take].sum() if len(values) else 0
