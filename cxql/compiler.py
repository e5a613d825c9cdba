"""Names resolved, formulas compiled into cached plans of tensor ops.

A formula as typed names concepts the way people write them (``blue``,
``color:blue``, ``"traffic light"``, a LET name). Compiling resolves each name
to a concept index of the store (with ambiguity and "did you mean" errors),
then flattens the tree into a straight-line :class:`Plan` of ops over boolean
signature vectors. Plans are cached by formula, so a formula typed twice, or
the same candidate met in many units' searches, compiles once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from . import syntax as s
from .errors import CxqlError, NameResolutionError, QueryError, Span, did_you_mean
from .limits import MAX_DEPTH, MAX_LEAVES
from .store import ConceptInfo

#: NEIGHBORS(word, k) -> concept indices; text stores install one (see cxql.text).
NeighborsFn = Callable[[int, int], Sequence[int]]


@dataclass(frozen=True)
class Op:
    """One step of a plan: ``out = op(args)``; ``load`` reads concept ``arg``."""

    op: str  # load | not | and | or | any (OR of several loads)
    args: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """A straight-line program whose last register is the formula's mask."""

    formula: s.Formula  # canonical: names as the store prints them
    ops: tuple[Op, ...]

    def describe(self, concepts: Sequence[ConceptInfo]) -> list[str]:
        """One line per op, e.g. ``t2 = t0 | t1``."""
        lines = []
        for i, op in enumerate(self.ops):
            if op.op == "load":
                c = concepts[op.args[0]]
                rhs = f"concept[{c.index}]  -- {c.qualified}, {c.count:,} positions"
            elif op.op == "not":
                rhs = f"~t{op.args[0]}"
            elif op.op == "any":
                rhs = " | ".join(f"concept[{a}]" for a in op.args) or "zeros"
            else:
                sym = "&" if op.op == "and" else "|"
                rhs = f"t{op.args[0]} {sym} t{op.args[1]}"
            lines.append(f"t{i} = {rhs}")
        return lines


class Resolver:
    """Maps the names people type to concept indices of one store."""

    def __init__(self, concepts: Sequence[ConceptInfo]) -> None:
        self.concepts = list(concepts)
        self._qualified = {c.qualified: c.index for c in self.concepts}
        self._bare: dict[str, list[int]] = defaultdict(list)
        self._folded: dict[str, list[int]] = defaultdict(list)
        for c in self.concepts:
            self._bare[c.name].append(c.index)
            self._folded[c.qualified.lower()].append(c.index)
            if c.category:
                self._folded[c.name.lower()].append(c.index)

    def resolve(self, name: str) -> int:
        """The concept index for ``name``, or a NameResolutionError that helps fix it."""
        if name in self._qualified:
            return self._qualified[name]
        found = self._bare.get(name) or self._folded.get(name.lower(), [])
        found = list(dict.fromkeys(found))
        if len(found) == 1:
            return found[0]
        if found:
            options = ", ".join(self.concepts[i].qualified for i in found)
            raise NameResolutionError(f"ambiguous concept {name!r}: it could be {options}",
                                      hint="qualify it with its category, e.g. " + self.concepts[found[0]].qualified,
                                      needle=name)
        hint = did_you_mean(name, list(self._qualified) + list(self._bare))
        raise NameResolutionError(f"unknown concept {name!r}", hint=hint, needle=name)

    def names_a_concept(self, name: str) -> bool:
        """Whether ``name`` as typed would resolve to a concept (or to several: ambiguous)."""
        return name in self._qualified or bool(self._bare.get(name) or self._folded.get(name.lower()))

    def display_name(self, index: int) -> str:
        """The shortest name that resolves back to ``index``: bare when unique."""
        c = self.concepts[index]
        if len(self._bare.get(c.name, [])) == 1 and c.name not in self._qualified:
            return c.name
        return c.qualified


def shape(formula: s.Formula) -> tuple[int, int]:
    """(nesting depth, leaves) of a formula, in time linear in its distinct nodes.

    Formulas built from LET names share subtrees (``LET a = a OR a`` is one
    node used twice), so the walk memoises by node identity and never
    recurses: the tree it describes may be exponentially large or deep.
    """
    memo: dict[int, tuple[int, int]] = {}
    stack: list[s.Formula] = [formula]
    while stack:
        f = stack[-1]
        if id(f) in memo:
            stack.pop()
            continue
        kids = [f.operand] if isinstance(f, (s.Not, *s.SEQUENCE_TYPES)) else [f.left, f.right] if isinstance(f, (s.And, s.Or)) else []
        todo = [k for k in kids if id(k) not in memo]
        if todo:
            stack.extend(todo)
            continue
        stack.pop()
        if not kids:
            memo[id(f)] = (1 if isinstance(f, s.Neighbors) else 0, 1)
        else:
            memo[id(f)] = (1 + max(memo[id(k)][0] for k in kids), sum(memo[id(k)][1] for k in kids))
    return memo[id(formula)]


