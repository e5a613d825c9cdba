"""SEARCH against the plain numpy reference, and against exhaustive enumeration."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
import reference as ref
from conftest import random_store_data


def run_search(store, length: int, beam: int, distinct: bool = False) -> list[dict]:
    query = f"SEARCH unit * LENGTH {length} BEAM {beam}" + (" DISTINCT" if distinct else "")
    return cxql.connect(store).execute(query).rows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length, beam, distinct", [(1, 5, False), (2, 3, False), (3, 5, False),
                                                    (3, 10, False), (4, 2, True), (3, 5, True)])
def test_search_matches_reference(seed, length, beam, distinct) -> None:
    concepts, names, units = random_store_data(seed, n=400, k=9, u=5)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    for row in run_search(store, length, beam, distinct):
        want = ref.search(concepts, names, units[:, row["unit"]], length, beam, distinct)
        assert (row["formula"], row["iou"]) == (want.formula, want.iou)
        got_lengths = {d["length"]: (d["formula"], d["iou"]) for d in row["by_length"]}
        assert got_lengths == want.by_length


def test_a_unit_with_an_exact_formula_is_found() -> None:
    concepts, names, units = random_store_data(1)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    [row] = cxql.connect(store).execute("SEARCH unit 3 LENGTH 2 BEAM 10").rows
    assert row["iou"] == 1.0
    assert row["formula"] in ("(c4 OR c5)", "(c5 OR c4)")


def test_unit_that_never_fires_gets_none() -> None:
    concepts, names, units = random_store_data(2)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    [row] = cxql.connect(store).execute("SEARCH unit 1").rows
    assert (row["formula"], row["iou"], row["by_length"]) == ("NONE", 0.0, [])


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_length_2_finds_the_exhaustive_optimum(seed) -> None:
    concepts, names, units = random_store_data(seed, n=120, k=6, u=4, density=0.3)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    for row in run_search(store, length=2, beam=len(names)):
        assert row["iou"] == ref.exhaustive_length2(concepts, units[:, row["unit"]])


def test_printed_formulas_evaluate_to_the_same_iou() -> None:
    concepts, names, units = random_store_data(3)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    for row in session.execute("SEARCH unit * LENGTH 4 BEAM 5").rows:
        if row["formula"] == "NONE":
            continue
        [again] = session.execute(f"EVAL {row['formula']} ON unit {row['unit']}").rows
        assert again["iou"] == row["iou"]
        mask = ref.evaluate(row["formula"], concepts, names)
        assert ref.iou(mask, units[:, row["unit"]]) == row["iou"]


def test_ties_keep_store_order_and_duplicates() -> None:
    # Two identical concepts: the first in store order wins; without DISTINCT the
    # beam may hold the same formula twice, with DISTINCT never.
    concepts = np.zeros((8, 3), dtype=bool)
    concepts[:4, 0] = concepts[:4, 1] = True
    concepts[::2, 2] = True
    unit = concepts[:, 0].copy()
    store = cxql.ConceptStore.from_masks(concepts, ["x", "y", "z"])
    store.add_unit_masks("l", unit[:, None])
    session = cxql.connect(store)
    [row] = session.execute("SEARCH unit 0 LENGTH 3 BEAM 3").rows
    assert row["formula"] == "x"
    for distinct in (False, True):
        want = ref.search(concepts, ["x", "y", "z"], unit, 3, 3, distinct)
        [row] = session.execute("SEARCH unit 0 LENGTH 3 BEAM 3" + (" DISTINCT" if distinct else "")).rows
        assert row["formula"] == want.formula


def test_search_on_a_qualified_store_prints_resolvable_names() -> None:
    concepts, names, units = random_store_data(4, k=6)
    store = cxql.ConceptStore.from_masks(concepts, ["a", "a", "b", "c", "d", "e"], ["x", "y", "x", "x", "x", "x"])
    store.add_unit_masks("l", units)
    session = cxql.connect(store)
    for row in session.execute("SEARCH unit * LENGTH 3").rows:
        if row["formula"] != "NONE":
            assert session.execute(f"EVAL {row['formula']} ON unit {row['unit']}").rows[0]["iou"] == row["iou"]


@pytest.mark.parametrize("engine", ["plain", "batched"])
def test_a_store_whose_concepts_are_all_empty(engine) -> None:
    store = cxql.ConceptStore.from_masks(np.zeros((10, 2), dtype=bool), ["a", "b"])
    store.add_unit_masks("l", np.eye(10, 2, dtype=bool))
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    rows = session.execute("SEARCH unit * LENGTH 3").rows
    assert [(r["formula"], r["iou"]) for r in rows] == [("NONE", 0.0), ("NONE", 0.0)]
