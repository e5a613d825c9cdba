"""EXACT against exhaustive enumeration of the whole formula space, on random tiny stores.

The enumerator here shares nothing with cxql: concepts are uint64 bit masks
over at most 64 positions, every left-deep formula over distinct concepts
(empty concepts included) is built by broadcasting, and the winner is picked
by IoU, then length, then canonical (key) order, as SPEC section 7 says.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql import exact
from cxql.exact import Space, Unit, search_unit
from cxql.resources import demo_store_path

# ------------------------------------------------------------ the independent enumerator


def bitmasks(dense: np.ndarray) -> np.ndarray:
    """bool [N<=64, K] -> uint64 [K]."""
    weights = np.uint64(1) << np.arange(dense.shape[0], dtype=np.uint64)
    return np.array([int(np.sum(weights[dense[:, k]], dtype=np.uint64)) for k in range(dense.shape[1])],
                    dtype=np.uint64)


def enumerate_best(dense: np.ndarray, unit: np.ndarray, length: int):
    """(iou, key or None) of the optimum: greatest IoU, then shortest, then first key."""
    k = dense.shape[1]
    cols = bitmasks(dense)
    u = bitmasks(unit[:, None])[0]
    best = (0.0, None)
    masks = cols.copy()                           # axes: c1, c2, op2, c3, op3, ... (key order)
    for n in range(1, length + 1):
        if n > 1:
            m = masks[..., None, None]
            c = cols.reshape((1,) * masks.ndim + (k, 1))
            masks = np.concatenate([m | c, m & c, m & ~c], axis=-1)
        grid = np.indices(masks.shape)
        leaves = [grid[0]] + [grid[i] for i in range(1, masks.ndim, 2)]
        valid = np.ones(masks.shape, dtype=bool)
        for i, j in itertools.combinations(range(len(leaves)), 2):
            valid &= leaves[i] != leaves[j]
        inter = np.bitwise_count(masks & u).astype(np.int64)
        union = np.bitwise_count(masks | u).astype(np.int64)
        iou = np.where(valid & (union > 0), inter / np.maximum(union, 1), -1.0)
        top = iou.max()
        if top > best[0]:
            flat = int(np.flatnonzero(iou.ravel() == top)[0])
            idx = np.unravel_index(flat, iou.shape)
            best = (float(top), tuple(int(i) for i in idx))
    return best


def exact_answer(dense: np.ndarray, unit: np.ndarray, length: int):
    """cxql's EXACT on the same data, through signatures (the adapter a store does)."""
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse, minlength=len(rows))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    space = Space.from_member(rows, counts)
    sigs = np.flatnonzero(hits)
    return search_unit(space, Unit(space, sigs, hits[sigs]), length)


# ------------------------------------------------------------ random tiny stores

def tiny_store(rng: np.random.Generator, k: int, n: int = 48):
    """Overlapping concepts plus the awkward ones: empty, all-covering, duplicate, lone-position."""
    dense = rng.random((n, k)) < rng.uniform(0.1, 0.6, size=k)
    kinds = rng.integers(0, 6, size=k)
    for j in range(k):
        if kinds[j] == 0 and rng.random() < 0.3:
            dense[:, j] = False
        elif kinds[j] == 1 and rng.random() < 0.2:
            dense[:, j] = True
        elif kinds[j] == 2 and j > 0:
            dense[:, j] = dense[:, rng.integers(j)]
        elif kinds[j] == 3:           # some positions covered by this concept alone
            alone = rng.random(n) < 0.15
            dense[alone] = False
            dense[alone, j] = True
    a, b, c = rng.choice(k, 3, replace=k < 3)
    planted = [dense[:, a], dense[:, a] | dense[:, b], (dense[:, a] & dense[:, b]) | dense[:, c],
               (dense[:, a] | dense[:, b]) & ~dense[:, c]][rng.integers(4)]
    noise = rng.random(n) < rng.uniform(0, 0.3)
    unit = planted ^ noise if rng.random() < 0.9 else np.zeros(n, dtype=bool)
    return dense, unit


def check(dense, unit, length):
    want_iou, want_key = enumerate_best(dense, unit, length)
    got = exact_answer(dense, unit, length)
    assert got.optimal
    assert got.iou == pytest.approx(want_iou, abs=0)
    assert got.bound >= want_iou
    if want_key is None:
        assert got.key is None
    else:
        assert got.key == want_key, (got.key, want_key)


