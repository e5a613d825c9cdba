"""Errors users see, and how they are shown.

Every fault a user can cause is a :class:`CxqlError` with a message that names
the fault and where it is: a query error carries a :class:`Span` into the query
text and renders with line, column and a caret; a data error names the file
and row. The CLI and shell print ``str(error)`` and never a traceback. The exit
status comes from the class: query errors 1, usage errors 2.
"""

from __future__ import annotations

import re

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A region of query text: 1-based line and column, 0-based offsets."""

    line: int
    column: int
    start: int
    end: int


class CxqlError(Exception):
    """Base of every error cxql reports to users."""

    exit_code = 1

    def __init__(self, message: str, *, span: Span | None = None, text: str | None = None,
                 hint: str | None = None, needle: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.text = text
        self.hint = hint
        self.needle = needle  # the offending word, for finding its place in the query

    def at(self, span: Span | None) -> "CxqlError":
        """Point the error at ``span`` (a syntax node's), unless it already points somewhere."""
        if self.span is None and span is not None:
            self.span = span
        return self

    def locate(self, text: str, region: Span) -> "CxqlError":
        """Point the error at ``needle`` inside ``region`` of ``text`` (or at the whole region)."""
        if self.span is not None:
            return self.with_source(text)
        start, end = region.start, region.end
        if self.needle:
            found, width = _find_needle(text, self.needle, start, end)
            if found >= 0:
                start, end = found, found + width
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        self.span = Span(line, column, start, end)
        return self.with_source(text)

    def with_source(self, text: str) -> "CxqlError":
        """Attach the query text so the error can draw its caret."""
        if self.text is None:
            self.text = text
        return self

    def __str__(self) -> str:
        out = self.message
        if self.span is not None and self.text is not None:
            out = f"line {self.span.line}, column {self.span.column}: {out}\n{caret(self.text, self.span)}"
        if self.hint:
            out += f"\nhint: {self.hint}"
        return out


class QuerySyntaxError(CxqlError):
    """The text does not parse."""


class NameResolutionError(CxqlError):
    """An unknown or ambiguous concept, unit, layer, setting or LET name."""


class QueryError(CxqlError):
    """A statement that parses but cannot run (empty range, LENGTH 0, ...)."""


class StoreError(CxqlError):
    """A store that is missing, damaged or of another format version."""


class DataError(CxqlError):
    """Input data (activations, CSV, PNG, JSON lines) that cannot be used."""


class Cancelled(CxqlError):
    """The user asked long work (a store build, ``units record``) to stop; nothing half-done was kept."""

    exit_code = 130


class UsageError(CxqlError):
    """Wrong command-line use."""

    exit_code = 2


def _find_needle(text: str, needle: str, start: int, end: int) -> tuple[int, int]:
    """(where, width) of ``needle`` in ``text[start:end]``, or (-1, 0). A needle ``"KEYWORD value"`` (an
    option such as ``LENGTH 0``) points at the value written after the keyword, else at the keyword (the
    value may come from a SET), so ``SEARCH unit 0 LENGTH 0`` marks LENGTH's 0, not the unit's."""
    keyword, _, value = needle.partition(" ")
    if value:
        pattern = rf"(?<![\w.]){re.escape(keyword)}\s+({re.escape(value)})(?![\w.])"
        match = re.compile(pattern, re.IGNORECASE).search(text, start, end)
        if match:
            return match.start(1), len(value)
        found = _find_word(text, keyword, start, end)
        return (found, len(keyword)) if found >= 0 else (-1, 0)
    found = _find_word(text, needle, start, end)
    return (found, len(needle)) if found >= 0 else (-1, 0)


def _find_word(text: str, needle: str, start: int, end: int) -> int:
    """Where ``needle`` first stands alone in ``text[start:end]`` (not inside a longer name), else where it
    first occurs at all, else -1: ``in`` is found in ``ink AND in`` at the second word."""
    first = found = text.find(needle, start, end)
    while found >= 0:
        before = text[found - 1] if found > start else " "
        after = text[found + len(needle)] if found + len(needle) < end else " "
        if not _word_char(before) and not _word_char(after):
            return found
        found = text.find(needle, found + 1, end)
    return first


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_'"


#: The most characters of a query line an error shows; a longer line is cut to a window around the fault.
EXCERPT_WIDTH = 100
#: How much of the line before the fault the window keeps, when the line goes on long enough after it.
_BEFORE = 30


def caret(text: str, span: Span) -> str:
    """The offending line with a caret (or carets) under the span.

    A long line (a generated query, a pasted list) is cut to ``EXCERPT_WIDTH``
    characters around the fault, with ``…`` where text was left out, so that
    an error stays a few lines however long the query is.
    """
    lines = text.splitlines() or [""]
    line = lines[min(span.line, len(lines)) - 1]
    at = min(span.column - 1, len(line))
    width = max(1, min(span.end - span.start, len(line) - at))
    start, end = 0, len(line)
    if len(line) > EXCERPT_WIDTH:
        start = max(0, min(at - _BEFORE, len(line) - EXCERPT_WIDTH))
        end = start + EXCERPT_WIDTH
    head, tail = ("…" if start > 0 else ""), ("…" if end < len(line) else "")
    width = max(1, min(width, end - at))
    return f"  {head}{line[start:end]}{tail}\n  {' ' * (len(head) + at - start)}{'^' * width}"


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    choices = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + ", ".join(lowered[c] for c in close) + "?"
