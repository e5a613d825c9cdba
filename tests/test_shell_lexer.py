"""The Pygments lexer: which token each piece of cxql text becomes."""

from __future__ import annotations

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String

from cxql.shell.lexer import CxqlLexer, grammar_keywords


def tokens(text: str) -> list[tuple[object, str]]:
    """Non-blank tokens of ``text``."""
    return [(kind, value) for kind, value in CxqlLexer().get_tokens(text) if value.strip()]


CASES = [
    ("SEARCH unit 0..5, 7 LENGTH 3 BEAM 10 DISTINCT",
     [(Keyword, "SEARCH"), (Keyword, "unit"), (Number.Integer, "0"), (Operator, ".."), (Number.Integer, "5"),
      (Punctuation, ","), (Number.Integer, "7"), (Keyword, "LENGTH"), (Number.Integer, "3"),
      (Keyword, "BEAM"), (Number.Integer, "10"), (Keyword, "DISTINCT")]),
    ("search unit *", [(Keyword, "search"), (Keyword, "unit"), (Operator, "*")]),
    ("(water OR river) AND NOT blue",
     [(Punctuation, "("), (Name, "water"), (Operator.Word, "OR"), (Name, "river"), (Punctuation, ")"),
      (Operator.Word, "AND"), (Operator.Word, "NOT"), (Name, "blue")]),
    ("color:blue and not pre:dog",
     [(Name.Namespace, "color"), (Punctuation, ":"), (Name, "blue"), (Operator.Word, "and"),
      (Operator.Word, "not"), (Name.Namespace, "pre"), (Punctuation, ":"), (Name, "dog")]),
    ('"traffic light" OR \'t shirt\'',
     [(Name.Variable, '"traffic light"'), (Operator.Word, "OR"), (Name.Variable, "'t shirt'")]),
    ("t-shirt AND don't", [(Name, "t-shirt"), (Operator.Word, "AND"), (Name, "don't")]),
    ("water -- the rest is a comment", [(Name, "water"), (Comment.Single, "-- the rest is a comment")]),
    ("a--b", [(Name, "a"), (Comment.Single, "--b")]),
    ("SHOW concepts LIKE 'lo%'", [(Keyword, "SHOW"), (Keyword, "concepts"), (Keyword, "LIKE"), (String, "'lo%'")]),
    ("SET threshold = 'quantile:0.99'",
     [(Keyword, "SET"), (Name.Variable.Global, "threshold"), (Operator, "="), (String, "'quantile:0.99'")]),
    ("SET beam = 10", [(Keyword, "SET"), (Name.Variable.Global, "beam"), (Operator, "="), (Number.Integer, "10")]),
    ("SET threshold = 0.5", [(Keyword, "SET"), (Name.Variable.Global, "threshold"), (Operator, "="),
                              (Number.Float, "0.5")]),
    ("LET wet = water OR river;", [(Keyword, "LET"), (Name, "wet"), (Operator, "="), (Name, "water"),
                                   (Operator.Word, "OR"), (Name, "river"), (Punctuation, ";")]),
    ("EVAL water ON unit 3", [(Keyword, "EVAL"), (Name, "water"), (Keyword, "ON"), (Keyword, "unit"),
                              (Number.Integer, "3")]),
    ("MATCH 3d TOP 5", [(Keyword, "MATCH"), (Name, "3d"), (Keyword, "TOP"), (Number.Integer, "5")]),
    ("units unit", [(Keyword, "units"), (Keyword, "unit")]),
    ("waterfall", [(Name, "waterfall")]),
    ("ornament", [(Name, "ornament")]),
    ("\\save out.csv", [(Keyword.Pseudo, "\\save"), (String.Other, " out.csv")]),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_tokens(text, expected):
    assert tokens(text) == expected


def test_round_trip_keeps_every_character():
    text = "SEARCH unit 1..3 -- c\n  EVAL (a OR \"b c\") ON unit *; \\q\n"
    assert "".join(v for _k, v in CxqlLexer().get_tokens(text)) == text


def test_keywords_come_from_the_grammar():
    keywords = grammar_keywords()
    assert {"SEARCH", "UNIT", "UNITS", "LIKE", "NEIGHBORS", "AND"} <= set(keywords)
    assert keywords.index("UNITS") < keywords.index("UNIT")


def test_registered_with_pygments():
    assert isinstance(get_lexer_by_name("cxql"), CxqlLexer)
    assert isinstance(get_lexer_for_filename("queries.cxql"), CxqlLexer)