@pytest.mark.parametrize("length,k,stores", [(1, 6, 100), (2, 8, 250), (3, 6, 350), (3, 12, 250), (4, 6, 60)])
def test_exact_equals_enumeration(length, k, stores):
    rng = np.random.default_rng(1000 * length + k)
    for _ in range(stores):
        kk = int(rng.integers(1, k + 1))
        dense, unit = tiny_store(rng, kk)
        check(dense, unit, min(length, kk))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CXQL_EXACT_MANY"), reason="a minute of stores; set CXQL_EXACT_MANY=1")
@pytest.mark.parametrize("length,k,stores", [(3, 12, 3000), (4, 8, 800)])
def test_exact_equals_enumeration_many(length, k, stores):
    test_exact_equals_enumeration(length, k, stores)


# ------------------------------------------------------------ the published traps


def test_trap_distributive_or_with_lone_positions():
    """(A AND B) OR C, where C has unit positions no other concept covers."""
    n = 40
    dense = np.zeros((n, 3), dtype=bool)
    dense[0:12, 0] = True                 # A
    dense[6:20, 1] = True                 # B: A AND B = 6..11
    dense[16:26, 2] = True                # C, 20..25 are C alone
    unit = (dense[:, 0] & dense[:, 1]) | dense[:, 2]
    got = exact_answer(dense, unit, 3)
    assert got.iou == 1.0 and got.optimal
    assert got.key == (0, 1, 1, 2, 0)     # ((A AND B) OR C)
    check(dense, unit, 3)


def test_trap_longer_chain_at_length_4():
    """A length-4 optimum built from the same rewrite twice must come back, whole."""
    rng = np.random.default_rng(4)
    dense = rng.random((60, 5)) < 0.35
    unit = ((dense[:, 0] & dense[:, 1]) | dense[:, 2]) & ~dense[:, 3]
    got = exact_answer(dense, unit, 4)
    assert got.key is not None and got.iou == 1.0 and got.optimal
    check(dense, unit, 4)


def test_never_firing_unit_is_none_and_optimal():
    dense = np.eye(5, dtype=bool)
    got = exact_answer(dense, np.zeros(5, dtype=bool), 3)
    assert got.key is None and got.optimal and got.bound == 0.0 and got.iou == 0.0


def test_budget_stop_reports_a_bound_above_the_optimum():
    rng = np.random.default_rng(7)
    dense, unit = tiny_store(rng, 12)
    unit = rng.random(len(unit)) < 0.5
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = Space.from_member(rows, np.bincount(inverse))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    got = search_unit(space, Unit(space, sigs, hits[sigs]), 3, cancelled=lambda: True)
    want, _ = enumerate_best(dense, unit, 3)
    assert got.bound >= want >= got.iou
    assert got.optimal == (got.bound == got.iou)


# ------------------------------------------------------------ repeated concepts


def truth_tables(length: int, n_vars: int, distinct: bool) -> dict[int, set[int]]:
    """Truth tables (as ints over 2**n_vars rows) of left-deep formulas, by length."""
    rows = range(2 ** n_vars)
    var = [sum(1 << r for r in rows if r >> v & 1) for v in range(n_vars)]
    full = (1 << 2 ** n_vars) - 1
    out: dict[int, set[int]] = {}
    for n in range(1, length + 1):
        tables = set()
        for leaves in itertools.product(range(n_vars), repeat=n):
            if distinct and len(set(leaves)) < n:
                continue
            for ops in itertools.product(range(3), repeat=n - 1):
                t = var[leaves[0]]
                for leaf, op in zip(leaves[1:], ops):
                    t = t | var[leaf] if op == 0 else t & var[leaf] if op == 1 else t & (full ^ var[leaf])
                tables.add(t)
        out[n] = tables
    return out


@pytest.mark.parametrize("length", [2, 3])
def test_repeated_concepts_never_help_up_to_length_3(length):
    """Every formula with a repeated leaf equals a distinct-leaf one no longer (or is empty)."""
    n_vars = length - 1
    repeated = set().union(*truth_tables(length, n_vars, False).values())
    distinct = set().union(*truth_tables(length, n_vars, True).values()) | {0}
    assert repeated <= distinct


def test_repeated_concepts_can_help_at_length_4():
    """(((x AND NOT y) OR z) AND x) = x AND (NOT y OR z): no distinct formula of any length writes it."""
    rows = range(8)
    x, y, z = ([r >> v & 1 for r in rows] for v in range(3))
    target = sum(1 << r for r in rows if x[r] and (not y[r] or z[r]))
    assert target in truth_tables(4, 3, False)[4]
    assert target not in set().union(*truth_tables(3, 3, True).values())


