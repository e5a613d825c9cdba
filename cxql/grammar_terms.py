"""The grammar's words and token patterns, read from grammar/cxql.lark through Lark.

grammar/cxql.lark is the single source of cxql's syntax. Everything else that
needs to know what a keyword is or what a name looks like (the parser's
messages, the shell's lexer and completer, the syntax printer's quoting, the
renderer's highlighting) asks this module, which reads the compiled Lark
parser's terminals and rules. So a keyword or token added to the grammar is
highlighted, completed and quoted without touching another file.

- :func:`keywords`: every case-insensitive word literal (``"EVAL"i``,
  ``ASC: "ASC"i``), upper case;
- :func:`operator_words`: the keywords of operator rules (aliases ``*_op``:
  AND, OR, NOT); :func:`formula_keywords`: every keyword a formula may hold
  (adds NEIGHBORS);
- :func:`statement_keywords`: the first keyword of each ``*_stmt`` rule;
- :func:`token_pattern`: a named terminal's regular expression (``IDENT``,
  ``STRING``, ``NUMBER``, ``INT``, ``COMMENT``), as Python ``re`` source.

The Lark parser itself is built here too (:func:`lark_parser`), once, and
shared with :mod:`cxql.parser`; nothing here imports another cxql module
but :mod:`cxql.resources`, so the syntax printer can use it without a cycle.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark

from .resources import data_path

#: The rule a formula starts at; its keywords are the formula's words.
FORMULA_RULE = "formula"


@lru_cache(maxsize=1)
def grammar_text() -> str:
    """The grammar source."""
    return data_path("grammar", "cxql.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=2)
def lark_parser(positions: bool = False) -> Lark:
    """The shared LALR parser; ``positions`` keeps source positions on tree nodes (for spans)."""
    return Lark(grammar_text(), start="script", parser="lalr", lexer="contextual",
                propagate_positions=positions, maybe_placeholders=False)


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Every keyword of the grammar, upper case (AND, ASC, EVAL, SEARCH, ...)."""
    return frozenset(t.pattern.value.upper() for t in lark_parser().terminals
                     if t.pattern.type == "str" and t.pattern.value.isalpha())


@lru_cache(maxsize=1)
def keywords_longest_first() -> tuple[str, ...]:
    """:func:`keywords` longest first, so a regex alternation tries ``UNITS`` before ``UNIT``."""
    return tuple(sorted(keywords(), key=lambda w: (-len(w), w)))


@lru_cache(maxsize=1)
def operator_words() -> frozenset[str]:
    """Keywords that are formula operators: those of the rules aliased ``*_op`` (AND, OR, NOT)."""
    return frozenset(sym.name for rule in lark_parser().rules if rule.alias and rule.alias.endswith("_op")
                     for sym in rule.expansion if sym.is_term and sym.name in keywords())


@lru_cache(maxsize=1)
def formula_keywords() -> frozenset[str]:
    """Keywords that may appear inside a formula (the operators and NEIGHBORS)."""
    rules = lark_parser().rules
    seen, todo = set(), [FORMULA_RULE]
    while todo:
        origin = todo.pop()
        if origin in seen:
            continue
        seen.add(origin)
        todo += [sym.name for r in rules if r.origin.name == origin for sym in r.expansion if not sym.is_term]
    return frozenset(sym.name for r in rules if r.origin.name in seen
                     for sym in r.expansion if sym.is_term and sym.name in keywords())


@lru_cache(maxsize=1)
def statement_keywords() -> tuple[str, ...]:
    """The keywords that start a statement (EVAL, SEARCH, ...): the first word of each ``*_stmt`` rule."""
    out: dict[str, None] = {}
    for rule in lark_parser().rules:
        first = rule.expansion[0] if rule.expansion else None
        if rule.origin.name.endswith("_stmt") and first is not None and first.is_term and first.name in keywords():
            out[first.name] = None
    return tuple(out)


@lru_cache(maxsize=None)
def token_pattern(name: str) -> str:
    """The regular expression of the grammar's terminal ``name``, flags inlined (``(?i:...)``)."""
    for terminal in lark_parser().terminals:
        if terminal.name == name:
            return terminal.pattern.to_regexp()
    raise KeyError(f"grammar/cxql.lark has no terminal {name}")


@lru_cache(maxsize=None)
def full_match(name: str) -> re.Pattern[str]:
    """A compiled pattern that matches exactly one ``name`` token (use ``.fullmatch``)."""
    return re.compile(f"(?:{token_pattern(name)})")


def is_keyword(word: str) -> bool:
    """Whether ``word`` is a keyword somewhere in the grammar (case-insensitive)."""
    return word.upper() in keywords()


__all__ = ["formula_keywords", "full_match", "grammar_text", "is_keyword", "keywords", "keywords_longest_first",
           "lark_parser", "operator_words", "statement_keywords", "token_pattern"]