class Compiler:
    """Formula -> Plan for one store, with LET names and an optional NEIGHBORS provider."""

    def __init__(self, resolver: Resolver, lets: Mapping[str, s.Formula] | None = None,
                 neighbors: NeighborsFn | None = None) -> None:
        self.resolver = resolver
        self.lets = lets if lets is not None else {}
        self.neighbors = neighbors
        self._cache: dict[s.Formula, Plan] = {}

    def canonical(self, formula: s.Formula) -> s.Formula:
        """The formula with LET names expanded and every name as the store prints it.

        Expanding LET names can deepen a formula past what the parser allows,
        or double it with each ``LET a = a OR a``; such a formula is refused
        here (limits in :mod:`cxql.limits`), before anything walks its tree.
        """
        out = self._canonical(formula)
        depth, leaves = shape(out)
        if depth > MAX_DEPTH or leaves > MAX_LEAVES:
            used = [leaf for leaf in s.leaves(formula) if isinstance(leaf, s.Concept) and leaf.name in self.lets]
            raise QueryError(f"formula too large once LET names are expanded: {leaves:,} leaves nested {depth:,} "
                             f"levels deep (limits: {MAX_LEAVES:,} leaves, {MAX_DEPTH} levels)",
                             needle=used[0].name if used else None,
                             hint="a LET that uses its own name twice doubles in size each time"
                             ).at(used[0].span if used else None)
        return out

    def _canonical(self, formula: s.Formula) -> s.Formula:
        if isinstance(formula, s.Concept):
            if formula.name in self.lets:
                return self.lets[formula.name]
            try:
                index = self.resolver.resolve(formula.name)
            except CxqlError as exc:
                raise exc.at(formula.span) from None
            return s.Concept(self.resolver.display_name(index))
        if isinstance(formula, s.Not):
            return s.Not(self._canonical(formula.operand))
        if isinstance(formula, s.And):
            return s.And(self._canonical(formula.left), self._canonical(formula.right))
        if isinstance(formula, s.Or):
            return s.Or(self._canonical(formula.left), self._canonical(formula.right))
        if isinstance(formula, s.SEQUENCE_TYPES):  # evaluated by cxql.sequence over positions
            return replace(formula, operand=self._canonical(formula.operand))
        if isinstance(formula, s.Neighbors):
            word = self._canonical(formula.word)
            assert isinstance(word, s.Concept)
            return s.Neighbors(word, formula.k)
        raise TypeError(f"not a formula: {formula!r}")

    def clear(self) -> None:
        """Forget compiled plans (after a LET changed a name)."""
        self._cache.clear()

    def compile(self, formula: s.Formula) -> Plan:
        plan = self._cache.get(formula)
        if plan is None:
            canonical = self.canonical(formula)
            ops: list[Op] = []
            try:
                self._emit(canonical, ops, {})
            except CxqlError as exc:  # NEIGHBORS without vectors, a word without a vector
                raise exc.at(_first_neighbors_span(formula)) from None
            plan = self._cache[formula] = Plan(canonical, tuple(ops))
        return plan

    def _emit(self, f: s.Formula, ops: list[Op], seen: dict[Op, int]) -> int:
        if isinstance(f, s.Concept):
            op = Op("load", (self.resolver.resolve(f.name),))
        elif isinstance(f, s.Not):
            op = Op("not", (self._emit(f.operand, ops, seen),))
        elif isinstance(f, (s.And, s.Or)):
            left = self._emit(f.left, ops, seen)
            op = Op("and" if isinstance(f, s.And) else "or", (left, self._emit(f.right, ops, seen)))
        elif isinstance(f, s.SEQUENCE_TYPES):
            raise QueryError(f"{f} reached the signature compiler; cxql.sequence evaluates it over positions")
        else:
            op = Op("any", tuple(self._neighbors(f)))
        if op not in seen:  # common subexpressions are computed once
            seen[op] = len(ops)
            ops.append(op)
        return seen[op]

    def _neighbors(self, f: s.Neighbors) -> Sequence[int]:
        """The concepts NEIGHBORS stands for (errors are pinned on the user's NEIGHBORS by :meth:`compile`)."""
        if self.neighbors is None:
            raise NameResolutionError(f"{f} needs word vectors, and this store has none",
                                      hint="build the store (nli, conllu or text) with --vectors to use NEIGHBORS")
        return self.neighbors(self.resolver.resolve(f.word.name), 5 if f.k is None else f.k)


def _first_neighbors_span(formula: s.Formula) -> Span | None:
    """Where the first NEIGHBORS of a formula was written, if it was (None for one from a LET)."""
    return next((leaf.span for leaf in s.leaves(formula) if isinstance(leaf, s.Neighbors)), None)
