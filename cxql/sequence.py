"""Sequence operators PREV(f), NEXT(f), WITHIN(f, k) and SEARCH ... USING (SPEC section 7).

The backend scores formulas over the store's deduplicated signatures, and a
shifted mask is no function of a position's signature: whether the token
before is a noun is not written in this token's row. So a statement that
uses these operators runs on a *derived store*: the concepts it needs (every
concept, or with USING only the families named), plus one column per
sequence formula computed over positions here, deduplicated into a new
signature table; the current layer's unit masks (under the session's
threshold) are attached to it, and the statement runs on a session over it.
A derived concept is named by its own canonical text (``PREV(upos:NOUN)``),
so result formulas print as the user writes them and parse back.

Shifts never cross a sample boundary: PREV at a sentence's first token and
NEXT at its last are false, whatever the neighbouring sentence holds.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import syntax as s
from .errors import CxqlError, QueryError
from .store import signatures as sig
from .store import units as un
from .store.concept_store import ConceptStore

if TYPE_CHECKING:
    from .result import Result

Session = Any  # a cxql.engine.Session; not imported, so that the engine may import this module

#: Positions per block when the derived signature table is built.
_BLOCK = 65536


# ---------------------------------------------------------------- masks over positions


def shift(mask: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Bool [N]: ``mask`` at position i-k (k > 0: a token before; k < 0: after), same sample only."""
    mask = np.asarray(mask, dtype=bool)
    n = len(mask)
    lengths = np.diff(np.asarray(offsets, dtype=np.int64))
    index_in_sample = np.arange(n, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    out = np.zeros(n, dtype=bool)
    if k > 0:
        out[k:] = mask[:n - k] if k < n else out[k:]
        out &= index_in_sample >= k
    elif k < 0:
        m = -k
        out[:max(n - m, 0)] = mask[m:]
        out &= index_in_sample + m < np.repeat(lengths, lengths)
    else:
        out[:] = mask
    return out


def within(mask: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Bool [N]: ``mask`` holds at one of the k positions before, in the same sample."""
    out = np.zeros(len(mask), dtype=bool)
    longest = int(np.diff(offsets).max(initial=1))
    for j in range(1, min(k, longest - 1) + 1):  # a shift past the longest sample reaches nothing
        out |= shift(mask, offsets, j)
    return out


class PositionMasks:
    """A formula's mask over a store's positions (concept columns read from the signature table, cached)."""

    def __init__(self, store: ConceptStore, resolve: Callable[[str], int]) -> None:
        self.store = store
        self.resolve = resolve
        self.offsets = np.asarray(store.sample_offsets, dtype=np.int64)
        self._bits = np.asarray(store.signature_bits)
        self._position_sig = np.asarray(store.position_signatures)
        self._columns: dict[int, np.ndarray] = {}

    def concept(self, index: int) -> np.ndarray:
        if index not in self._columns:
            self._columns[index] = sig.concept_column(self._bits, index)[self._position_sig]
        return self._columns[index]

    def mask(self, f: s.Formula) -> np.ndarray:
        if isinstance(f, s.Concept):
            return self.concept(self.resolve(f.name))
        if isinstance(f, s.Not):
            return ~self.mask(f.operand)
        if isinstance(f, (s.And, s.Or)):
            left, right = self.mask(f.left), self.mask(f.right)
            return left & right if isinstance(f, s.And) else left | right
        if isinstance(f, s.Prev):
            return shift(self.mask(f.operand), self.offsets, 1)
        if isinstance(f, s.Next):
            return shift(self.mask(f.operand), self.offsets, -1)
        if isinstance(f, s.Within):
            if f.k < 1:
                raise QueryError(f"{f}: WITHIN needs k of at least 1", needle=str(f.k)).at(f.span)
            return within(self.mask(f.operand), self.offsets, f.k)
        raise QueryError(f"{f} cannot be used inside PREV, NEXT or WITHIN").at(getattr(f, "span", None))


# ---------------------------------------------------------------- derived stores


def derived_store(store: ConceptStore, keep: list[int], extra: dict[str, np.ndarray]) -> ConceptStore:
    """A store over the same positions and samples: concepts ``keep`` (in order), then ``extra`` columns."""
    k = len(store.concepts)
    bits = np.asarray(store.signature_bits)
    position_sig = np.asarray(store.position_signatures)
    columns = np.stack(list(extra.values()), axis=1) if extra else np.zeros((store.n_positions, 0), bool)
    builder = sig.SignatureBuilder(len(keep) + len(extra))
    ids = []
    for a in range(0, store.n_positions, _BLOCK):  # memory: one block of positions x concepts at a time
        old = sig.unpack_rows(bits[position_sig[a:a + _BLOCK]], k)[:, keep]
        ids.append(builder.add(sig.pack_rows(np.concatenate([old, columns[a:a + _BLOCK]], axis=1))))
    bits, counts = builder.table()
    concepts = store.concepts
    offsets = store.sample_offsets if "samples" in store.arrays else None
    return ConceptStore.from_signatures(
        bits, counts, np.concatenate(ids) if ids else np.zeros(0, np.uint32),
        [concepts[i].name for i in keep] + list(extra), [concepts[i].category for i in keep] + [""] * len(extra),
        offsets, mask_shape=store.mask_shape, kind=store.kind, sample_names=store.sample_names,
        metadata=store.metadata)


def uses_sequence(statement: s.Statement, canonical: Callable[[s.Formula], s.Formula]) -> bool:
    """Whether a statement needs a derived store (a sequence operator in a formula, LETs expanded, or USING)."""
    if isinstance(statement, s.Explain):
        return uses_sequence(statement.statement, canonical)
    if isinstance(statement, s.Search):
        return bool(statement.using)
    formula = getattr(statement, "formula", None)
    if formula is None or isinstance(statement, s.Let):
        return False
    return _has_sequence(formula) or _has_sequence(canonical(formula))


def _has_sequence(f: s.Formula) -> bool:
    if isinstance(f, s.SEQUENCE_TYPES):
        return True
    if isinstance(f, s.Not):
        return _has_sequence(f.operand)
    if isinstance(f, (s.And, s.Or)):
        return _has_sequence(f.left) or _has_sequence(f.right)
    return False


def _replace_sequences(f: s.Formula, masks: PositionMasks, extra: dict[str, np.ndarray]) -> s.Formula:
    """The formula with each outermost sequence node as a derived concept named by its text."""
    if isinstance(f, s.SEQUENCE_TYPES):
        name = str(f)
        if name not in extra:
            extra[name] = masks.mask(f)
        return s.Concept(name, span=f.span)
    if isinstance(f, s.Not):
        return replace(f, operand=_replace_sequences(f.operand, masks, extra))
    if isinstance(f, (s.And, s.Or)):
        return replace(f, left=_replace_sequences(f.left, masks, extra),
                       right=_replace_sequences(f.right, masks, extra))
    return f


def _family(session: Session, item: s.Concept) -> list[int]:
    """Concept indices a USING item names: every concept of a category, else the one concept."""
    found = [c.index for c in session.store.concepts if c.category == item.name]
    if found:
        return found
    try:
        return [session.resolver.resolve(item.name)]
    except CxqlError:
        raise QueryError(f"USING {item.name}: no category and no concept of that name",
                         hint="SHOW CATEGORIES lists the families").at(item.span) from None


def _using(session: Session, stmt: s.Search, masks: PositionMasks) -> tuple[list[int], dict[str, np.ndarray]]:
    keep: list[int] = []
    extra: dict[str, np.ndarray] = {}
    for item in stmt.using:
        if isinstance(item, s.Concept):
            keep += [i for i in _family(session, item) if i not in keep]
            continue
        for i in _family(session, item.operand):
            node = replace(item, operand=s.Concept(session.resolver.display_name(i)))
            extra.setdefault(str(node), masks.mask(node))
    return keep, extra


_CACHE: "weakref.WeakKeyDictionary[Any, tuple[tuple, Any]]" = weakref.WeakKeyDictionary()


def run(session: Session, statement: s.Statement) -> "Result":
    """Run a statement that uses PREV/NEXT/WITHIN or USING on a session over a derived store."""
    inner = statement.statement if isinstance(statement, s.Explain) else statement
    masks = PositionMasks(session.store, session.resolver.resolve)
    if isinstance(inner, s.Search):
        keep, extra = _using(session, inner, masks)
        rewritten: s.Statement = replace(inner, using=())
    else:
        keep, extra = list(range(len(session.store.concepts))), {}
        formula = _replace_sequences(session.compiler.canonical(inner.formula), masks, extra)
        rewritten = replace(inner, formula=formula)
    if isinstance(statement, s.Explain):
        rewritten = s.Explain(rewritten)
    sub = _sub_session(session, keep, extra)
    result = sub.run(rewritten, session.token)
    names = _ParentNames(sub, keep, session, list(extra))
    result.rows = [names.row(row) for row in result.rows]
    result.statement = str(statement)
    if isinstance(statement, s.Explain) and result.columns == ["plan"]:
        shown = ", ".join(list(extra)[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        result.rows[:0] = [{"plan": f"derived store: {len(keep):,} of {len(session.store.concepts):,} concepts "
                                    f"kept, {len(extra):,} sequence columns over positions ({shown or 'none'}), "
                                    f"shifts within samples"}]
    return result


class _ParentNames:
    """Result formulas renamed from the derived store's names to the session's own.

    A derived concept becomes its operator again (``PREV(DET)``, not the
    quoted name ``"PREV(DET)"``), and a kept concept gets the name the
    session's store prints it by: a name unique among the few concepts kept by
    USING may be ambiguous in the whole store.
    """

    def __init__(self, sub: Any, keep: list[int], session: Any, extra: list[str]) -> None:
        from .parser import parse

        self.parse = parse
        self.sub, self.keep, self.session = sub, keep, session
        self.derived = {len(keep) + j: parse(name).formula for j, name in enumerate(extra)}

    def formula(self, f: s.Formula) -> s.Formula:
        if isinstance(f, s.Concept):
            i = self.sub.resolver.resolve(f.name)
            if i in self.derived:
                return self.derived[i]
            return s.Concept(self.session.resolver.display_name(self.keep[i]))
        if isinstance(f, s.Not):
            return s.Not(self.formula(f.operand))
        if isinstance(f, (s.And, s.Or)):
            return type(f)(self.formula(f.left), self.formula(f.right))
        return f

    def row(self, value: Any, key: str = "") -> Any:
        if isinstance(value, str) and key == "formula":
            if value == "NONE":  # a unit no formula overlaps: not a concept of either store
                return value
            try:
                stmt = self.parse(value)
            except Exception:  # not a formula (a message): leave it as it is
                return value
            return str(self.formula(stmt.formula)) if isinstance(stmt, s.FormulaStmt) else value
        if isinstance(value, dict):
            return {k: self.row(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.row(v, key) for v in value]
        return value


def _sub_session(session: Session, keep: list[int], extra: dict[str, np.ndarray]) -> Session:
    layer = session.layer()
    key = (id(session.store), layer.name, str(session.settings["threshold"]), tuple(keep),
           tuple((name, hash(mask.tobytes())) for name, mask in extra.items()))
    cached = _CACHE.get(session)
    if cached is not None and cached[0] == key:
        return cached[1]
    store = derived_store(session.store, keep, extra)
    masks = un.csr_from_lists([session.unit_positions(u) for u in range(layer.n_units)])
    store._attach(layer.name, masks, un.Threshold("masks", 0.0), None, None)
    sub = type(session)(store)
    sub.settings.update({**session.settings, "threshold": None, "layer": layer.name})
    sub.progress = session.progress
    _CACHE[session] = (key, sub)
    return sub


__all__ = ["PositionMasks", "derived_store", "run", "shift", "uses_sequence", "within"]
