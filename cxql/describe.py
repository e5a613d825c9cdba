"""Plain-English descriptions of formulas: ``DESCRIBE unit u`` and the report's description column.

Why templates and not a language model: a description must be deterministic
(the same formula always reads the same) and exact (it says what the formula
says, nothing more). Each concept has a noun phrase: the store's metadata
``concept_phrases`` (``{"category:name": "bottom edges of strokes"}``), else
its ``concepts`` description, else its name and category. Operators map to
English: OR lists alternatives, AND NOT becomes "that are not ...", AND of
an image-level or region concept becomes "in ...", any other AND "that are
also ...". So ``(bottom-edge AND NOT top-edge) AND NOT junction`` reads
"bottom edges of strokes that are not top edges or junctions".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from . import syntax as s
from .result import Result

if TYPE_CHECKING:
    from .context import StatementContext as Session
    from .store import ConceptStore

#: Categories whose concepts say *where* (a part of the frame) or *which samples* (image-level facts):
#: an AND with them reads "in ..." rather than "that are also ...".
PLACE_CATEGORIES = frozenset({"region", "label", "pred", "outcome", "scene", "sent"})


def phrases(store: "ConceptStore") -> dict[str, str]:
    """Qualified concept name -> its noun phrase, for every concept of the store.

    The key ``""`` names what a formula with no other head describes (``pixels``, ``words``).
    """
    meta = store.metadata
    chosen: Mapping[str, str] = meta.get("concept_phrases") or {}
    about: Mapping[str, str] = meta.get("concepts") or {}
    out = {}
    for c in store.concepts:
        q = c.qualified
        out[q] = chosen.get(q) or about.get(q) or (f"{c.name} ({c.category})" if c.category else c.name)
    out[""] = chosen.get("", "positions")
    return out


def _resolve(name: str, store: "ConceptStore") -> tuple[str, str]:
    """(qualified name, category) of a concept as written in a formula (bare or ``category:name``)."""
    for c in store.concepts:
        if name in (c.qualified, c.name):
            return c.qualified, c.category or ""
    return name, ""


def _flatten(f: s.Formula, kind: type) -> list[s.Formula]:
    if isinstance(f, kind):
        return _flatten(f.left, kind) + _flatten(f.right, kind)
    return [f]


def _join(parts: list[str], word: str) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} {word} {parts[-1]}"


def sentence(formula: s.Formula, store: "ConceptStore") -> str:
    """The formula as an English noun phrase over the store's concept phrases."""
    nouns = phrases(store)

    def leaf(c: s.Concept) -> tuple[str, str]:
        q, category = _resolve(c.name, store)
        return nouns.get(q, c.name), category

    def phrase(f: s.Formula) -> str:
        if isinstance(f, s.Concept):
            return leaf(f)[0]
        if isinstance(f, s.Neighbors):
            return f"words near {leaf(f.word)[0]}"
        if isinstance(f, s.Or):
            return _join([phrase(x) for x in _flatten(f, s.Or)], "or")
        if isinstance(f, s.Not):
            return f"everything that is not {phrase(f.operand)}"
        terms = _flatten(f, s.And)
        positive = [t for t in terms if not isinstance(t, s.Not)]
        negative = [t.operand for t in terms if isinstance(t, s.Not)]
        head, within, also, outside = None, [], [], []
        for t in positive:
            text = phrase(t) if not isinstance(t, s.Or) else f"either {phrase(t)}"
            if is_place(t):
                within.append(text)
            elif head is None:
                head = text
            else:
                also.append(text)
        quals = [f"in {_join(within, 'and')}"] if within else []
        quals += [f"that are also {_join(also, 'and')}"] if also else []
        quals += [f"outside {_join([phrase(x) for x in negative if is_place(x)], 'and')}"] \
            if any(is_place(x) for x in negative) else []
        rest = [phrase(x) for x in negative if not is_place(x)]
        quals += ["that are not " + _join(rest, "or")] if rest else []
        return " ".join([head or nouns.get("", "positions"), *quals])

    def is_place(f: s.Formula) -> bool:
        return isinstance(f, s.Concept) and leaf(f)[1] in PLACE_CATEGORIES

    return phrase(formula)


def describe(session: "Session", stmt) -> Result:
    """DESCRIBE unit u: the unit's best formula (SEARCH at the session's LENGTH and BEAM) as a sentence."""
    from . import statements
    from .parser import parse_formula

    found = statements.search(session, s.Search(s.Units((stmt.unit,)))).rows
    rows = []
    for row in found:
        formula = row.get("formula")
        if formula in (None, "NONE"):
            formula, text = None, "no formula explains it (its best score is 0)"
        else:
            text = sentence(parse_formula(formula), session.store)
        rows.append({"unit": row["unit"], "formula": formula, "iou": row.get("iou"), "description": text})
    return Result(str(stmt), "describe", ["unit", "formula", "iou", "description"], rows)
