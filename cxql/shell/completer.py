"""Completion: a pure function of the text before the cursor and what the session knows.

:func:`complete` takes the text before the cursor and a
:class:`CompletionContext` (concept names with their categories, LET names,
the unit count, layer names, settings, meta-commands) and returns plain
:class:`Suggestion` values. It never touches prompt_toolkit or a session, so
the tests can check it on hundreds of prefixes; :class:`ShellCompleter` is the
thin adapter the prompt uses.

What may come next is not guessed from keywords here: the text is fed to the
Lark parser in its interactive mode (:mod:`cxql.shell.statements`), whose
``accepts()`` names the terminals allowed at the cursor. Keyword terminals
become keyword suggestions; ``IDENT``/``STRING`` become concept names, LET
names, setting names or values, depending on the statement's tokens so far;
``INT`` after ``unit`` becomes unit numbers. Concept names are offered bare
when that is unambiguous and qualified (``color:blue``) when not, always
quoted when they need it, with their category shown beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from ..grammar_terms import formula_keywords, full_match, operator_words, token_pattern
from ..settings import SETTINGS, Setting
from ..syntax import format_name
from .lexer import grammar_keywords
from .statements import ParseState, in_comment, open_quote, parse_state

#: The word being typed: the grammar's IDENT, possibly qualified (``color:bl``, ``color:``).
_WORD = re.compile(f"(?:(?:{token_pattern('IDENT')})(?::(?:{token_pattern('IDENT')})?)*)?\\Z")
#: What ``ORDER BY`` may name, by statement (the tests check them against real results).
ORDER_COLUMNS = {"SEARCH": ("iou", "unit", "precision", "recall", "f1", "length", "mask_size", "formula"),
                 "SHOW": ("count", "name", "category", "fraction", "samples")}
#: How many unit numbers to list for a prefix.
MAX_UNITS = 40
#: A typed word this long also matches inside names (``light`` finds ``traffic light``).
MIN_INSIDE = 3


@dataclass(frozen=True)
class Suggestion:
    """One completion: ``text`` replaces the last ``replace`` characters before the cursor."""

    text: str
    replace: int
    display: str = ""
    meta: str = ""

    def __post_init__(self) -> None:
        if not self.display:
            object.__setattr__(self, "display", self.text)


@dataclass(frozen=True)
class ConceptName:
    name: str
    category: str
    count: int = 0

    @property
    def qualified(self) -> str:
        return f"{self.category}:{self.name}" if self.category else self.name


@dataclass(frozen=True)
class MetaInfo:
    """What the completer needs to know of one meta-command."""

    help: str
    choices: tuple[str, ...] = ()   # fixed argument values (layers, formats, on/off)
    paths: bool = False             # the argument is a file path


@dataclass(frozen=True)
class CompletionContext:
    """Everything completion may offer; built from the session by :func:`context_of`."""

    concepts: tuple[ConceptName, ...] = ()
    lets: tuple[str, ...] = ()
    n_units: int = 0
    layers: tuple[str, ...] = ()
    settings: Mapping[str, Setting] = field(default_factory=lambda: SETTINGS)
    meta: Mapping[str, MetaInfo] = field(default_factory=dict)
    neighbors: bool = False         # NEIGHBORS is offered (text stores, stores with word vectors)
    sequences: bool = False         # PREV/NEXT/WITHIN offered in formulas (token stores)

    @cached_property
    def ambiguous(self) -> frozenset[str]:
        """Lower-cased concept names that more than one category uses."""
        seen: dict[str, int] = {}
        for c in self.concepts:
            seen[c.name.lower()] = seen.get(c.name.lower(), 0) + 1
        return frozenset(n for n, k in seen.items() if k > 1)

    @cached_property
    def categories(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.concepts:
            if c.category:
                counts[c.category] = counts.get(c.category, 0) + 1
        return counts


# ---------------------------------------------------------------- the pure function


def complete(text: str, ctx: CompletionContext) -> list[Suggestion]:
    """Suggestions for the cursor at the end of ``text``, best first, without duplicates."""
    if text.lstrip().startswith("\\"):
        return _unique(_meta(text.lstrip(), ctx))
    if in_comment(text):
        return []
    quote_at = open_quote(text)
    if quote_at is not None:
        word, head = text[quote_at:], text[:quote_at]
    else:
        word = _WORD.search(text).group()
        head = text[:len(text) - len(word)]
    state = parse_state(head)
    if state is None:
        return []
    return _unique(_for_state(state, word, ctx))


def _for_state(state: ParseState, word: str, ctx: CompletionContext) -> Iterator[Suggestion]:
    types = state.types()
    accepts = state.accepts
    if word[:1] not in ("'", '"'):
        yield from _keywords(accepts, word, ctx, lower=_lower_case(word, state))
    if types[:1] == ("SET",):
        yield from _setting_part(state, word, ctx)
        return
    if types == ("LET",):
        return  # a new name: nothing to offer
    if "INT" in accepts and types[-1:] in (("UNIT",), ("COMMA",)):
        star = "STAR" in accepts
        yield from _units(word, ctx, star=star, ranges=star or types[-1:] == ("COMMA",))
    elif "INT" in accepts and state.tokens and str(state.tokens[-1]) == ".." and ctx.n_units:
        last = str(ctx.n_units - 1)
        if last.startswith(word):
            yield Suggestion(last, len(word), last, "the last unit")
    if types[-1:] == ("BY",):  # ORDER BY: the statement's result columns, not concepts
        columns = ORDER_COLUMNS.get(types[0], ()) if types else ()
        yield from (Suggestion(c, len(word), c, "column") for c in columns if c.startswith(word.lower()))
        return
    if accepts & {"IDENT", "STRING"} and types[-1:] != ("LIKE",):
        yield from _names(word, ctx)


def _lower_case(word: str, state: ParseState) -> bool:
    """Keywords follow the case of the word typed, else of the statement's first keyword."""
    letters = [ch for ch in word if ch.isalpha()]
    if letters:
        return word.islower()
    known = set(grammar_keywords())
    keywords = [str(t) for t in state.tokens if t.type in known]
    return bool(keywords) and keywords[0].islower()


