"""Parsing: a golden file of queries, and syntax errors that point at the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxql import CxqlError
from cxql.errors import QuerySyntaxError
from cxql.parser import parse_script, parse_with_spans

GOLDEN = Path(__file__).parent / "fixtures" / "queries.golden"


def golden_cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("--") or not line.strip():
            continue
        if line.startswith("=> "):
            cases[-1][1].append(line[3:])
        else:
            cases.append((line, []))
    return cases


@pytest.mark.parametrize("query, expected", golden_cases())
def test_golden_queries_print_canonically(query: str, expected: list[str]) -> None:
    script = parse_script(query)
    assert [str(st) for st in script.statements] == expected


@pytest.mark.parametrize("query, line, column, expect", [
    ("EVAL water ON", 1, 14, "UNIT"),
    ("water AND", 1, 10, "a concept name"),
    ("SEARCH unit 3 LENGTH x", 1, 22, "a whole number"),
    ("(a OR b", 1, 8, "')'"),
    ("a $ b", 1, 3, "unexpected character"),
    ("SHOW foo", 1, 6, "CONCEPTS"),
    ("a\nb AND\n", 2, 6, "a concept name"),
])
def test_syntax_errors_give_line_column_caret_and_expectations(query, line, column, expect) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_script(query)
    err = info.value
    assert (err.span.line, err.span.column) == (line, column)
    text = str(err)
    assert f"line {line}, column {column}" in text
    assert "^" in text
    assert expect in text


def test_caret_sits_under_the_fault() -> None:
    with pytest.raises(CxqlError) as info:
        parse_script("SEARCH unit 3 LENGTH x")
    lines = str(info.value).splitlines()
    query_line, caret_line = lines[1], lines[2]
    assert query_line[caret_line.index("^")] == "x"


def test_statements_carry_their_spans() -> None:
    [(first, a), (second, b)] = parse_with_spans("water;\n  EVAL sky ON unit 1")
    assert str(first) == "water" and (a.line, a.column) == (1, 1)
    assert str(second).startswith("EVAL") and (b.line, b.column) == (2, 3)


def test_comments_and_blank_lines_are_ignored() -> None:
    assert parse_script("-- only a comment\n\n").statements == ()


@pytest.mark.parametrize("query, blamed, message, hint", [
    # a keyword where a concept should be: the lexer reads it as a name; the error names the keyword
    ("EVAL ink AND AND loop ON unit 3", "AND", "unexpected AND", "a concept name"),
    ("EVAL ink OR or loop ON unit 3", "or", "unexpected or", "quote it"),
    ("EVAL x AND NOT on unit 3", "on", "unexpected on", "a concept name"),
    # a word the lexer cut after a keyword it knows: the error names the whole word
    ("SEARCH units 3", "units", "unexpected units", "did you mean UNIT?"),
    ("SEARCH unit 3 LENGTHS 2", "LENGTHS", "unexpected LENGTHS", "did you mean LENGTH?"),
])
def test_syntax_errors_blame_the_token_at_fault(query, blamed, message, hint) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_script(query)
    err = info.value
    assert query[err.span.start:err.span.end] == blamed
    assert err.message == message and hint in (err.hint or "")
    caret_line = str(err).splitlines()[2]
    assert caret_line.strip() == "^" * len(blamed)


@pytest.mark.parametrize("query", ["EVAL 'and' AND x ON unit 1", "EVAL on AND x ON unit 1", "SEARCH unit 3"])
def test_keywords_used_as_names_still_parse(query) -> None:
    assert parse_script(query).statements
