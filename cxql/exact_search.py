"""The SEARCH ... EXACT statement: a session's units through :mod:`cxql.exact`, as result rows.

Kept apart from the algorithm so that :mod:`cxql.exact` stays a pure
function of signature counts (tested against enumeration), and apart from
the beam statements so the two engines can change independently.

Budget. ``WITHIN t s`` is for the whole statement: each unit may use the
time left divided by the units left, so time a quick unit does not use
passes on to the next. A unit whose time is up (or every unit after a
Ctrl-C, ``session.cancel()``) answers the seed beam's formula with the
bound of what was left unexplored, and ``optimal`` false unless that bound
already proves it. The search runs in numpy on the CPU whatever ``SET
device`` says: its work is a few hundred small products per unit, which a
GPU would not speed up.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import syntax as s
from .errors import QueryError
from .exact import Answer, Key, Space, Unit, relaxed_bound, search_unit
from .result import Result
from .search import combine
from .store import ConceptStore

if TYPE_CHECKING:
    from .engine import Session

COLUMNS = ["unit", "formula", "iou", "optimal", "bound", "precision", "recall", "length", "mask_size"]
_SPACES: "weakref.WeakKeyDictionary[ConceptStore, Space]" = weakref.WeakKeyDictionary()


def space_of(store: ConceptStore, chunk: int = 1 << 14) -> Space:
    """The store's signature table as (signature, concept) pairs (built once per store)."""
    space = _SPACES.get(store)
    if space is None:
        bits, k = store.signature_bits, len(store.concepts)
        sig, concept = [], []
        for a in range(0, bits.shape[0], chunk):
            rows = np.unpackbits(np.asarray(bits[a:a + chunk]), axis=1, count=k, bitorder="little")
            r, c = np.nonzero(rows)
            sig.append(r + a)
            concept.append(c)
        space = Space(np.concatenate(sig + [np.zeros(0, np.int64)]), np.concatenate(concept + [np.zeros(0, np.int64)]),
                      np.asarray(store.signature_counts, np.int64), k)
        _SPACES[store] = space
    return space


def check_exact(stmt: s.Search, length: int, n_concepts: int) -> None:
    """One clear error for each way an EXACT search cannot be asked."""
    if not stmt.exact:
        raise QueryError("WITHIN sets the time budget of SEARCH ... EXACT; add EXACT", needle="WITHIN")
    if stmt.beam is not None:
        raise QueryError("EXACT and BEAM do not combine: EXACT proves the best formula, BEAM limits a greedy "
                         "search; drop one of them", needle="BEAM")
    if length < 1:
        raise QueryError(f"LENGTH must be at least 1, got {length}", needle=str(length))
    if length > n_concepts:
        raise QueryError(f"LENGTH {length} is above the {n_concepts} concepts of this store: EXACT formulas use "
                         f"each concept at most once", needle=str(length))
    if stmt.within is not None and not stmt.within > 0:
        raise QueryError(f"WITHIN must be a positive number of seconds, got {stmt.within:g}", needle="WITHIN")


def explain_lines(session: Session, stmt: s.Search) -> list[str]:
    """EXPLAIN for SEARCH ... EXACT: the engine, the space and the bound, after the same checks as running it."""
    length = stmt.length if stmt.length is not None else session.settings["length"]
    check_exact(stmt, length, len(session.store.concepts))
    units = session.units(stmt.units)
    space = space_of(session.store)
    k = len(space.candidates)
    budget = f", WITHIN {stmt.within:g} s for all units" if stmt.within is not None else ", no time limit"
    return [f"exact search (branch and bound, cxql.exact) over {len(units)} units, LENGTH {length}{budget}"
            " -- numpy on the CPU whatever SET device says",
            f"  space: left-deep formulas over distinct concepts, {k:,} non-empty concepts, at most {length} leaves",
            "  seed: a greedy beam of width 5; then best-first on an admissible bound over the unit's signatures",
            f"  per expanded prefix G: |G & c| = bincount over G's signature-concept pairs ({len(space.sig):,}), "
            f"|M & G & c| = hist_u[E] @ member[E, {k:,}]; {3 * k:,} children in closed form",
            "  rows add optimal (proven) and bound (>= every formula's IoU; = iou when optimal)"]


def units_of(session: Session, space: Space, units: list[int]) -> list[Unit]:
    indptr, sig, cnt = session.unit_histograms()
    return [Unit(space, np.asarray(sig[indptr[u]:indptr[u + 1]], np.int64),
                 np.asarray(cnt[indptr[u]:indptr[u + 1]], np.int64)) for u in units]


def search_exact(session: Session, stmt: s.Search,
                 select: Callable[[], tuple[list[int], list[str]]] | None = None) -> Result:
    """Rows for SEARCH ... EXACT; ``select`` picks the units (and notes why some were skipped), as beam SEARCH does."""
    length = stmt.length if stmt.length is not None else session.settings["length"]
    check_exact(stmt, length, len(session.store.concepts))
    units, notes = select() if select else (session.units(stmt.units), [])
    space = space_of(session.store)
    names = [s.Concept(session.resolver.display_name(i)) for i in range(space.n_concepts)]
    end = None if stmt.within is None else time.monotonic() + stmt.within
    rows: list[dict[str, Any]] = []
    session.progress.start(len(units), "SEARCH EXACT")
    try:
        for i, (u, unit) in enumerate(zip(units, units_of(session, space, units))):
            now = time.monotonic()
            deadline = None if end is None else now + max(0.0, end - now) / (len(units) - i)
            answer = search_unit(space, unit, length, deadline=deadline, cancelled=lambda: session._cancel)
            rows.append(exact_row(u, answer, names))
            session.progress.advance(1, f"unit {u}: {rows[-1]['formula']}")
    finally:
        session.progress.finish()
    proven = sum(r["optimal"] for r in rows)
    notes.append(f"{proven} of {len(rows)} units proven optimal")
    if proven < len(rows):
        gap = max(r["bound"] - r["iou"] for r in rows)
        notes.append(f"the others carry a bound (largest gap {gap:.4f})")
    return Result(str(stmt), "search", list(COLUMNS), rows, "; ".join(notes))


def formula_of(key: Key, names: list[s.Concept]) -> s.Formula:
    formula: s.Formula = names[key[0]]
    for i in range(1, len(key), 2):
        formula = combine(formula, names[key[i]], key[i + 1])
    return formula


def exact_row(u: int, a: Answer, names: list[s.Concept]) -> dict[str, Any]:
    return {"unit": u, "formula": str(formula_of(a.key, names)) if a.key else "NONE", "iou": a.iou,
            "optimal": a.optimal, "bound": a.bound, "precision": a.inter / a.size if a.size else 0.0,
            "recall": a.inter / a.mask_size if a.mask_size else 0.0, "length": a.length, "mask_size": a.mask_size}


def root_bounds(session: Session, units: list[int], length: int) -> list[float]:
    """For beam rows: a proven upper bound on every formula of the EXACT space (the search's root bound)."""
    space = space_of(session.store)
    out = []
    for unit in units_of(session, space, units):
        if unit.size == 0 or not len(space.candidates):
            out.append(0.0)
            continue
        a, b = relaxed_bound(unit, min(length, len(space.candidates)), 0, 1)
        out.append(min(1.0, a / b))
    return out
