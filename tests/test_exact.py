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
