"""How errors are drawn: the caret sits under the fault, and a long line is cut to a window around it."""

from __future__ import annotations

import pytest

import cxql
from cxql.errors import EXCERPT_WIDTH, CxqlError, QuerySyntaxError, Span, caret


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
