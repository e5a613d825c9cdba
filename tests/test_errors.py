"""How errors are drawn: the caret sits under the fault, and a long line is cut to a window around it."""

from __future__ import annotations

import pytest

import cxql
from cxql.errors import EXCERPT_WIDTH, CxqlError, QuerySyntaxError, Span, caret
from cxql.resources import demo_store_path


def span_at(text: str, start: int, end: int) -> Span:
    return Span(text.count("\n", 0, start) + 1, start - (text.rfind("\n", 0, start) + 1) + 1, start, end)


def under_caret(drawn: str) -> tuple[str, str]:
    """(the excerpt's characters above the carets, the full excerpt line) of a drawn caret."""
    excerpt, marks = drawn.split("\n")
    first = marks.index("^")
    return excerpt[first:first + marks.count("^")], excerpt


@pytest.mark.parametrize("length, start, size", [
    (40, 5, 3),          # a short line: shown whole
    (5000, 2500, 4),     # the middle of a long line
    (5000, 0, 4),        # its start
    (5000, 4996, 4),     # its end
    (5000, 2500, 300),   # a span wider than the window
    (101, 99, 2),        # one character over the window
])
def test_the_caret_is_under_the_fault_and_long_lines_are_cut(length, start, size) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    drawn = caret(text, span_at(text, start, start + size))
    shown, excerpt = under_caret(drawn)
    assert text[start:].startswith(shown) and len(shown) == min(size, len(shown)) and shown
    assert all(len(line) <= EXCERPT_WIDTH + 4 for line in drawn.split("\n"))
    assert excerpt.startswith("  …") == (length > EXCERPT_WIDTH and start > 30)
    assert excerpt.endswith("…") == (length > EXCERPT_WIDTH and start + 70 < length)


def test_an_error_on_a_long_line_of_several_stays_short() -> None:
    text = "EVAL ink ON unit 3\n" + "EVAL " + " OR ".join(["ink"] * 1000) + " OR AND loop ON unit 3\n"
    with pytest.raises(QuerySyntaxError) as caught:
        cxql.parse(text)
    drawn = str(caught.value)
    assert drawn.startswith("line 2, column ") and max(map(len, drawn.splitlines())) < 200
    shown, _ = under_caret("\n".join(drawn.splitlines()[1:3]))
    assert shown == "AND"


def test_errors_without_a_position_print_only_their_message() -> None:
    assert str(CxqlError("no store at x", hint="try y")) == "no store at x\nhint: try y"


@pytest.mark.parametrize("query, marked", [
    ("SEARCH unit 0 LENGTH 0", 21),            # LENGTH's 0, not the unit's
    ("SEARCH unit 0 length 0 BEAM 3", 21),     # keywords in any case
    ("SEARCH unit 1 LENGTH 3 BEAM 0", 28),
    ("SEARCH unit 0 LENGTH 101", 21),
    ("SEARCH unit 0..2 LENGTH 0 EXACT", 24),
    ("MATCH pred:1 TOP 0", 17),
])
def test_an_option_out_of_range_is_marked_at_its_value(query: str, marked: int) -> None:
    session = cxql.connect(demo_store_path())
    with pytest.raises(CxqlError) as info:
        session.execute(query)
    assert info.value.span is not None and info.value.span.start == marked, str(info.value)


def test_an_option_from_set_is_marked_at_the_statement() -> None:
    """LENGTH set earlier is not in the statement's text: the error marks where it can (no wrong number)."""
    session = cxql.connect(demo_store_path())
    session.settings["length"] = 0  # as if a SET slipped past its own check
    with pytest.raises(CxqlError) as info:
        session.execute("SEARCH unit 0")
    assert "LENGTH must be at least 1" in str(info.value)
    assert info.value.span is None or info.value.span.start != 12