def _keywords(accepts: Iterable[str], word: str, ctx: CompletionContext, *, lower: bool) -> Iterator[Suggestion]:
    known = set(grammar_keywords())
    accepts = set(accepts)
    in_formula = "NOT" in accepts  # there, PREV/NEXT/WITHIN are offered on token stores only
    names = sorted(t for t in accepts if t in known and (ctx.neighbors or t != "NEIGHBORS")
                   and (ctx.sequences or not in_formula or t in operator_words() or t == "NEIGHBORS"
                        or t not in formula_keywords()))
    for kw in sorted(names, key=lambda k: (k in formula_keywords(), k)):
        if kw.lower().startswith(word.lower()):
            yield Suggestion(kw.lower() if lower else kw, len(word), kw, "keyword")


def _setting_part(state: ParseState, word: str, ctx: CompletionContext) -> Iterator[Suggestion]:
    types = state.types()
    if types == ("SET",):
        for name, setting in ctx.settings.items():
            if name.startswith(word.lower()):
                yield Suggestion(name, len(word), name, setting.help)
    elif types[-1:] == ("EQUAL",) and len(types) == 3:
        name = str(state.tokens[1]).lower()
        for value in _setting_values(name, ctx):
            if _strip_quotes(value).lower().startswith(_strip_quotes(word).lower()):
                yield Suggestion(value, len(word), value, f"{name} value")


def _setting_values(name: str, ctx: CompletionContext) -> list[str]:
    setting = ctx.settings.get(name)
    if setting is None:
        return []
    values = list(setting.choices)
    if name == "layer":
        values += list(ctx.layers)
    elif setting.default is not None and not values:
        values.append(str(setting.default))
    return [v if full_match("IDENT").fullmatch(v) or full_match("NUMBER").fullmatch(v) else f"'{v}'" for v in values]


def _strip_quotes(text: str) -> str:
    return text.strip("'\"")


def _units(word: str, ctx: CompletionContext, *, star: bool, ranges: bool) -> Iterator[Suggestion]:
    """Unit numbers; where a unit list may stand, also ``*`` and the full range."""
    if ctx.n_units <= 0 or not (word == "" or word.isdigit()):
        return
    if star and not word:
        yield Suggestion("*", 0, "*", f"all {ctx.n_units} units")
    if ranges and not word and ctx.n_units > 1:
        yield Suggestion(f"0..{ctx.n_units - 1}", 0, f"0..{ctx.n_units - 1}", "every unit, as a range")
    shown = 0
    for u in range(ctx.n_units):
        if str(u).startswith(word):
            yield Suggestion(str(u), len(word), str(u), "unit")
            shown += 1
            if shown == MAX_UNITS:
                break


