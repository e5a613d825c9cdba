"""What the text typed so far means to the parser: complete, unfinished, or wrong.

The shell asks three questions of the input buffer, and this module answers
them all from the one Lark parser (grammar/cxql.lark), in its interactive
mode, so the shell can never disagree with the language about what a
statement is:

* does Enter run the buffer, or start a new line? (:func:`enter_submits`)
* which text runs? (:func:`runnable`)
* what may come next at the cursor? (:func:`parse_state`, for completion)

In the language a newline ends a statement. In the shell, Enter on an
unfinished statement (``EVAL (water OR``) starts a continuation line
instead, so a buffer may hold one statement over several lines. Such a
buffer is read with its lines joined (comments dropped, newlines as spaces)
whenever reading it as written fails and reading it joined does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Token
from lark.exceptions import UnexpectedInput, UnexpectedToken

from ..grammar_terms import token_pattern
from ..parser import parser

#: Terminals that end a statement.
SEPARATORS = frozenset({"SEMICOLON", "_NEWLINE"})

#: Pieces of text, for the few questions answered without the parser: strings
#: (the grammar's STRING, or an unterminated one running to the end of its line),
#: comments (the grammar's COMMENT), newlines, the rest.
_PIECE = re.compile(f"""(?P<string>(?P<closed>{token_pattern("STRING")})|['"](?:[^\\\\\\n]|\\\\.)*)"""
                    f"""|(?P<comment>{token_pattern("COMMENT")})|(?P<newline>\\n)|[^'"\\n-]+|.""")


def _pieces(text: str) -> list[re.Match[str]]:
    return list(_PIECE.finditer(text))


@dataclass(frozen=True)
class ParseState:
    """The parser after reading some text: the statement being typed and what may follow."""

    tokens: tuple[Token, ...]   # tokens of the current statement (after the last separator)
    accepts: frozenset[str]     # names of the terminals the parser accepts next ("$END" included)

    @property
    def complete(self) -> bool:
        return "$END" in self.accepts

    def types(self) -> tuple[str, ...]:
        return tuple(t.type for t in self.tokens)


def join_lines(text: str) -> str:
    """``text`` as one line: comments dropped, newlines as spaces (strings left alone)."""
    return "".join("" if m["comment"] else " " if m["newline"] else m.group() for m in _pieces(text))


def in_comment(text: str) -> bool:
    """Whether the end of ``text`` lies inside a ``--`` comment."""
    pieces = _pieces(text)
    return bool(pieces) and pieces[-1]["comment"] is not None


def open_quote(text: str) -> int | None:
    """Where a quoted name left open at the end of ``text`` starts, else None."""
    pieces = _pieces(text)
    if pieces and pieces[-1]["string"] and not pieces[-1]["closed"]:
        return pieces[-1].start()
    return None


def _feed(text: str) -> tuple[list[Token], object]:
    """Tokens of ``text`` and the interactive parser after them; raises Lark's errors."""
    interactive = parser().parse_interactive(text)
    tokens = list(interactive.iter_parse())
    return tokens, interactive


@lru_cache(maxsize=256)
def _state_of(text: str) -> ParseState | None:
    try:
        tokens, interactive = _feed(text)
    except UnexpectedInput:
        return None
    start = max((i + 1 for i, t in enumerate(tokens) if t.type in SEPARATORS), default=0)
    return ParseState(tuple(tokens[start:]), frozenset(interactive.accepts()))


def parse_state(text: str) -> ParseState | None:
    """The parser's state after ``text``, read as written or else with its lines joined.

    None when ``text`` holds a syntax error (so nothing sensible can follow).
    """
    state = _state_of(text)
    if state is None and "\n" in text:
        state = _state_of(join_lines(text))
    return state


@lru_cache(maxsize=256)
def _error(text: str) -> UnexpectedInput | None:
    """The first syntax error of ``text`` read as a whole script, or None."""
    try:
        _tokens, interactive = _feed(text)
        interactive.feed_eof()
    except UnexpectedInput as exc:
        return exc
    return None


def _newline_error(exc: UnexpectedInput) -> bool:
    return isinstance(exc, UnexpectedToken) and exc.token.type == "_NEWLINE"


def runnable(text: str) -> str:
    """The text to run for buffer ``text``: as written, or with continuation lines joined."""
    error = _error(text)
    if error is None or "\n" not in text.strip():
        return text
    joined = join_lines(text)
    if _error(joined) is None or _newline_error(error):
        return joined
    return text


def is_meta(text: str) -> bool:
    """Whether the buffer is a shell meta-command (``\\help``, ``\\q``, ...)."""
    return text.lstrip().startswith("\\")


def enter_submits(text: str) -> bool:
    """Whether Enter runs the buffer (True) or starts a continuation line (False).

    Enter runs: an empty buffer, a meta-command, anything ending in ``;``, a
    complete statement, a statement with a syntax error (to show it), and,
    as an escape hatch, anything when the current line is empty.
    """
    stripped = text.strip()
    if not stripped or is_meta(text) or stripped.endswith(";"):
        return True
    if text.split("\n")[-1].strip() == "" and "\n" in text:
        return True
    state = parse_state(text)
    return state is None or state.complete


__all__ = ["ParseState", "enter_submits", "in_comment", "is_meta", "join_lines", "open_quote",
           "parse_state", "runnable"]
