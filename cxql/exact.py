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

Counts and bounds. :mod:`cxql.exact_space` holds the per-signature counts
every score and bound comes from; :mod:`cxql.exact_bounds` states the
bounds and why each is admissible.

Search. A greedy beam (width 5, distinct leaves) seeds the incumbent. Then
every two-leaf formula is scored at once from pair counts, and the two-leaf
prefixes that may still lead to a better formula are screened in one batch
(:mod:`cxql.exact_pairs`: dominance, and bounds per family of children);
the few most promising are probed first to raise the incumbent. Those left
go to a best-first search on the bound: children inherit their parent's
bound as priority, and a popped node is re-tested against the incumbent and
expanded; at LENGTH 3 the two-leaf nodes are popped in groups (GROUP) and
one batched ``hopeful`` drops those whose children cannot win before any is
counted. Every formula is scored when its parent is expanded or proven
unable to win, and a subtree is only dropped with a proof, so an empty
frontier means the incumbent is optimal. A deadline or cancel stops early:
the answer is the incumbent, and ``bound`` is the largest priority left
(each is >= its subtree) after the top nodes are tightened to their own
relaxation (for at most 10 ms; during a full proof that tightening only
cost time, as the work barely depends on the order), so the gap is ``bound
- iou``. A unit whose counts would overflow int64 products (stores of
hundreds of millions of positions) takes the older path, one first leaf at
a time (tested on the same enumerations).

Cost. At LENGTH 3 on a 20M-position Broden-like store (1,000 concepts,
48,547 signatures) a unit costs about 25 ms: the pair tables and screen
about a third, ``hopeful`` over the few hundred prefixes the screen keeps
about a third, the seed and the counted children the rest. Units whose best
IoU is low cost the most: nearly every signature they fire on has positive
weight, so "any part" relaxations are loose there; the cut and two-leaf
bounds of :mod:`cxql.exact_pairs` are what keeps them cheap. At LENGTH 4
and more the screen has only Phi for prefixes with two leaves to go and the
search below it is the per-node one: on a 1.25M-position store, 8 units at
LENGTH 4 took 5.4 s (the per-first-leaf search proved 5 of them in 40 s).

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
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .exact_bounds import _Pruner, child_bounds, hopeful, relaxed_bound
from .exact_pairs import first_two, offer_first, usable
from .exact_space import AND, OR, Key, Space, Unit, leaves

GROUP = 32  # two-leaf nodes screened together by ``hopeful`` before their children are counted

__all__ = ["Answer", "Key", "Space", "Unit", "child_bounds", "hopeful", "leaves", "relaxed_bound", "search_unit"]


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


def _frac(a: int, b: int) -> float:
    return min(1.0, a / b) if b else 0.0


def seed(space: Space, unit: Unit, length: int, best: _Best, width: int = 5) -> None:
    """A greedy beam (distinct leaves) for a good first incumbent."""
    tp_c, n_c = np.asarray(unit.tp_c, np.int64), space.cand_sizes
    offer_first(best, tp_c, n_c, unit.size + n_c - tp_c, np.ones(len(tp_c), bool),
                lambda i: (int(space.candidates[i]),))
    top = np.argsort(-(tp_c / (unit.size + n_c - tp_c)), kind="stable")[:width]
    beam = [((int(space.candidates[i]),), int(n_c[i]), int(tp_c[i])) for i in top]
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
    if length > 1 and ((deadline is not None and time.monotonic() > deadline) or (cancelled and cancelled())):
        # Out of time before the search began (a budget spent, Ctrl-C): the seed, with the root bound. The pair
        # tables and screen below cost far more than the seed, once per unit: thousands of units would each
        # pay them after a Ctrl-C, long after the user asked to stop.
        v, root = _frac(best.a, best.b), _frac(root_a, root_b)
        proven = root <= v  # the root bound (capped at 1) is the incumbent itself: nothing can beat it
        key = best.key if best.a > 0 else None
        return Answer(key, best.inter if key else 0, best.size if key else 0, unit.size, proven,
                      v if proven else max(v, root))
    heap: list = []
    counter = 0

    def keep(phi, child_length: int) -> np.ndarray:
        # Phi > 0: an extension may beat v; Phi == 0: it may tie v, and wins only if shorter.
        return (phi > 0) | ((phi == 0) & (child_length + 1 <= best.length))

    batched = usable(unit)
    if length > 1 and batched:  # every two-leaf formula scored at once; the prefixes left, screened
        def probe(key: Key, n_g: int, tp_g: int) -> None:
            size, tp, ok = children(space, unit, key, space.mask(key), n_g, tp_g)
            _offer_best_child(best, space, key, size, tp, unit.size + size - tp, ok)

        nodes = first_two(space, unit, prune, best, length, probe if length == 3 else None)
        prio = -_frac(root_a, root_b)
        for c1, c2, op, n, tp in zip(nodes.c1.tolist(), nodes.c2.tolist(), nodes.op.tolist(), nodes.size.tolist(),
                                     nodes.tp.tolist()):
            heap.append((prio, counter, (c1, c2, op), n, tp, False))
            counter += 1
    elif length > 1:  # the root's children: every candidate concept alone
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
        if length == 3 and len(heap[0][2]) == 3 and batched:  # two-leaf nodes, a group at a time
            group = [heapq.heappop(heap) for _ in range(min(GROUP, len(heap)))
                     if len(heap[0][2]) == 3]
            expanded += last_steps(space, unit, prune, best, group)
            continue
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


def last_steps(space: Space, unit: Unit, prune: "_Pruner", best: _Best, group: list) -> int:
    """``last_step`` for a group of two-leaf heap entries, after one batched ``hopeful`` drops those whose
    children cannot beat the incumbent; the number of nodes whose children were counted."""
    c1, c2, op, n_g, tp_g = (np.array([e[2][0] for e in group]), np.array([e[2][1] for e in group]),
                             np.array([e[2][2] for e in group]), np.array([e[3] for e in group]),
                             np.array([e[4] for e in group]))
    keep = hopeful(space, unit, c1, c2, op, n_g, tp_g, best.a, best.b)
    done = 0
    for j in np.flatnonzero(keep):
        prune.update(best)  # last_step compares against prune.aM: it must be the incumbent's
        done += last_step(space, unit, prune, best, group[j][2], int(n_g[j]), int(tp_g[j]))
    return done


def last_step(space: Space, unit: Unit, prune: "_Pruner", best: _Best, key: Key, n_g: int, tp_g: int) -> bool:
    """Score the children of ``key`` that may still beat the incumbent; False when none may (nothing counted).

    A child's value b*tp - a*fp splits into M's signatures, known per unit without a pass over the store
    (W(X), the sum of w_s with their signs), and N(X), its positions on other signatures, each costing a.
    So H OR c is worth W(H OR c) - a*(N(H) + N(c) - N(H AND c)), H AND c W(H AND c) - a*N(H AND c), and
    H AND NOT c W(H AND NOT c) - a*(N(H) - N(H AND c)): an interval [lo, hi] for N(H AND c) bounds all three
    (see exact_bounds.off_unit_overlap). Only the children kept get |H AND c| counted, and only for their concepts.
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


def _tighten(space: Space, unit: Unit, length: int, best: _Best, heap: list, seconds: float = 0.01) -> float:
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
