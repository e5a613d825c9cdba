"""Lark's parse exceptions -> :class:`~cxql.errors.QuerySyntaxError` people can act on.

Line, column, caret and the list of what could have come next; and, where the
contextual lexer hides the real fault one token back (a keyword read as a
name, a word cut after a keyword), the error blames that earlier token.
Kept apart from :mod:`cxql.parser`, which only turns parse trees into syntax nodes.
"""

from __future__ import annotations

import re

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import QuerySyntaxError, Span, did_you_mean
from .grammar_terms import full_match, keywords, lark_parser

#: How terminals read in "expected ..." messages.
_TERMINAL_WORDS = {
    "IDENT": "a concept name",
    "STRING": "a quoted string",
    "INT": "a whole number",
    "NUMBER": "a number",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "STAR": "'*'",
    "SEMICOLON": "';'",
    "_NEWLINE": "end of line",
    "$END": "end of input",
}


def _describe(expected: set[str]) -> str:
    words = sorted({_TERMINAL_WORDS.get(t, _keyword(t)) for t in expected if not t.startswith("__")})
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "expected " + ", ".join(words)


def _keyword(terminal: str) -> str:
    # Lark names anonymous keyword terminals after the keyword itself (e.g. "SEARCH").
    return terminal.upper() if terminal.isalpha() else terminal


def syntax_error(exc: UnexpectedInput, text: str) -> QuerySyntaxError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    start = getattr(exc, "pos_in_stream", None) or 0
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            what = "unexpected end of input"
            line, column, start = _end_position(text)
            end = start + 1
        else:
            what = f"unexpected {token!s:.40}" if token.type != "_NEWLINE" else "unexpected end of line"
            end = (token.end_pos or start + 1)
            start = token.start_pos if token.start_pos is not None else start
        expected = exc.accepts or exc.expected
        blamed = _blame_previous(exc, text)
        if blamed is not None:
            return blamed
    elif isinstance(exc, UnexpectedCharacters):
        what = f"unexpected character {text[exc.pos_in_stream]!r}"
        expected = exc.allowed or set()
        end = start + 1
    elif isinstance(exc, UnexpectedEOF):
        what = "unexpected end of input"
        line, column, start = _end_position(text)
        end = start + 1
        expected = set(exc.expected)
    else:  # pragma: no cover - lark has no other kinds today
        what, expected, end = str(exc), set(), start + 1
    hint = _describe(set(expected))
    return QuerySyntaxError(what, span=Span(line, column, start, end), text=text,
                            hint=hint or None)


def _blame_previous(exc: UnexpectedToken, text: str) -> QuerySyntaxError | None:
    """The error for the token before the one Lark stopped at, when that token is the real fault.

    The contextual lexer reads a keyword as a concept name where no keyword
    fits (``ink AND AND loop``: the second AND is a name, and Lark only
    stops at ``loop``), and cuts a word after a keyword it knows (``units``
    lexes as UNIT then ``s``). Both are blamed on the earlier token, with
    what the parser expected there.
    """
    prev = exc.token_history[-1] if getattr(exc, "token_history", None) else None
    token = exc.token
    if prev is None or prev.start_pos is None or token.type == "$END" or token.start_pos is None:
        return None
    glued = prev.end_pos == token.start_pos and _word().fullmatch(str(prev)) and _word().match(str(token))
    if glued:
        word = _word().match(text, prev.start_pos)
        assert word is not None
        start, end = prev.start_pos, word.end()
        keyword = prev.type != "IDENT" and str(prev).upper() in _keywords()
        hint = did_you_mean(str(prev), [str(prev).upper()]) if keyword else None
    elif prev.type == "IDENT" and str(prev).upper() in _keywords():
        start, end = prev.start_pos, prev.end_pos
        hint = f"to use {prev!s} as a concept name, quote it: '{prev!s}'"
    else:
        return None
    expected = _describe(_accepts_at(text, start) or set(exc.accepts or exc.expected))
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return QuerySyntaxError(f"unexpected {text[start:end]:.40}", span=Span(line, column, start, end), text=text,
                            hint="; ".join(filter(None, [expected, hint])) or None)


def _word() -> re.Pattern[str]:
    """A name as the grammar reads it (IDENT): what a word glued to a keyword would have been."""
    return full_match("IDENT")


def _keywords() -> frozenset[str]:
    """The grammar's keywords, upper case (AND, OR, ON, SEARCH, ...)."""
    return keywords()


def _accepts_at(text: str, pos: int) -> set[str]:
    """The terminals the parser would accept after ``text[:pos]`` (empty when that cannot be told)."""
    try:
        interactive = lark_parser(positions=False).parse_interactive(text[:pos])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except UnexpectedInput:
        return set()


def _end_position(text: str) -> tuple[int, int, int]:
    stripped = text.rstrip()
    lines = stripped.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1, len(stripped)
