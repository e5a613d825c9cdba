"""Syntax nodes carry their source span, so errors found after parsing point at the very token.

The span is where a node was written; it takes no part in equality, hashing
or printing (two formulas are equal when they say the same thing).
"""

from __future__ import annotations

import re

import pytest

import cxql
from cxql import syntax as s
from cxql.errors import CxqlError, NameResolutionError, QueryError, Span
from cxql.parser import parse, parse_with_spans
from cxql.resources import demo_store_path


def caret_under(error: CxqlError) -> tuple[int, str]:
    """(line number, the text above the carets) of a rendered error."""
    lines = str(error).splitlines()
    line_no = int(lines[0].split(",")[0].removeprefix("line "))
    query_line, carets = lines[1], lines[2]
    start = carets.index("^")
    return line_no, query_line[start:start + carets.count("^")]


@pytest.fixture(scope="module")
def demo():
    return demo_store_path()


@pytest.mark.parametrize("query, error, under", [
    ("EVAL ink AND NOT in ON unit 3", NameResolutionError, "in"),                      # the example
    ("EVAL in ON unit 3", NameResolutionError, "in"),
    ("EVAL (ink OR (loop AND NOT (ink OR inq))) ON unit 1", NameResolutionError, "inq"),  # nested
    ("MATCH ink AND (ink OR NOT (ink AND (loop OR ink9))) TOP 2", NameResolutionError, "ink9"),
    ("EXPLAIN EVAL ink AND ink2 ON unit 0", NameResolutionError, "ink2"),
    ("LET a = ink OR a", NameResolutionError, "a"),                                    # a LET using itself
    ("EVAL ink ON unit 1, 3..1", QueryError, "3..1"),
    ("MATCH ink OR NEIGHBORS(ink, 3)", NameResolutionError, "NEIGHBORS(ink, 3)"),
])
def test_the_caret_is_under_the_token_at_fault(demo, query, error, under) -> None:
    with pytest.raises(error) as info:
        cxql.connect(demo).execute(query)
    assert caret_under(info.value) == (1, under)
    last_whole_word = [m.start() for m in re.finditer(rf"(?<![\w']){re.escape(under)}(?![\w'])", query)][-1]
    assert (info.value.span.start, info.value.span.end) == (last_whole_word, last_whole_word + len(under))


def test_a_self_referring_let_points_at_the_use_not_the_name(demo) -> None:
    with pytest.raises(NameResolutionError, match="unknown concept 'a'") as info:
        cxql.connect(demo).execute("LET a = ink OR a")
    assert info.value.span.column == 16  # the second a, not the name after LET


def test_a_let_that_grows_too_large_points_at_the_use(demo) -> None:
    session = cxql.connect(demo)
    session.execute("LET big = ink OR loop")
    for _ in range(11):
        session.execute("LET big = (big AND big)")
    with pytest.raises(QueryError, match="too large once LET names are expanded") as info:
        session.execute("LET big = (big AND big)")
    assert info.value.span.column == 12 and caret_under(info.value) == (1, "big")


def test_spans_are_absolute_in_scripts_of_several_lines(demo) -> None:
    query = "SHOW store;\n-- then\nEVAL ink AND NOT in ON unit 3"
    with pytest.raises(NameResolutionError) as info:
        list(cxql.connect(demo).stream(query))
    assert info.value.span == Span(3, 18, query.index(" in ") + 1, query.index(" in ") + 3)
    assert caret_under(info.value) == (3, "in")


def test_a_let_keeps_no_span_from_the_text_that_defined_it(demo) -> None:
    session = cxql.connect(demo)
    session.execute("LET wet = ink OR loop")
    assert all(getattr(node, "span", None) is None for node in _nodes(session.lets["wet"]))
    with pytest.raises(NameResolutionError) as info:
        session.execute("EVAL wet AND NOT zzz ON unit 1")
    assert caret_under(info.value) == (1, "zzz")


def _nodes(formula):
    yield formula
    for child in (getattr(formula, "operand", None), getattr(formula, "left", None), getattr(formula, "right", None)):
        if child is not None:
            yield from _nodes(child)


def test_units_that_collide_with_a_concept_name_are_pointed_at(small_store) -> None:
    store, *_ = small_store  # concepts c0..c9, 6 units
    with pytest.raises(NameResolutionError, match="unit 9 does not exist") as info:
        cxql.connect(store).execute("EVAL c9 ON unit 9")
    assert info.value.span.column == 17


def test_parsed_nodes_carry_spans_that_equality_hash_and_printing_ignore() -> None:
    [(stmt, span)] = parse_with_spans("EVAL ink AND NOT in ON unit 3")
    formula = stmt.formula
    assert (formula.span.start, formula.span.end) == (5, 19)
    assert (formula.left.span.start, formula.right.span.start, formula.right.operand.span.start) == (5, 13, 17)
    plain = s.And(s.Concept("ink"), s.Not(s.Concept("in")))
    assert formula == plain and hash(formula) == hash(plain) and repr(formula) == repr(plain)
    assert str(formula) == "(ink AND NOT in)" and "span" not in repr(stmt)
    assert stmt.units.spans == (Span(1, 29, 28, 29),) and stmt.units == s.Units((3,))
    assert parse("ink AND NOT in").formula.left.span is None  # the quick parser keeps no positions


@pytest.mark.parametrize("text, needle, found", [("EVAL ink AND in ON unit 3", "in", 13),
                                                 ("EVAL c9 ON unit 9", "9", 16),
                                                 ("EVAL inky ON unit 3", "in", 5)])  # no whole word: the first
def test_errors_without_a_span_look_for_the_needle_as_a_whole_word(text, needle, found) -> None:
    error = QueryError("x", needle=needle).locate(text, Span(1, 1, 0, len(text)))
    assert error.span.start == found