def _names(word: str, ctx: CompletionContext) -> Iterator[Suggestion]:
    """LET names, categories and concepts matching ``word`` (bare, qualified or quoted)."""
    quote = word[:1] if word[:1] in ("'", '"') else ""
    typed = word[1:] if quote else word
    needle = typed.lower()
    if not quote:
        for name in ctx.lets:
            if name.lower().startswith(needle):
                yield Suggestion(name, len(word), name, "LET")
    if ":" in needle:
        category, _, rest = needle.partition(":")
        for c in ctx.concepts:
            if c.category.lower() == category and c.name.lower().startswith(rest):
                yield _concept(c, word, quote, qualified=True)
        return
    for category, count in ctx.categories.items():
        if category.lower().startswith(needle) and not quote:
            yield Suggestion(f"{category}:", len(word), f"{category}:", f"category, {count} concept{'s' if count != 1 else ''}")
    prefix = [c for c in ctx.concepts if c.name.lower().startswith(needle)]
    inside = [c for c in ctx.concepts
              if len(needle) >= MIN_INSIDE and needle in c.name.lower() and c not in prefix]
    for c in prefix + inside:
        yield _concept(c, word, quote, qualified=c.name.lower() in ctx.ambiguous)


def _concept(c: ConceptName, word: str, quote: str, *, qualified: bool) -> Suggestion:
    name = c.qualified if qualified else c.name
    text = _quoted(name, quote) if quote else format_name(name)
    return Suggestion(text, len(word), name, c.category or "concept")


def _quoted(name: str, quote: str) -> str:
    return quote + name.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _meta(text: str, ctx: CompletionContext) -> Iterator[Suggestion]:
    command, space, arg = text.partition(" ")
    if not space:
        for name, info in sorted(ctx.meta.items()):
            if name.startswith(command):
                yield Suggestion(name, len(command), name, info.help)
        return
    info = ctx.meta.get(command)
    if info is None or " " in arg.strip():
        return
    for choice in info.choices:
        if choice.lower().startswith(arg.lower()):
            yield Suggestion(choice, len(arg), choice, command[1:])


def meta_path_argument(text: str, ctx: CompletionContext) -> str | None:
    """The partial path after a meta-command that takes a file (``\\save out.c``), else None."""
    command, space, arg = text.lstrip().partition(" ")
    info = ctx.meta.get(command)
    return arg if space and info is not None and info.paths else None


def _unique(suggestions: Iterable[Suggestion]) -> list[Suggestion]:
    seen: set[str] = set()
    out = []
    for s in suggestions:
        if s.text not in seen:
            seen.add(s.text)
            out.append(s)
    return out


# ---------------------------------------------------------------- from a session


def concept_names(concepts: Sequence[object]) -> tuple[ConceptName, ...]:
    """ConceptName values from a store's ``concepts`` list (ConceptInfo objects)."""
    return tuple(ConceptName(c.name, c.category, c.count) for c in concepts)  # type: ignore[attr-defined]


def context_of(session: object, meta: Mapping[str, MetaInfo],
               concepts: tuple[ConceptName, ...] | None = None) -> CompletionContext:
    """The completion context of a :class:`cxql.Session` (``concepts`` may be passed in, cached)."""
    store = session.store  # type: ignore[attr-defined]
    layers = tuple(store.layers)
    layer = session.settings.get("layer") or (layers[0] if layers else None)  # type: ignore[attr-defined]
    n_units = store.layers[layer].n_units if layer in store.layers else 0
    return CompletionContext(
        concepts=concepts if concepts is not None else concept_names(store.concepts),
        lets=tuple(session.lets), n_units=n_units, layers=layers,  # type: ignore[attr-defined]
        meta=meta, neighbors=store.kind == "text" or bool(store.metadata.get("word_vectors")),
        sequences=store.kind == "tokens")


# ---------------------------------------------------------------- prompt_toolkit adapter


class ShellCompleter(Completer):
    """prompt_toolkit's view of :func:`complete` (and of file paths for ``\\save``/``\\store``)."""

    def __init__(self, context: Callable[[], CompletionContext]) -> None:
        self.context = context
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document, complete_event):  # noqa: ANN001 - prompt_toolkit's signature
        ctx = self.context()
        before = document.text_before_cursor
        path = meta_path_argument(before, ctx)
        if path is not None:
            yield from self._paths.get_completions(Document(path, len(path)), complete_event)
            return
        for s in complete(before, ctx):
            yield Completion(s.text, -s.replace, display=s.display, display_meta=s.meta)


__all__ = ["CompletionContext", "ConceptName", "MetaInfo", "ShellCompleter", "Suggestion", "complete",
           "concept_names", "context_of", "meta_path_argument"]
