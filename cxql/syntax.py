"""The syntax tree: plain frozen dataclasses that print back to canonical text.

Every node's ``str()`` is the canonical cxql text for it, and parsing that text
gives back an equal node (``parse(str(t)) == t``), so results can print a
formula that a user pastes straight into ``EVAL``. Binary operations are always
parenthesised, which makes the printed form independent of precedence.
Formula nodes carry the span of text they were parsed from (``span``, None
for nodes built in code), so an error found later (an unknown concept deep in
a formula) puts its caret on the very token. The span takes no part in
equality, hashing or printing: two formulas are equal when they say the same
thing, wherever they were written.
"""

from __future__ import annotations

from functools import lru_cache
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Union

from .errors import Span
from .grammar_terms import full_match, is_keyword


def _span():
    """Where a node was written: kept for error carets, ignored by ==, hash() and repr()."""
    return field(default=None, compare=False, repr=False)


def quote(text: str) -> str:
    """Quote ``text`` as a cxql string literal (double quotes, backslash escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@lru_cache(maxsize=4096)
def format_name(text: str) -> str:
    """Print a concept name bare when it re-lexes as one, else quoted.

    A qualified name ``category:name`` prints bare when each part is the
    grammar's IDENT and the first part is none of its keywords (both read from
    grammar/cxql.lark by :mod:`cxql.grammar_terms`).
    """
    parts = text.split(":")
    ident = full_match("IDENT")
    if all(ident.fullmatch(p) for p in parts) and not is_keyword(parts[0]):
        return text
    return quote(text)


# ---------------------------------------------------------------- formulas


@dataclass(frozen=True)
class Concept:
    """A concept leaf, by the name the user wrote (bare or ``category:name``)."""

    name: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return format_name(self.name)


@dataclass(frozen=True)
class Not:
    operand: "Formula"
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"NOT {self.operand}"


@dataclass(frozen=True)
class _Binary:
    """A binary operation, always printed parenthesised so precedence never matters."""

    left: "Formula"
    right: "Formula"
    span: Span | None = _span()
    op: ClassVar[str] = ""

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class And(_Binary):
    op: ClassVar[str] = "AND"


@dataclass(frozen=True)
class Or(_Binary):
    op: ClassVar[str] = "OR"


@dataclass(frozen=True)
class Neighbors:
    """``NEIGHBORS(word, k)``: the OR of the k nearest words (text stores)."""

    word: Concept
    k: int | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        k = "" if self.k is None else f", {self.k}"
        return f"NEIGHBORS({self.word}{k})"


@dataclass(frozen=True)
class _Sequence:
    """A sequence operator (token stores): ``operand`` holds at a nearby token of the same sample."""

    operand: "Formula"
    span: Span | None = _span()
    keyword: ClassVar[str] = ""

    def __str__(self) -> str:
        return f"{self.keyword}({self.operand})"


@dataclass(frozen=True)
class Prev(_Sequence):
    """``PREV(f)``: the token before, in the same sample, satisfies f."""

    keyword: ClassVar[str] = "PREV"


@dataclass(frozen=True)
class Next(_Sequence):
    """``NEXT(f)``: the token after, in the same sample, satisfies f."""

    keyword: ClassVar[str] = "NEXT"


@dataclass(frozen=True)
class Within:
    """``WITHIN(f, k)``: one of the k tokens before, in the same sample, satisfies f."""

    operand: "Formula"
    k: int
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"WITHIN({self.operand}, {self.k})"


Sequence = Union[Prev, Next, Within]
SEQUENCE_TYPES = (Prev, Next, Within)
Formula = Union[Concept, Not, And, Or, Neighbors, Prev, Next, Within]


def leaves(formula: Formula) -> Iterator[Concept | Neighbors]:
    """The leaves of a formula, left to right."""
    if isinstance(formula, (Concept, Neighbors)):
        yield formula
    elif isinstance(formula, (Not, Prev, Next, Within)):
        yield from leaves(formula.operand)
    else:
        yield from leaves(formula.left)
        yield from leaves(formula.right)


def length(formula: Formula) -> int:
    """The number of concept leaves: the paper's formula length."""
    return sum(1 for _ in leaves(formula))


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class UnitRange:
    """``first..last``, both ends included."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


UnitItem = Union[int, UnitRange]


@dataclass(frozen=True)
class Units:
    """A unit selection: ``*`` (``items`` empty) or a list of numbers and ranges."""

    items: tuple[UnitItem, ...] = ()
    #: Where each item was written (parallel to ``items``; empty for selections built in code).
    spans: tuple[Span | None, ...] = field(default=(), compare=False, repr=False)

    @property
    def all(self) -> bool:
        return not self.items

    def __str__(self) -> str:
        return "*" if self.all else ", ".join(str(i) for i in self.items)


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class FormulaStmt:
    formula: Formula

    def __str__(self) -> str:
        return str(self.formula)


@dataclass(frozen=True)
class Eval:
    formula: Formula
    units: Units

    def __str__(self) -> str:
        return f"EVAL {self.formula} ON unit {self.units}"


@dataclass(frozen=True)
class Search:
    units: Units
    length: int | None = None
    beam: int | None = None
    distinct: bool = False
    accuracy: bool = False  # WITH accuracy: the NLI analysis next to each formula (text stores)
    order: str | None = None  # ORDER BY a result column (``descending``: DESC); None keeps unit order
    descending: bool = False
    exact: bool = False     # EXACT: the proven-best formula (cxql.exact), not beam search
    within: float | None = None  # WITHIN t s: EXACT's time budget in seconds
    using: tuple = ()  # USING: candidate families (Concept names, or PREV/NEXT/WITHIN of one); see cxql.sequence

    def __str__(self) -> str:
        out = f"SEARCH unit {self.units}"
        if self.length is not None:
            out += f" LENGTH {self.length}"
        if self.beam is not None:
            out += f" BEAM {self.beam}"
        if self.distinct:
            out += " DISTINCT"
        if self.accuracy:
            out += " WITH accuracy"
        if self.exact:
            out += " EXACT"
        if self.within is not None:
            out += f" WITHIN {int(self.within) if float(self.within).is_integer() else repr(float(self.within))} s"
        if self.using:
            out += " USING " + ", ".join(str(u) for u in self.using)
        if self.order is not None:
            out += f" ORDER BY {self.order}" + (" DESC" if self.descending else "")
        return out


@dataclass(frozen=True)
class Match:
    formula: Formula
    top: int | None = None

    def __str__(self) -> str:
        top = "" if self.top is None else f" TOP {self.top}"
        return f"MATCH {self.formula}{top}"


@dataclass(frozen=True)
class Let:
    name: str
    formula: Formula

    def __str__(self) -> str:
        return f"LET {self.name} = {self.formula}"


@dataclass(frozen=True)
class Show:
    """``SHOW what``; for concepts a LIKE ``pattern`` and ``ORDER BY order [DESC]``; ``unit`` for SHOW unit N."""

    what: str  # concepts | categories | units | unit | store | lets | settings
    pattern: str | None = None
    unit: int | None = None
    order: str | None = None
    descending: bool = False

    def __str__(self) -> str:
        if self.what == "unit":
            return f"SHOW unit {self.unit}"
        like = "" if self.pattern is None else f" LIKE {_quote_single(self.pattern)}"
        order = "" if self.order is None else f" ORDER BY {self.order}" + (" DESC" if self.descending else "")
        return f"SHOW {self.what}{like}{order}"


@dataclass(frozen=True)
class Set:
    name: str
    value: str | int | float

    def __str__(self) -> str:
        value = self.value
        if isinstance(value, str):
            value = _quote_single(value)
        return f"SET {self.name} = {value}"


@dataclass(frozen=True)
class Explain:
    statement: "Statement"

    def __str__(self) -> str:
        return f"EXPLAIN {self.statement}"


@dataclass(frozen=True)
class Describe:
    """``DESCRIBE unit u``: the unit's best formula as an English sentence (cxql/describe.py)."""

    unit: int

    def __str__(self) -> str:
        return f"DESCRIBE unit {self.unit}"


@dataclass(frozen=True)
class Summary:
    """``SUMMARY LAYER name [LENGTH n]``: best scores by formula length, categories, operators (cxql/summary.py)."""

    layer: str
    length: int | None = None

    def __str__(self) -> str:
        length = "" if self.length is None else f" LENGTH {self.length}"
        return f"SUMMARY LAYER {format_name(self.layer)}{length}"


@dataclass(frozen=True)
class Ablate:
    """``ABLATE unit <units>`` or ``ABLATE MATCH f TOP k``: re-run the attached model without them (cxql/ablate.py)."""

    units: Units | None = None
    formula: Formula | None = None
    top: int | None = None

    def __str__(self) -> str:
        if self.formula is not None:
            return f"ABLATE MATCH {self.formula} TOP {self.top}"
        return f"ABLATE unit {self.units}"


Statement = Union[FormulaStmt, Eval, Search, Match, Let, Show, Set, Explain, Describe, Summary, Ablate]


@dataclass(frozen=True)
class Script:
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return "".join(f"{s};\n" for s in self.statements)


def _quote_single(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
