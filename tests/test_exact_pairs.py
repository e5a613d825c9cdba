"""The first two leaves in one batch (cxql.exact_pairs): pair tables, scores and the screen's bounds, each
checked against direct computation and enumeration on random tiny stores.

The screen may only drop a two-leaf prefix with a proof, so each bound is
compared with the value of every child of every prefix: the OR bound is
never below any ``H OR e``, and the inner bound is never below any
``H AND e`` / ``H AND NOT e`` that reaches the incumbent.
"""

from __future__ import annotations

import numpy as np
import pytest

import cxql.exact as exact
from cxql import exact_pairs, exact_space
from cxql.exact_pairs import _counts, _inner_children, _or_children, _Tables
from cxql.exact_space import AND, AND_NOT, OR
from test_exact import bitmasks, check, incumbents, int_mask, tiny_case, tiny_store, value


def screened(space, unit, a: int, b: int):
    """The tables and pruner at incumbent a/b, as first_two builds them."""
    prune = exact._Pruner(unit, 3)
    prune.update(exact._Best(a=a, b=b, version=1))
    rows = np.flatnonzero(np.asarray(prune.h_c) > 0)
    tables = _Tables(space, unit, rows)
    tables.weigh(prune, a, b)
    return tables, prune


def node_arrays(t: _Tables, prune, op: int, a: int, b: int):
    """The per-node quantities of the screen (as _screen computes them), for every entry of ``op``."""
    e = t.entries(op)
    tp, size, valid = _counts(t, e, op)
    pos = np.where(e.at >= 0, t.positive[e.at], 0)
    h_r, h_d = t.h_c[t.rows[e.r]], t.h_c[e.d]
    h = h_r + h_d - pos if op == OR else pos if op == AND else h_r - pos
    p = b * tp - a * (size - tp)
    return e, tp, size, valid, h, p, pos


def wider_case(seed: int):
    """Like test_exact's tiny_case, with more concepts (5-9) and positions (up to 64)."""
    rng = np.random.default_rng(10_000 + seed)
    k = int(rng.integers(5, 10))
    dense, unit = tiny_store(rng, k, n=int(rng.integers(24, 65)))
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = exact.Space.from_member(rows, np.bincount(inverse, minlength=len(rows)))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    cols = [int(x) for x in bitmasks(dense)]
    return rng, space, exact.Unit(space, sigs, hits[sigs]), cols, int(bitmasks(unit[:, None])[0]), k


@pytest.mark.parametrize("case,seed", [(tiny_case, s) for s in range(150)] + [(wider_case, s) for s in range(60)])
def test_screen_bounds_never_below_a_child(case, seed):
    rng, space, unit, cols, unit_mask, k = case(seed)
    if not len(unit.sigs) or not len(space.candidates):
        return
    cand = space.candidates
    for a, b in incumbents(rng, unit_mask, cols, k):
        t, prune = screened(space, unit, a, b)
        if not len(t.rows):
            continue
        aM = a * unit.size
        for op in (OR, AND, AND_NOT):
            e, tp, size, valid, h, p, pos = node_arrays(t, prune, op, a, b)
            inner = _inner_children(t, e, op, a, b, h, pos)
            outer = _or_children(t, e, op, prune, a, b, h, p, pos, aM)
            for i in range(len(e.r)):
                key = (int(cand[t.rows[e.r[i]]]), int(cand[e.d[i]]), op)
                m = int_mask(cols, key)
                assert (tp[i], size[i]) == ((m & unit_mask).bit_count(), m.bit_count()), key
                assert h[i] == prune.w[unit.inside(space, key)].sum(), key   # H's positive weight
                for c in cand:
                    if c in key[:2]:
                        continue
                    assert outer[i] >= value(int_mask(cols, key + (int(c), OR)), unit_mask, a, b), (key, c, a, b)
                    for child_op in (AND, AND_NOT):
                        v = value(int_mask(cols, key + (int(c), child_op)), unit_mask, a, b)
                        assert v < aM or inner[i] >= v, (key, c, child_op, a, b)


@pytest.mark.parametrize("seed", range(40))
def test_pair_sizes_are_the_overlaps(seed):
    rng, space, unit, cols, unit_mask, k = tiny_case(seed)
    slots = np.arange(len(space.candidates))
    want = np.array([[(cols[c] & cols[d]).bit_count() for d in space.candidates] for c in space.candidates])
    assert np.array_equal(space.pair_sizes(slots), want.reshape(len(slots), len(slots)))


def test_without_the_whole_pair_table_the_answers_are_the_same(monkeypatch):
    """A store too big for the whole |c AND d| table takes its rows one by one (from the overlap cache)."""
    monkeypatch.setattr(exact_space, "PAIR_CELLS", 0)
    rng = np.random.default_rng(77)
    for _ in range(60):
        dense, unit = tiny_store(rng, int(rng.integers(2, 10)))
        check(dense, unit, 3)


@pytest.mark.parametrize("length", [2, 3, 4])
def test_the_per_first_leaf_search_gives_the_same_answers(monkeypatch, length):
    """Units whose counts would overflow int64 products take the older path, expanding one first leaf at a time."""
    monkeypatch.setattr(exact, "usable", lambda unit: False)
    rng = np.random.default_rng(78 + length)
    for _ in range(40 if length < 4 else 15):
        kk = int(rng.integers(2, 9 if length < 4 else 6))
        dense, unit = tiny_store(rng, kk)
        check(dense, unit, min(length, kk))


def test_probing_raises_the_incumbent_before_the_screen():
    """A unit planted on a three-leaf formula: the probes find it, so the screen leaves few nodes."""
    rng = np.random.default_rng(3)
    dense = rng.random((400, 12)) < 0.3
    unit_mask = ((dense[:, 0] & ~dense[:, 1]) | dense[:, 2]) & (rng.random(400) < 0.9)
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = exact.Space.from_member(rows, np.bincount(inverse, minlength=len(rows)))
    hits = np.bincount(inverse, weights=unit_mask, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    unit = exact.Unit(space, sigs, hits[sigs])
    probed = []
    best = exact._Best()
    prune = exact._Pruner(unit, 3)

    def probe(key, n, tp):
        probed.append(key)
        size, tp_, ok = exact.children(space, unit, key, space.mask(key), n, tp)
        exact._offer_best_child(best, space, key, size, tp_, unit.size + size - tp_, ok)

    nodes = exact_pairs.first_two(space, unit, prune, best, 3, probe)
    assert probed and best.length == 3
    assert len(nodes) < 3 * 12 * 11                         # far fewer than every two-leaf prefix
    assert exact.search_unit(space, unit, 3).key == best.key or exact.search_unit(space, unit, 3).iou >= best.a / best.b


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 22])
def test_the_pair_table_is_the_same_whatever_the_chunk(chunk):
    """|c AND d| counted a block of signatures at a time equals counts^T-weighted member^T @ member."""
    rng = np.random.default_rng(chunk)
    member = rng.random((500, 30)) < rng.uniform(0.02, 0.5, 30)
    counts = rng.integers(1, 9, 500)
    space = exact.Space.from_member(member, counts)
    want = (member.T * counts) @ member.astype(np.int64)
    cand = space.candidates
    assert np.array_equal(space._pair_table(len(cand), chunk=chunk), want[np.ix_(cand, cand)])
