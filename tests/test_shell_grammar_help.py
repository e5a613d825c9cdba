"""``\\help STATEMENT``: syntax lines read from the grammar file."""

from __future__ import annotations

import pytest

from cxql.shell.grammar_help import SUMMARIES, _render, _top_level_alternatives, statement_help, statement_keywords


def test_every_statement_of_the_grammar_has_help_and_a_summary() -> None:
    keywords = statement_keywords()
    assert set(keywords) == set(SUMMARIES)
    for keyword in keywords:
        lines = statement_help(keyword)
        assert lines and lines[0].startswith(keyword)


def test_unknown_words_have_no_statement_help() -> None:
    assert statement_help("NOPE") is None and statement_help("SEARCHES") is None


@pytest.mark.parametrize("rule, shown", [
    ('"MATCH"i formula ("TOP"i INT)?', "MATCH formula [TOP INT]"),
    ('"SEARCH"i "UNIT"i units search_opt*', "SEARCH UNIT units [search_opt ...]"),
    ('unit_item ("," unit_item)*', "unit_item [, unit_item ...]"),
    ('"SHOW"i "CONCEPTS"i like? order?', "SHOW CONCEPTS [LIKE STRING] [ORDER BY IDENT [ASC | DESC]]"),
])
def test_rules_render_as_people_write_them(rule, shown) -> None:
    assert _render(rule) == shown


def test_alternatives_split_outside_parentheses_and_quotes() -> None:
    assert _top_level_alternatives('a | ("|" | b)? | c') == ["a ", ' ("|" | b)? ', " c"]
