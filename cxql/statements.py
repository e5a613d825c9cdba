"""The statements that compute: formulas, EVAL, SEARCH, MATCH, LET and SET.

Each handler takes the session and a parsed statement and returns a
:class:`~cxql.result.Result`; none of them prints. Counts for a formula come
from the backend's signature kernels, counts per unit from the layer's
signature histograms, so every statement agrees on the same integers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import memory
from . import syntax as s
from .backend import Backend
from .batched import estimate_bytes
from .errors import NameResolutionError, QueryError
from .exact_search import root_bounds, search_exact
from .limits import MAX_LENGTH, beam_capacity
from .result import Result, order_rows
from .search import SearchResult, beam_search, iou_of, unit_note
from .settings import check_setting
from .store import ConceptStore

if TYPE_CHECKING:
    from .engine import Session


def formula(session: Session, stmt: s.FormulaStmt) -> Result:
    plan = session.formula_plan(stmt.formula)
    store = session.store
    memory.check(memory.formula_bytes(len(plan.ops), store.n_signatures) + 9 * min(store.n_positions, 1 << 22),
                 session.settings["memory_limit"], "this formula")
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    samples = _samples_touched(session.store, backend, mask)
    n = session.store.n_positions
    row = {"formula": str(plan.formula), "positions": size, "fraction": size / n if n else 0.0,
           "samples": samples, "sample_fraction": samples / session.store.n_samples if session.store.n_samples else 0.0}
    return Result(str(stmt), "formula", list(row), [row])


def _samples_touched(store: ConceptStore, backend: Backend, mask: torch.Tensor, chunk: int = 1 << 22) -> int:
    """How many samples have at least one position where the formula holds (chunked over positions)."""
    sig_mask = mask.cpu().numpy()
    offsets = store.sample_offsets
    touched = 0
    first = 0
    while first < len(offsets) - 1:
        last = int(np.searchsorted(offsets, offsets[first] + chunk, side="right")) - 1
        last = max(last, first + 1)
        a, b = int(offsets[first]), int(offsets[last])
        hits = sig_mask[np.asarray(store.position_signatures[a:b], dtype=np.int64)]
        starts = offsets[first:last] - a
        touched += int(np.count_nonzero(np.logical_or.reduceat(hits, starts))) if b > a else 0
        first = last
    return touched


def evaluate(session: Session, stmt: s.Eval) -> Result:
    plan = session.formula_plan(stmt.formula)
    units = session.units(stmt.units)
    _check_formula_memory(session, plan, len(units), "EVAL")
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    inters, sizes = unit_intersections(session, mask.cpu().numpy())
    rows = []
    for u in units:
        inter, m = int(inters[u]), int(sizes[u])
        rows.append({"unit": u, "formula": str(plan.formula), "iou": iou_of(inter, size, m),
                     "precision": inter / size if size else 0.0, "recall": inter / m if m else 0.0,
                     "intersection": inter, "formula_size": size, "mask_size": m})
    return Result(str(stmt), "eval", ["unit", "formula", "iou", "precision", "recall", "mask_size"], rows)


def _check_formula_memory(session: Session, plan: Any, n_rows: int, what: str) -> None:
    entries = len(session.unit_histograms()[1])
    estimate = memory.formula_bytes(len(plan.ops), session.store.n_signatures, entries, n_rows)
    estimate += 200 * session.layer().n_units  # per-unit counts and scores
    memory.check(estimate, session.settings["memory_limit"], what)


def unit_intersections(session: Session, sig_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|M_u AND F|, |M_u|) for every unit of the layer, from the CSR histograms."""
    indptr, sig, cnt = session.unit_histograms()
    weighted = np.where(sig_mask[sig], cnt, 0) if len(sig) else np.zeros(0, np.int64)
    cums = np.concatenate([[0], np.cumsum(weighted, dtype=np.int64)])
    totals = np.concatenate([[0], np.cumsum(cnt, dtype=np.int64)])
    return cums[indptr[1:]] - cums[indptr[:-1]], totals[indptr[1:]] - totals[indptr[:-1]]


