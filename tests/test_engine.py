"""Statements end to end through Session.execute, checked against plain numpy."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import cxql
import reference as ref
from cxql.errors import NameResolutionError, QueryError
from cxql.render import render
from conftest import random_store_data

FORMULAS = ["c0", "c4 OR c5", "c4 AND NOT c6", "NOT c3", "c2", "(c0 OR c7) AND NOT (c8 AND c9)", "c3 AND c4"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_eval_matches_plain_counts(small_store, formula) -> None:
    store, concepts, names, units = small_store
    rows = cxql.connect(store).execute(f"EVAL {formula} ON unit *").rows
    mask = ref.evaluate(str(cxql.parse(formula)), concepts, names)
    for row in rows:
        m = units[:, row["unit"]]
        inter = int((mask & m).sum())
        assert row["iou"] == ref.iou(mask, m)
        assert row["precision"] == (inter / mask.sum() if mask.sum() else 0.0)
        assert row["recall"] == (inter / m.sum() if m.sum() else 0.0)
        assert (row["intersection"], row["formula_size"], row["mask_size"]) == (inter, mask.sum(), m.sum())


@pytest.mark.parametrize("formula", FORMULAS)
def test_bare_formula_reports_coverage(formula) -> None:
    concepts, names, _ = random_store_data(1, n=16 * 30)
    store = cxql.ConceptStore.from_masks(concepts, names, mask_shape=(4, 4))
    [row] = cxql.connect(store).execute(formula).rows
    mask = ref.evaluate(str(cxql.parse(formula)), concepts, names)
    assert row["positions"] == mask.sum()
    assert row["samples"] == mask.reshape(30, 16).any(axis=1).sum()


def test_match_ranks_units_by_iou(small_store) -> None:
    store, concepts, names, units = small_store
    rows = cxql.connect(store).execute("MATCH c4 OR c5 TOP 3").rows
    mask = concepts[:, 4] | concepts[:, 5]
    ious = [ref.iou(mask, units[:, u]) for u in range(units.shape[1])]
    want = sorted(range(len(ious)), key=lambda u: (-ious[u], u))[:3]
    assert [r["unit"] for r in rows] == want
    assert rows[0]["unit"] == 3 and rows[0]["iou"] == 1.0


def test_let_names_expand_in_later_formulas(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("LET wet = c4 OR c5")
    [row] = session.execute("EVAL wet ON unit 3").rows
    assert (row["formula"], row["iou"]) == ("(c4 OR c5)", 1.0)
    assert session.execute("SHOW lets").rows == [{"name": "wet", "formula": "(c4 OR c5)"}]


def test_settings_change_defaults(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("SET length = 1")
    assert all(r["length"] <= 1 for r in session.execute("SEARCH unit *").rows)
    assert {r["name"] for r in session.execute("SHOW settings").rows} >= {"beam", "length", "device", "threshold"}


def test_show_statements(small_store) -> None:
    store, concepts, names, units = small_store
    session = cxql.connect(store)
    assert [r["name"] for r in session.execute("SHOW concepts LIKE 'c_'").rows] == names
    assert [r["name"] for r in session.execute("SHOW concepts LIKE 'C1%'").rows] == ["c1"]
    assert session.execute("SHOW categories").rows == [{"category": "a", "concepts": 5}, {"category": "b", "concepts": 5}]
    assert [r["mask_size"] for r in session.execute("SHOW units").rows] == units.sum(axis=0).tolist()
    assert {r["property"] for r in session.execute("SHOW store").rows} >= {"positions", "concepts", "layers"}


def test_explain_describes_without_running(small_store) -> None:
    store, *_ = small_store
    plan = [r["plan"] for r in cxql.connect(store).execute("EXPLAIN EVAL c4 OR c5 ON unit 3").rows]
    assert any("t2 = t0 | t1" in line for line in plan)
    assert any("bytes unpacked" in line for line in plan)


def test_threshold_setting_rethresholds_kept_activations() -> None:
    rng = np.random.default_rng(0)
    store = cxql.ConceptStore.from_masks(rng.random((10 * 16, 3)) < 0.3, ["a", "b", "c"], mask_shape=(4, 4))
    acts = rng.normal(size=(10, 2, 4, 4)).astype(np.float32)
    store.add_units("conv", acts)
    session = cxql.connect(store)
    before = session.execute("SHOW units").rows
    session.execute("SET threshold = 0.0")
    after = session.execute("EVAL a ON unit 0").rows[0]
    assert after["mask_size"] == int((acts[:, 0] > 0).sum()) != before[0]["mask_size"]


def test_results_convert_to_plain_json(small_store) -> None:
    store, *_ = small_store
    result = cxql.connect(store).execute("SEARCH unit 0..2 LENGTH 2")
    assert json.loads(json.dumps(result.to_json()))["rows"][0]["unit"] == 0


@pytest.mark.parametrize("query, error, message, caret_under", [
    ("EVAL c4 OR c44 ON unit 0", NameResolutionError, "unknown concept 'c44'", "c44"),
    ("EVAL c4 ON unit 99", NameResolutionError, "unit 99 does not exist", "99"),
    ("SEARCH unit 5..2", QueryError, "empty unit range 5..2", "5..2"),
    ("SEARCH unit 1 LENGTH 0", QueryError, "LENGTH must be at least 1", "0"),
    ("SEARCH unit 1 BEAM 0", QueryError, "BEAM must be at least 1", "0"),
    ("SET bean = 3", NameResolutionError, "unknown setting 'bean'", "bean"),
    ("SET beam = -1", QueryError, "beam must be a whole number", None),
    ("NEIGHBORS(c1)", NameResolutionError, "needs word vectors", None),
])
def test_query_errors_point_at_the_fault(small_store, query, error, message, caret_under) -> None:
    store, *_ = small_store
    with pytest.raises(error, match=message) as info:
        cxql.connect(store).execute(query)
    text = str(info.value)
    assert "line 1, column" in text
    if caret_under:
        query_line, caret_line = text.splitlines()[1:3]
        start = caret_line.index("^")
        assert query_line[start:start + len(caret_under)] == caret_under


def test_did_you_mean_and_ambiguity() -> None:
    store = cxql.ConceptStore.from_masks(np.ones((4, 3), dtype=bool), ["water", "blue", "blue"],
                                         ["object", "color", "material"])
    session = cxql.connect(store)
    with pytest.raises(NameResolutionError) as info:
        session.execute("watr")
    assert "did you mean water?" in str(info.value)
    with pytest.raises(NameResolutionError, match="could be color:blue, material:blue"):
        session.execute("blue")
    assert session.execute("color:blue").rows[0]["formula"] == "color:blue"
    assert session.execute('"object:water"').rows[0]["formula"] == "water"


def test_store_without_layers_explains_what_to_do() -> None:
    store = cxql.ConceptStore.from_masks(np.ones((4, 1), dtype=bool), ["a"])
    with pytest.raises(QueryError, match="no unit layers"):
        cxql.connect(store).execute("SEARCH unit *")


def test_explain_search_names_the_engine_that_will_run(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    plan = " ".join(r["plan"] for r in session.execute("EXPLAIN SEARCH unit * LENGTH 3").rows)
    assert "batched engine" in plan and "sparse" in plan
    session.execute("SET engine = 'plain'")
    plan = " ".join(r["plan"] for r in session.execute("EXPLAIN SEARCH unit * LENGTH 3").rows)
    assert "plain engine" in plan


def test_set_and_let_print_their_message_alone(small_store, capsys) -> None:
    store, *_ = small_store
    render(list(cxql.connect(store).stream("SET beam = 3; LET w = c4 OR c5")), "table", sys.stdout)
    assert capsys.readouterr().out.splitlines() == ["beam = 3", "w = (c4 OR c5)"]


@pytest.mark.parametrize("engine", ["plain", "batched"])
def test_a_cancelled_search_keeps_only_complete_units(small_store, engine, monkeypatch) -> None:
    from cxql.batched import BatchedSearch

    monkeypatch.setattr(BatchedSearch, "chunks", lambda self, units: ([u] for u in units))  # a unit a chunk
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    notes: list[str] = []

    class CancelAfterTwoUnits:
        def start(self, total, description):
            pass

        def advance(self, n=1, note=None):
            if note and note.startswith("unit "):
                notes.append(note)
                if len(notes) == 2:
                    session.cancel()

        def finish(self):
            pass

    session.progress = CancelAfterTwoUnits()
    full = cxql.connect(store).execute("SEARCH unit * LENGTH 3").rows
    result = session.execute("SEARCH unit * LENGTH 3")
    assert result.rows == full[:len(result.rows)]
    assert len(result.rows) < len(full) and "cancelled after" in result.message
    assert notes[0] == f"unit 0: {full[0]['formula']}"


def test_show_concepts_orders_by_a_column(small_store) -> None:
    store, concepts, names, _ = small_store
    session = cxql.connect(store)
    rows = session.execute("SHOW concepts ORDER BY count DESC").rows
    counts = concepts.sum(axis=0)
    assert [r["name"] for r in rows] == [names[i] for i in sorted(range(len(names)), key=lambda i: -counts[i])]
    assert [r["name"] for r in session.execute("SHOW concepts LIKE 'c1%' ORDER BY name DESC").rows] == ["c1"]
    with pytest.raises(QueryError, match="cannot order concepts by 'size'"):
        session.execute("SHOW concepts ORDER BY size")


def random_formula_text(rng, names: list[str], depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return str(rng.choice(names))
    op = rng.choice(["NOT", "AND", "OR"])
    if op == "NOT":
        return f"NOT {random_formula_text(rng, names, depth - 1)}"
    return f"({random_formula_text(rng, names, depth - 1)} {op} {random_formula_text(rng, names, depth - 1)})"


@pytest.mark.parametrize("seed", range(30))
def test_random_formulas_count_like_numpy(small_store, seed) -> None:
    store, concepts, names, units = small_store
    rng = np.random.default_rng(seed)
    text = random_formula_text(rng, names, 4)
    mask = ref.evaluate(str(cxql.parse(text)), concepts, names)
    session = cxql.connect(store)
    assert session.execute(text).rows[0]["positions"] == mask.sum()
    for row in session.execute(f"EVAL {text} ON unit *").rows:
        assert row["iou"] == ref.iou(mask, units[:, row["unit"]])


@pytest.mark.parametrize("engine", ["plain", "batched"])
def test_search_results_sort_by_a_column(small_store, engine) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    plain = session.execute("SEARCH unit * LENGTH 2").rows
    by_iou = session.execute("SEARCH unit * LENGTH 2 ORDER BY iou DESC").rows
    assert by_iou == sorted(plain, key=lambda r: -r["iou"])  # stable: ties keep unit order
    by_size = session.execute("SEARCH unit * LENGTH 2 ORDER BY mask_size").rows
    assert [r["mask_size"] for r in by_size] == sorted(r["mask_size"] for r in plain)
    with pytest.raises(QueryError, match="cannot order SEARCH results by 'size'") as info:
        session.execute("SEARCH unit * ORDER BY size")
    assert info.value.span is not None and info.value.text[info.value.span.start:info.value.span.end] == "size"


def test_show_lets_with_none_says_so(small_store) -> None:
    store, *_ = small_store
    result = cxql.connect(store).execute("SHOW lets")
    assert result.rows == [] and "no LET names yet" in result.message