# ------------------------------------------------------------ against the beam


def test_exact_is_never_below_the_beam():
    rng = np.random.default_rng(11)
    for trial in range(8):
        dense, _ = tiny_store(rng, 10, n=64)
        units = np.stack([tiny_store(rng, 10, n=64)[1] for _ in range(6)], 1)
        units[:, :3] = np.stack([(dense[:, i] & dense[:, i + 1]) | dense[:, i + 2] for i in range(3)], 1)
        units ^= rng.random(units.shape) < 0.05
        store = cxql.ConceptStore.from_masks(dense, [f"c{i}" for i in range(10)])
        store.add_unit_masks("l", units)
        session = cxql.connect(store)
        beam = session.execute("SEARCH unit * LENGTH 3 BEAM 3").rows
        for u, row in enumerate(beam):
            got = exact_answer(dense, units[:, u], 3)
            assert got.iou >= row["iou"], (trial, u, row["formula"])


# ------------------------------------------------------------ the README's demo-store figures


def readme_exact_table() -> tuple[str, list[tuple[str, ...]]]:
    """The section "Exact search" of the README and its rows | layer | units | below | largest | mean |."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Exact search"):text.index("## Command line")]
    rows = re.findall(r"^\| (conv1|conv2|fc) \| (\d+) \| (\d+) \| ([0-9.]+) \| ([0-9.]+|-) \|$", section, re.M)
    return section, rows


def test_readme_demo_table_is_what_exact_and_beam_answer():
    """Recomputes the README's "how often beam missed" table on stores/digits (LENGTH 3, BEAM 10)."""
    section, table = readme_exact_table()
    assert [r[0] for r in table] == ["conv1", "conv2", "fc"]
    session = cxql.connect(cxql.ConceptStore.open(demo_store_path()))
    below_total, largest = 0, 0.0
    for layer, n_units, below, top, mean in table:
        session.execute(f"SET layer = '{layer}'")
        beam = session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows
        exact = session.execute("SEARCH unit * LENGTH 3 EXACT").rows
        assert all(e["optimal"] and e["bound"] == e["iou"] for e in exact)
        gaps = np.array([e["iou"] - b["iou"] for b, e in zip(beam, exact)])
        assert gaps.min() > -1e-12  # EXACT is never below the beam at LENGTH 3
        worse = gaps > 1e-12
        assert (int(n_units), int(below), top) == (len(beam), int(worse.sum()), f"{gaps.max():.4f}"), layer
        assert mean == (f"{gaps[worse].mean():.4f}" if worse.any() else "-"), layer
        below_total, largest = below_total + int(worse.sum()), max(largest, gaps.max())
        if layer == "fc":  # the example the README spells out
            assert (beam[0]["formula"], exact[0]["formula"]) == ("pred:9", "((label:9 AND pred:3) OR pred:9)")
            assert f"`pred:9`\n({beam[0]['iou']:.3f})" in section and f"({exact[0]['iou']:.3f})" in section
    units = sum(int(r[1]) for r in table)
    assert f"{below_total} of {units} units below the optimum, by at\nmost {largest:.4f} IoU" in section


# ------------------------------------------------------------ the bounds, node by node, against enumeration


def prefixes(concepts, length: int):
    """Every key of at most ``length`` leaves over ``concepts`` (repeats too: the bounds hold for any sets)."""
    keys = [(int(c),) for c in concepts]
    out = list(keys)
    for _ in range(length - 1):
        keys = [key + (int(c), op) for key in keys for c in concepts for op in (0, 1, 2)]
        out += keys
    return out


def int_mask(cols: list[int], key) -> int:
    full = (1 << 64) - 1
    m = cols[key[0]]
    for i in range(1, len(key), 2):
        c, op = cols[key[i]], key[i + 1]
        m = m | c if op == 0 else m & c if op == 1 else m & (full ^ c)
    return m


def value(mask: int, unit: int, a: int, b: int) -> int:
    """b*tp - a*fp of a formula mask: >= a*|M| iff its IoU >= a/b."""
    tp = (mask & unit).bit_count()
    return b * tp - a * (mask.bit_count() - tp)


def tiny_case(seed: int):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    dense, unit = tiny_store(rng, k, n=int(rng.integers(8, 40)))
    if rng.random() < 0.3:
        unit = rng.random(len(unit)) < rng.uniform(0.05, 0.8)
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = Space.from_member(rows, np.bincount(inverse, minlength=len(rows)))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    cols = [int(x) for x in bitmasks(dense)]
    return rng, space, Unit(space, sigs, hits[sigs]), cols, int(bitmasks(unit[:, None])[0]), k


