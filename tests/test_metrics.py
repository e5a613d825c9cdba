"""Metrics (cxql.metrics): SEARCH by each metric against the numpy reference, EVAL's values exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
import reference as ref
from conftest import random_store_data
from cxql import metrics
from cxql.errors import CxqlError


@pytest.mark.parametrize("engine", ["batched", "plain"])
@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "iou"])
@pytest.mark.parametrize("seed", range(3))
def test_search_by_a_metric_matches_the_reference(seed, metric, engine) -> None:
    concepts, names, units = random_store_data(seed, n=300, k=8, u=5)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'; SET metric = '{metric}'")
    result = session.execute("SEARCH unit * LENGTH 3 BEAM 4")
    assert result.columns[2] == metric and result.context["metric"] == metric
    for row in result.rows:
        want = ref.search(concepts, names, units[:, row["unit"]], 3, 4, metric=ref.METRICS[metric])
        assert (row["formula"], row[metric]) == (want.formula, want.iou)
        assert {d["length"]: (d["formula"], d[metric]) for d in row["by_length"]} == want.by_length


@pytest.mark.parametrize("metric", ["f1", "precision", "recall"])
def test_the_engines_agree_beam_for_beam(metric) -> None:
    concepts, names, units = random_store_data(7, n=500, k=12, u=8)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    found = {}
    for engine in ("batched", "plain"):
        session = cxql.connect(store)
        session.execute(f"SET engine = '{engine}'; SET metric = '{metric}'")
        found[engine] = [[(str(e.formula), e.inter, e.size, e.score) for e in r.beam]
                         for r in session.searcher().search(session.search_context(), list(range(8)),
                                                            length=3, beam=5, distinct=False)]
    assert found["batched"] == found["plain"]


def test_eval_rows_carry_every_metric_exactly() -> None:
    concepts, names, units = random_store_data(4)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    result = session.execute("EVAL (c4 OR c6) AND NOT c7 ON unit *")
    assert result.columns == ["unit", "formula", "iou", "precision", "recall", "f1", "mask_size"]
    mask = (concepts[:, 4] | concepts[:, 6]) & ~concepts[:, 7]
    for row in result.rows:
        for name, fn in ref.METRICS.items():
            assert row[name] == fn(mask, units[:, row["unit"]]), name


def test_match_ranks_by_the_metric() -> None:
    concepts, names, units = random_store_data(5)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    session.execute("SET metric = 'recall'")
    rows = session.execute("MATCH c3 TOP 6").rows
    recalls = [ref.recall(concepts[:, 3], units[:, u]) for u in range(units.shape[1])]
    assert [r["unit"] for r in rows] == sorted(range(len(recalls)), key=lambda u: (-recalls[u], u))
    assert [r["recall"] for r in rows] == sorted(recalls, reverse=True)


@pytest.mark.parametrize("name", list(metrics.METRICS))
def test_tensor_and_scalar_give_the_same_float(name) -> None:
    """One formula serves the engines (float64 tensors) and the statements (ints): same floats."""
    rng = np.random.default_rng(0)
    inter = rng.integers(0, 10**9, 2000)
    size = inter + rng.integers(0, 10**9, 2000)
    mask = inter + rng.integers(0, 10**9, 2000)
    inter[:3], size[:3], mask[:3] = 0, 0, 0
    metric = metrics.METRICS[name]
    tensor = metric(*(torch.as_tensor(x, dtype=torch.float64) for x in (inter, size, mask)), 0).tolist()
    assert tensor == [float(metric(int(a), int(b), int(c), 0)) for a, b, c in zip(inter, size, mask)]
    assert tensor[:3] == [0.0, 0.0, 0.0]


def test_set_metric_refuses_an_unknown_metric(small_store) -> None:
    store, *_ = small_store
    with pytest.raises(CxqlError, match="unknown metric"):
        cxql.connect(store).execute("SET metric = 'fone'")


def test_explain_names_the_metric(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("SET metric = 'f1'")
    plan = "\n".join(r["plan"] for r in session.execute("EXPLAIN SEARCH unit 0").rows)
    assert "F1 = 2 |M&F| / (|M| + |F|)" in plan


@pytest.mark.parametrize("seed", range(4))
def test_of_iou_is_the_increasing_function_it_claims(seed) -> None:
    """Metrics that declare ``of_iou`` rank every pair of formulas as IoU does (what exact bounds rely on)."""
    rng = np.random.default_rng(seed)
    inter = rng.integers(0, 50, 400)
    size, mask = inter + rng.integers(0, 50, 400), inter + rng.integers(1, 50, 400)
    iou = [metrics.IOU(int(a), int(b), int(c)) for a, b, c in zip(inter, size, mask)]
    for metric in (m for m in metrics.METRICS.values() if m.of_iou):
        values = [metric(int(a), int(b), int(c)) for a, b, c in zip(inter, size, mask)]
        assert values == pytest.approx([metric.of_iou(j) for j in iou], abs=1e-15)
        order = np.argsort(iou, kind="stable")
        assert np.all(np.diff(np.asarray(values)[order]) >= -1e-15)


def best_by_brute_force(concepts: np.ndarray, unit: np.ndarray, length: int, metric) -> float:
    """The greatest ``metric`` over every left-deep formula of distinct concepts (EXACT's space)."""
    import itertools

    k, best = concepts.shape[1], 0.0
    for n in range(1, length + 1):
        for leaves in itertools.permutations(range(k), n):
            for ops in itertools.product(range(3), repeat=n - 1):
                mask = concepts[:, leaves[0]]
                for leaf, op in zip(leaves[1:], ops):
                    c = concepts[:, leaf]
                    mask = mask | c if op == 0 else mask & c if op == 1 else mask & ~c
                best = max(best, metric(mask, unit))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_exact_search_by_f1_proves_the_best_f1(seed) -> None:
    concepts, names, units = random_store_data(seed, n=120, k=6, u=5, density=0.3)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    session.execute("SET metric = 'f1'")
    result = session.execute("SEARCH unit * LENGTH 3 EXACT")
    assert result.columns[:5] == ["unit", "formula", "f1", "optimal", "bound"]
    for row in result.rows:
        want = best_by_brute_force(concepts, units[:, row["unit"]], 3, ref.f1)
        assert row["optimal"] and row["bound"] == row["f1"] == want
        if row["formula"] != "NONE":
            assert ref.f1(ref.evaluate(row["formula"], concepts, names), units[:, row["unit"]]) == want


def test_beam_rows_carry_a_bound_in_the_metric_or_none() -> None:
    concepts, names, units = random_store_data(2, n=120, k=6, u=5, density=0.3)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    session.execute("SET metric = 'f1'")
    for row in session.execute("SEARCH unit * LENGTH 2 BEAM 3").rows:
        assert row["bound"] >= best_by_brute_force(concepts, units[:, row["unit"]], 2, ref.f1) >= row["f1"]
    session.execute("SET metric = 'precision'")
    result = session.execute("SEARCH unit * LENGTH 2 BEAM 3")
    assert "bound" not in result.columns and all("bound" not in row for row in result.rows)


@pytest.mark.parametrize("metric", ["precision", "recall"])
def test_exact_refuses_a_metric_it_cannot_bound(metric, small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET metric = '{metric}'")
    for query in ("SEARCH unit 0 LENGTH 2 EXACT", "EXPLAIN SEARCH unit 0 LENGTH 2 EXACT"):
        with pytest.raises(CxqlError, match=f"no bound for '{metric}'"):
            session.execute(query)