def search(session: Session, stmt: s.Search) -> Result:
    if stmt.exact or stmt.within is not None:
        result = search_exact(session, stmt, lambda: _active_enough(session, stmt.units))
        if stmt.accuracy:
            _add_accuracy(session, result.rows, result.columns)
        if stmt.order is not None:
            result.rows = order_rows(result.rows, stmt.order, stmt.descending, result.columns, "SEARCH results")
        return result
    length = stmt.length if stmt.length is not None else session.settings["length"]
    beam = stmt.beam if stmt.beam is not None else session.settings["beam"]
    distinct = stmt.distinct or session.settings["distinct"]
    units, notes = _active_enough(session, stmt.units)
    if stmt.accuracy:
        from .text_record import accuracy_columns

        accuracy_columns(session, [])  # no classifier: say so before searching, not after
    engine = session.searcher()
    beam = checked_search(session, engine, units, length, beam)
    results = engine(session, units, length=length, beam=beam, distinct=distinct)
    rows = [search_row(r) for r in results]
    for row, bound in zip(rows, root_bounds(session, [r.unit for r in results], length)):
        row["bound"] = bound  # how far any formula of the space could be above this answer
    columns = ["unit", "formula", "iou", "bound", "precision", "recall", "length", "mask_size"]
    if stmt.accuracy:
        _add_accuracy(session, rows, columns)
    if len(results) < len(units):
        notes.append(f"cancelled after {len(results)} of {len(units)} units")
    if stmt.order is not None:
        rows = order_rows(rows, stmt.order, stmt.descending, columns, "SEARCH results")
    return Result(str(stmt), "search", columns, rows, "; ".join(notes) or None)


def checked_search(session: Session, engine: Any, units: list[int], length: int, beam: int) -> int:
    """The BEAM to run with, after refusing a LENGTH, BEAM or memory estimate out of bounds.

    BEAM is clipped to the most entries a beam can ever hold (which changes
    no result); what remains must fit ``SET memory_limit``.
    """
    for name, value in (("LENGTH", length), ("BEAM", beam)):
        if value < 1:
            raise QueryError(f"{name} must be at least 1, got {value}", needle=f"{value}")
    if length > MAX_LENGTH:
        raise QueryError(f"LENGTH must be at most {MAX_LENGTH}, got {length}", needle=f"{length}",
                         hint="compexp's figures stop at LENGTH 10")
    beam = min(beam, beam_capacity(int((session.backend.concept_sizes > 0).sum()), length))
    memory.check(search_bytes(session, engine, units, beam), session.settings["memory_limit"],
                 f"SEARCH of {len(units)} unit{'s' * (len(units) != 1)} with BEAM {beam}",
                 hint="lower BEAM or search fewer units")
    return beam


def search_bytes(session: Session, engine: Any, units: list[int], beam: int) -> int:
    """Estimated peak bytes of a SEARCH (see cxql.memory and cxql.batched for the formulas)."""
    backend = session.backend
    nonempty = int((backend.concept_sizes > 0).sum())
    if engine is search_units:
        return memory.plain_search_bytes(beam, session.store.n_signatures, backend.n_concepts, nonempty,
                                         backend.chunk_rows, len(units))
    return estimate_bytes(session, units, beam) + 400 * beam * len(units)