def incumbents(rng, unit_mask: int, cols: list[int], k: int):
    """a/b values to bound against: 0, a random fraction, and IoUs of random formulas (ties are the edge)."""
    out = [(0, 1), (int(rng.integers(1, 9)), 9)]
    for key in [tuple(rng.integers(0, k, 1))] + [(int(rng.integers(k)), int(rng.integers(k)), int(rng.integers(3)))
                                                  for _ in range(3)]:
        m = int_mask(cols, key)
        tp, union = (m & unit_mask).bit_count(), (m | unit_mask).bit_count()
        if union:
            out.append((tp, union))
    return out


@pytest.mark.parametrize("seed", range(120))
def test_child_bounds_never_below_a_child(seed):
    """The last-step bound of every child H OP c, with the parent's counts cached or not, in batches or alone."""
    rng, space, unit, cols, unit_mask, k = tiny_case(seed)
    if not len(unit.sigs):
        return
    for key in prefixes(space.candidates, 2):  # the search never forms a key with an empty concept
        if rng.random() < 0.5 and len(key) > 1:
            space.overlaps(key[:-2], space.mask(key[:-2]))    # the parent's counts, as its expansion leaves them
        elif len(key) > 1:
            space._overlaps.clear(), space._sizes.clear()
        m = int_mask(cols, key)
        n_g, tp_g = m.bit_count(), (m & unit_mask).bit_count()
        parent, d, op = (key[:-2], key[-2], key[-1]) if len(key) > 1 else (None, key[0], 0)
        for a, b in incumbents(rng, unit_mask, cols, k):
            ub = exact.child_bounds(space, unit, parent, np.array([d]), np.array([op]), np.array([n_g]),
                                    np.array([tp_g]), a, b)[0]
            for ci, c in enumerate(space.candidates):
                for child_op in range(3):
                    want = value(int_mask(cols, key + (int(c), child_op)), unit_mask, a, b)
                    assert ub[ci, child_op] >= want, (key, c, child_op, a, b)


@pytest.mark.parametrize("seed", range(40))
def test_child_bounds_batch_equals_one_by_one_and_hopeful(seed):
    rng, space, unit, cols, unit_mask, k = tiny_case(seed)
    if not len(unit.sigs) or k < 2:
        return
    parent = (int(rng.choice(space.candidates)),)
    space.overlaps(parent, space.mask(parent))
    ds, ops = np.repeat(space.candidates, 3), np.tile(np.arange(3), len(space.candidates))
    masks = [int_mask(cols, parent + (int(d), int(op))) for d, op in zip(ds, ops)]
    n_g = np.array([m.bit_count() for m in masks])
    tp_g = np.array([(m & unit_mask).bit_count() for m in masks])
    a, b = incumbents(rng, unit_mask, cols, k)[-1]
    batch = exact.child_bounds(space, unit, parent, ds, ops, n_g, tp_g, a, b)
    may = batch >= a * unit.size                      # hopeful: the same test, new leaves only
    may[:, space.slot[list(parent)]] = False
    may[np.arange(len(ds)), space.slot[ds]] = False
    assert np.array_equal(exact.hopeful(space, unit, parent, ds, ops, n_g, tp_g, a, b), may.any((1, 2)))
    for j in range(len(ds)):
        one = exact.child_bounds(space, unit, parent, ds[j:j + 1], ops[j:j + 1], n_g[j:j + 1], tp_g[j:j + 1], a, b)
        assert np.array_equal(batch[j], one[0])


