"""A Pygments lexer for cxql, so queries are coloured in the shell, docs and other tools.

The shell feeds it to prompt_toolkit for live highlighting as you type, and
it is registered as a Pygments plugin (``pygments.lexers`` entry point), so
``pygmentize -l cxql`` and Markdown renderers that use Pygments know cxql too.

Keywords, operator words and the IDENT, STRING, NUMBER and COMMENT token
patterns come from grammar/cxql.lark (through :mod:`cxql.grammar_terms`),
so a keyword or token added to the grammar is highlighted without touching
this file. The lexer is a regular-expression lexer and knows no
parser state: a concept that happens to be called ``top`` is coloured as a
keyword, which is also how the parser treats it at the start of an atom.

Token choices:

* ``AND``, ``OR``, ``NOT`` -> ``Operator.Word``; other keywords -> ``Keyword``;
* ``color:blue`` -> ``Name.Namespace`` ``Punctuation`` ``Name``;
* a quoted string is a concept name (``Name.Variable``) except where the
  grammar wants a string value, after ``LIKE`` and in ``SET x = '...'``
  (``String``); the name after ``SET`` is a setting (``Name.Variable.Global``);
* ``0..511`` -> ``Number.Integer`` ``Operator`` ``Number.Integer``;
* ``--`` to the end of the line -> ``Comment.Single``;
* ``\\help`` and other shell meta-commands -> ``Keyword.Pseudo``.
"""

from __future__ import annotations

import re

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from ..grammar_terms import keywords_longest_first, operator_words, token_pattern

#: Operators that read as words (the grammar's ``*_op`` rules: AND, OR, NOT).
OPERATOR_WORDS = tuple(sorted(operator_words()))

IDENT = token_pattern("IDENT")
STRING = token_pattern("STRING")
#: A number as the grammar reads it, not glued to a following name character.
NUMBER = "(?:" + token_pattern("NUMBER") + r")(?![\w'])"
COMMENT = token_pattern("COMMENT")
INT = token_pattern("INT")


def grammar_keywords() -> tuple[str, ...]:
    """Every keyword of the grammar, upper-case, longest first (so ``UNITS`` beats ``UNIT``)."""
    return keywords_longest_first()


def _keyword_rule() -> tuple:
    plain = tuple(k for k in grammar_keywords() if k not in OPERATOR_WORDS)
    return words(plain, prefix=r"(?<![\w'])", suffix=r"(?![\w'])"), Keyword


class CxqlLexer(RegexLexer):
    """Lexer for cxql queries and shell input."""

    name = "cxql"
    aliases = ["cxql"]
    filenames = ["*.cxql"]
    mimetypes = ["text/x-cxql"]
    url = "https://github.com/cxql/cxql"
    flags = re.IGNORECASE | re.MULTILINE

    tokens = {
        "root": [
            (COMMENT, Comment.Single),
            (r"^\s*\\[A-Za-z?]+", Keyword.Pseudo, "meta"),
            (r"\s+", Whitespace),
            (r"(LIKE)(\s+)(" + STRING + ")", bygroups(Keyword, Whitespace, String)),
            (r"(SET)(\s+)(" + IDENT + r")(\s*)(=)(\s*)(" + STRING + ")?",
             bygroups(Keyword, Whitespace, Name.Variable.Global, Whitespace, Operator, Whitespace, String)),
            (STRING, Name.Variable),
            (f"({INT})(\\.\\.)({INT})", bygroups(Number.Integer, Operator, Number.Integer)),
            (INT + r"(?![\w.'])", Number.Integer),
            (NUMBER, Number.Float),
            (words(OPERATOR_WORDS, prefix=r"(?<![\w'])", suffix=r"(?![\w'])"), Operator.Word),
            _keyword_rule(),
            (r"(" + IDENT + r")(:)", bygroups(Name.Namespace, Punctuation)),
            (IDENT, Name),
            (r"\.\.|[*=]", Operator),
            (r"[(),;:]", Punctuation),
            (r".", Text),
        ],
        "meta": [
            (r"\n", Whitespace, "#pop"),
            (r"[^\n]+", String.Other),
        ],
    }


__all__ = ["CxqlLexer", "grammar_keywords"]