def _add_accuracy(session: Session, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """WITH accuracy: the NLI analysis next to each formula (text stores)."""
    from .text_record import accuracy_columns

    extra = accuracy_columns(session, [r["unit"] for r in rows])
    for row in rows:
        row.update(extra[row["unit"]])
    columns[3:3] = ["favours", "accuracy"]


def _active_enough(session: Session, selection: s.Units) -> tuple[list[int], list[str]]:
    """The units to search, less (for ``*`` on text stores) those active fewer than min_active times."""
    units = session.units(selection)
    least = session.settings["min_active"]
    if not selection.all or session.store.kind != "text" or least == 0:
        return units, []
    sizes = unit_intersections(session, np.ones(session.store.n_signatures, dtype=bool))[1]
    kept = [u for u in units if sizes[u] >= least]
    if len(kept) == len(units):
        return units, []
    return kept, [f"skipped {len(units) - len(kept)} of {len(units)} units active on fewer than {least} "
                  f"pairs (SET min_active = 0 to search them)"]


def search_row(r: SearchResult) -> dict[str, Any]:
    """A SEARCH result as a plain row (the by_length list feeds IoU-by-length plots)."""
    best = r.best
    inter, size = (best.inter, best.size) if best else (0, 0)
    return {"unit": r.unit, "formula": str(best.formula) if best else "NONE", "iou": best.iou if best else 0.0,
            "precision": inter / size if size else 0.0, "recall": inter / r.mask_size if r.mask_size else 0.0,
            "length": best.length if best else 0, "mask_size": r.mask_size,
            "by_length": [{"length": n, "formula": str(v.formula), "iou": v.iou}
                          for n, v in sorted(r.by_length.items())]}


def search_units(session: Session, units: list[int], *, length: int, beam: int,
                  distinct: bool) -> list[SearchResult]:
    """Reference path: one beam search per unit.

    A cancel (``session.cancel()``) stops within the current unit's steps and
    drops that unit: SEARCH returns only complete searches, like the batched
    engine.
    """
    out = []
    session.progress.start(len(units), "SEARCH")
    try:
        for u in units:
            r = beam_search(session.backend, session.resolver, session.unit_hist(u), u,
                            length=length, beam=beam, distinct=distinct, cancelled=lambda: session._cancel)
            if session._cancel:
                break
            out.append(r)
            session.progress.advance(1, unit_note(r))
    finally:
        session.progress.finish()
    return out


def match(session: Session, stmt: s.Match) -> Result:
    plan = session.formula_plan(stmt.formula)
    top = stmt.top if stmt.top is not None else session.settings["top"]
    if top < 1:
        raise QueryError(f"TOP must be at least 1, got {top}", needle=str(top))
    _check_formula_memory(session, plan, min(top, session.layer().n_units), "MATCH")
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    inters, sizes = unit_intersections(session, mask.cpu().numpy())
    ious = [iou_of(int(i), size, int(m)) for i, m in zip(inters, sizes)]
    order = sorted(range(len(ious)), key=lambda u: (-ious[u], u))[:top]
    rows = [{"unit": u, "formula": str(plan.formula), "iou": ious[u],
             "precision": int(inters[u]) / size if size else 0.0,
             "recall": int(inters[u]) / int(sizes[u]) if sizes[u] else 0.0, "mask_size": int(sizes[u])}
            for u in order]
    return Result(str(stmt), "match", ["unit", "iou", "precision", "recall", "mask_size"], rows,
                  f"{plan.formula}: best {len(rows)} of {len(ious)} units")


def let(session: Session, stmt: s.Let) -> Result:
    # a LET name is looked up before concepts: one that is also a concept would change what it means
    if session.resolver.names_a_concept(stmt.name):
        raise QueryError(f"{stmt.name} is a concept; choose another LET name", needle=stmt.name,
                         hint=f"e.g. LET my_{stmt.name} = ...")
    canonical = session.compiler.canonical(stmt.formula)
    session.lets[stmt.name] = canonical
    session.compiler._cache.clear()
    return Result(str(stmt), "let", ["name", "formula"], [{"name": stmt.name, "formula": str(canonical)}],
                  f"{stmt.name} = {canonical}")


def set_(session: Session, stmt: s.Set) -> Result:
    value = check_setting(stmt.name, stmt.value)
    if stmt.name == "layer" and value is not None and value not in session.store.layers:
        raise NameResolutionError(f"unknown layer {value!r}; layers: {', '.join(session.store.layers) or 'none'}",
                                  needle=str(stmt.value))
    session.settings[stmt.name] = value
    return Result(str(stmt), "set", ["name", "value"], [{"name": stmt.name, "value": value}],
                  f"{stmt.name} = {value}")