@pytest.mark.parametrize("seed", range(80))
def test_prefix_bounds_never_below_an_extension(seed):
    """Phi (the pruning test) and the relaxations' optimum (the priority) of every prefix, at LENGTH 3."""
    rng, space, unit, cols, unit_mask, k = tiny_case(seed)
    length = 3
    if not len(unit.sigs) or not len(space.candidates):
        return
    keys = prefixes(space.candidates, length)
    masks = {key: int_mask(cols, key) for key in keys}
    for a, b in incumbents(rng, unit_mask, cols, k):
        best = exact._Best(a=a, b=b, version=1)
        prune = exact._Pruner(unit, length)
        prune.update(best)
        aM = a * unit.size
        for key in keys:
            r = length - (len(key) + 1) // 2
            if r == 0:
                continue
            ext = [m for other, m in masks.items() if other[:len(key)] == key and len(other) > len(key)
                   and len(set(exact.leaves(other))) == len(exact.leaves(other))]
            if not ext or len(set(exact.leaves(key))) < len(exact.leaves(key)):
                continue
            m = masks[key]
            tp, fp = (m & unit_mask).bit_count(), (m & ~unit_mask).bit_count()
            gu = unit.inside(space, key)
            h = prune.w[gu].sum()
            phi = prune.phi(h, tp * b - fp * a, r)
            top = max(value(e, unit_mask, a, b) for e in ext)
            assert phi >= top - aM, (key, a, b)
            iou = max((e & unit_mask).bit_count() / (e | unit_mask).bit_count() for e in ext if e | unit_mask)
            if iou >= a / b:
                num, den = exact.relaxed_bound(unit, r, a, b, gu, tp, fp)
                assert num * (e_best := best_fraction(ext, unit_mask))[1] >= e_best[0] * den, (key, a, b)
    num, den = exact.relaxed_bound(unit, length, 0, 1)
    distinct = [masks[key] for key in keys if len(set(exact.leaves(key))) == len(exact.leaves(key))]
    e_best = best_fraction(distinct, unit_mask)
    assert num * e_best[1] >= e_best[0] * den


def best_fraction(masks: list[int], unit: int) -> tuple[int, int]:
    """The greatest IoU among ``masks`` as an exact fraction (tp, union)."""
    best = (0, 1)
    for m in masks:
        tp, union = (m & unit).bit_count(), (m | unit).bit_count()
        if union and tp * best[1] > best[0] * union:
            best = (tp, union)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_stopped_search_bounds_the_optimum(seed):
    """Stopped after a few pops (the tightened bound of what is left), the gap still holds the optimum."""
    rng = np.random.default_rng(500 + seed)
    dense, unit = tiny_store(rng, int(rng.integers(3, 10)))
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = Space.from_member(rows, np.bincount(inverse, minlength=len(rows)))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    want, _ = enumerate_best(dense, unit, 3)
    for stop_after in (1, 2, 5, 20):
        calls = iter(range(stop_after + 1))
        got = search_unit(space, Unit(space, sigs, hits[sigs]), 3,
                          cancelled=lambda: next(calls, stop_after) >= stop_after)
        assert got.bound >= want >= got.iou, stop_after
        assert not got.optimal or got.iou == want


@pytest.mark.parametrize("seed", range(40))
def test_a_unit_stopped_before_it_starts_answers_its_seed_without_the_pair_screen(seed, monkeypatch):
    """After Ctrl-C or a spent WITHIN, each unit left used to build its pair tables and screen (the costly part,
    ~0.25 s a unit on 60k positions x 120 concepts: Ctrl-C on 40 units took 9 s); the seed and the root bound
    answer it, and the bound still holds."""
    rng = np.random.default_rng(seed)
    dense, unit = tiny_store(rng, int(rng.integers(2, 9)))
    length = int(rng.integers(2, min(4, dense.shape[1]) + 1))
    monkeypatch.setattr(exact, "first_two", lambda *a, **k: pytest.fail("the pair screen ran after a stop"))
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = Space.from_member(rows, np.bincount(inverse))
    hits = np.bincount(inverse, weights=unit, minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    for stop in ({"cancelled": lambda: True}, {"deadline": 0.0}):
        got = search_unit(space, Unit(space, sigs, hits[sigs]), length, **stop)
        want, _ = enumerate_best(dense, unit, length)
        assert got.bound >= want >= got.iou
        assert not got.optimal or got.bound == got.iou


def test_a_unit_stopped_before_its_search_is_proven_when_its_seed_reaches_the_root_bound():
    """Cancelled at once, a unit equal to a concept answers it with IoU 1: the bound (1) proves it."""
    dense = np.zeros((20, 3), dtype=bool)
    dense[:8, 0], dense[5:15, 1], dense[::3, 2] = True, True, True
    rows, inverse = np.unique(dense, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    space = Space.from_member(rows, np.bincount(inverse, minlength=len(rows)))
    hits = np.bincount(inverse, weights=dense[:, 0], minlength=len(rows)).astype(np.int64)
    sigs = np.flatnonzero(hits)
    got = search_unit(space, Unit(space, sigs, hits[sigs]), 3, cancelled=lambda: True)
    assert got.key == (0,) and got.iou == 1.0 and got.bound == 1.0 and got.optimal
