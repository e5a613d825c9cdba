"""Stated limits (cxql.limits): deep, huge or self-doubling queries get one clear error, never a crash."""

from __future__ import annotations

import warnings

import pytest

import cxql
from cxql.errors import CxqlError, QueryError
from cxql.limits import MAX_DEPTH, MAX_LEAVES, MAX_LENGTH, beam_capacity

DEEP = {
    "500 NOTs": "NOT " * 500 + "c0",
    "a 500-term OR chain": " OR ".join(["c0"] * 500),
    "500 nested AND": "(" * 500 + "c0" + " AND c1)" * 500,
    "300 EXPLAINs": "EXPLAIN " * 300 + "c0",
    "deep inside EVAL": "EVAL " + "NOT " * 400 + "c0 ON unit 0",
}


@pytest.mark.parametrize("query", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_refused_with_a_caret(small_store, query) -> None:
    store, *_ = small_store
    with pytest.raises(QueryError, match=f"more than {MAX_DEPTH} levels") as info:
        cxql.connect(store).execute(query)
    assert "line 1, column" in str(info.value) and "^" in str(info.value)
    with pytest.raises(QueryError):
        cxql.parse(query)


def test_the_caret_points_at_the_level_past_the_limit() -> None:
    with pytest.raises(QueryError) as info:
        cxql.parse("c0;\n" + "NOT " * (MAX_DEPTH + 5) + "c0")
    span = info.value.span
    assert (span.line, span.column) == (2, 4 * MAX_DEPTH + 1)


def test_nesting_at_the_limit_runs_and_prints_back(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    deepest = "NOT " * MAX_DEPTH + "c0"
    chain = " OR ".join(["c4"] * MAX_DEPTH + ["c5"])
    assert session.execute(deepest).rows[0]["positions"] == session.execute("c0" if MAX_DEPTH % 2 == 0 else "NOT c0").rows[0]["positions"]
    tree = cxql.parse(chain)
    assert cxql.parse(str(tree)) == tree
    assert session.execute(chain).rows[0]["positions"] == session.execute("c4 OR c5").rows[0]["positions"]
    assert str(cxql.parse("(" * 5000 + "c0" + ")" * 5000)) == "c0"  # parentheses add no level


def test_chained_lets_refuse_past_the_depth_limit(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("LET a0 = c0")
    for i in range(1, MAX_DEPTH + 1):
        session.execute(f"LET a{i} = a{i - 1} OR c4")
    with pytest.raises(QueryError, match="once LET names are expanded") as info:
        session.execute(f"LET b = a{MAX_DEPTH} OR c5")
    assert "^" in str(info.value)
    assert session.execute(f"EVAL a{MAX_DEPTH} ON unit 0").rows[0]["iou"] >= 0


def test_self_doubling_let_stops_at_the_leaf_limit(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("LET a = c0")
    doublings = MAX_LEAVES.bit_length() - 1
    for _ in range(doublings):
        session.execute("LET a = a OR a")
    with pytest.raises(QueryError, match=f"{2 * MAX_LEAVES:,} leaves"):
        session.execute("LET a = a OR a")
    assert session.execute("EVAL a ON unit 0").rows[0]["formula_size"] == session.execute("c0").rows[0]["positions"]


@pytest.mark.parametrize("before, number, after", [
    ("MATCH c0 TOP ", "1" + "0" * 5000, ""),
    ("EVAL c0 ON unit ", "1" + "0" * 5000, ""),
    ("SEARCH unit 0 BEAM ", "9" * 4400, " DISTINCT"),
    ("SEARCH unit 0..", "1" + "0" * 30, ""),
    ("SET beam = ", "1" + "0" * 5000, ""),
    ("SHOW unit ", "7" * 20, ""),
])
def test_numbers_with_too_many_digits_are_refused(small_store, before, number, after) -> None:
    store, *_ = small_store
    with pytest.raises(QueryError, match="number too large") as info:
        cxql.connect(store).execute(before + number + after)
    assert (info.value.span.column, info.value.span.end) == (len(before) + 1, len(before) + len(number))


@pytest.mark.parametrize("query, message", [
    (f"SEARCH unit 0 LENGTH {MAX_LENGTH + 1}", f"LENGTH must be at most {MAX_LENGTH}"),
    ("SEARCH unit 0 LENGTH 1000000000", f"LENGTH must be at most {MAX_LENGTH}"),
    (f"SET length = {MAX_LENGTH + 1}", f"length must be at most {MAX_LENGTH}"),
])
def test_length_has_a_stated_maximum(small_store, query, message) -> None:
    store, *_ = small_store
    with pytest.raises(QueryError, match=message):
        cxql.connect(store).execute(query)


@pytest.mark.parametrize("engine", ["plain", "batched"])
@pytest.mark.parametrize("distinct", ["", " DISTINCT"])
def test_a_huge_beam_is_clipped_to_what_a_beam_can_hold(small_store, engine, distinct) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    capacity = beam_capacity(9, 2)  # the small store has 9 non-empty concepts
    huge = session.execute(f"SEARCH unit * LENGTH 2 BEAM 1000000000{distinct}").rows
    assert huge == session.execute(f"SEARCH unit * LENGTH 2 BEAM {capacity}{distinct}").rows


@pytest.mark.parametrize("n, length, expected", [(1, 1, 1), (9, 1, 9), (9, 2, 9 * 28), (2, 3, 2 * 7 * 7), (0, 3, 1)])
def test_beam_capacity(n, length, expected) -> None:
    assert beam_capacity(n, length) == expected


def test_top_larger_than_the_layer_returns_every_unit(small_store) -> None:
    store, *_ = small_store
    assert len(cxql.connect(store).execute("MATCH c0 TOP 999999999999999999").rows) == store.layers["layer"].n_units


def test_errors_are_cxql_errors_with_positions(small_store) -> None:
    store, *_ = small_store
    for query in DEEP.values():
        with pytest.raises(CxqlError) as info:
            cxql.connect(store).execute(query)
        assert info.value.span is not None


@pytest.mark.parametrize("literal, name", [(r"'\l'", "\\l"), ("'a\\x00b'", "a\x00b"), (r"'\N{nope}'", r"\N{nope}")])
def test_odd_escapes_in_strings_do_not_warn(literal, name) -> None:
    # found by the fuzz test: "invalid escape sequence" warnings leaked out of the parser
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cxql.parse(literal) == cxql.syntax.FormulaStmt(cxql.syntax.Concept(name))
    assert not caught
