"""When Enter runs the buffer, and which text runs (multi-line statements)."""

from __future__ import annotations

import pytest

from cxql.shell.statements import enter_submits, in_comment, join_lines, open_quote, parse_state, runnable

SUBMITS = [
    ("", True),
    ("   ", True),
    ("SEARCH unit 3", True),
    ("SEARCH unit 3 LENGTH 3", True),
    ("water", True),
    ("SHOW concepts LIKE 'lo%'", True),
    ("SEARCH unit 3 -- a comment", True),
    ("\\help", True),
    ("  \\save out.csv", True),
    ("EVAL water;", True),               # ; always runs (and shows the error)
    ("SEARCH unit x", True),             # a syntax error runs, to show it
    ("SHOW concepts LIKE 'lo", True),    # an open quote is an error too
    ("EVAL water", False),               # needs ON unit ...
    ("EVAL (water OR", False),
    ("SEARCH", False),
    ("SEARCH unit", False),
    ("LET x =", False),
    ("EVAL (water OR\nriver)", False),
    ("EVAL (water OR\nriver) ON unit 3", True),
    ("EVAL water\n", True),              # Enter on an empty line runs anyway
    ("EVAL water\n   ", True),
    ("SHOW lets\nSEARCH unit", False),
    ("SHOW lets\nSEARCH unit 1", True),
]


@pytest.mark.parametrize("text, submits", SUBMITS, ids=[repr(t) for t, _ in SUBMITS])
def test_enter_submits(text, submits):
    assert enter_submits(text) is submits


RUNS = [
    ("SEARCH unit 3", "SEARCH unit 3"),
    ("SHOW lets\nSEARCH unit 1", "SHOW lets\nSEARCH unit 1"),      # two statements stay two
    ("EVAL (water OR\nriver) ON unit 3", "EVAL (water OR river) ON unit 3"),
    ("EVAL (water OR -- wet\nriver) ON unit 3", "EVAL (water OR  river) ON unit 3"),
    ("SEARCH unit 3\nLENGTH 2", "SEARCH unit 3 LENGTH 2"),
    ("SEARCH unit x\nSHOW lets", "SEARCH unit x\nSHOW lets"),       # the error is not at a line end
    ("EVAL (wat OR\nriver) ON unit zz", "EVAL (wat OR river) ON unit zz"),
]


@pytest.mark.parametrize("text, runs", RUNS, ids=[repr(t) for t, _ in RUNS])
def test_runnable(text, runs):
    assert runnable(text) == runs


def test_join_lines_keeps_strings():
    assert join_lines("'a -- b'\n\"c\" -- d\ne") == "'a -- b' \"c\"  e"


def test_comment_and_quote_positions():
    assert in_comment("water -- x") and not in_comment("'--'") and not in_comment("a\nb")
    assert open_quote("a OR \"traffic l") == 5
    assert open_quote("SHOW concepts LIKE 'lo") == 19
    assert open_quote("'closed'") is None and open_quote("plain") is None


def test_parse_state_is_for_the_current_statement():
    state = parse_state("SHOW lets; SET beam = ")
    assert state is not None and state.types() == ("SET", "IDENT", "EQUAL")
    assert not state.complete
    assert parse_state("SEARCH unit x ") is None
