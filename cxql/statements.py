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

from . import memory, metrics
from . import syntax as s
from .backend import Backend
from .errors import NameResolutionError, QueryError
from .exact_search import check_exact, exact_notes, root_bounds
from .limits import MAX_LENGTH, beam_capacity
from .result import Result, order_rows
from .search import SearchResult
from .searcher import Searcher
from .settings import check_setting
from .store import ConceptStore
from .store import units as un

if TYPE_CHECKING:
    from .context import StatementContext as Session

#: EVAL over many units polls the cancel token once per this many rows.
ROWS_PER_CHECK = 4096


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
    sig_mask = mask.cpu().numpy()
    inters, sizes = unit_intersections(session, sig_mask)
    n = session.store.n_positions
    ranked, note = None, _ranked_left_out(session, len(units))
    if note is None:
        ranked = _ranked_scores(session, sig_mask, size)
    rows: list[dict[str, Any]] = []
    many = len(units) > ROWS_PER_CHECK
    if many:
        session.progress.start(len(units), "EVAL")
    try:
        for first in range(0, len(units), ROWS_PER_CHECK):
            if session.token.cancelled:
                break
            for u in units[first:first + ROWS_PER_CHECK]:
                inter, m = int(inters[u]), int(sizes[u])
                rows.append({"unit": u, "formula": str(plan.formula), **metrics.values(inter, size, m, n),
                             **(ranked(u) if ranked else {}),
                             "intersection": inter, "formula_size": size, "mask_size": m})
            if many:
                session.progress.advance(min(ROWS_PER_CHECK, len(units) - first))
    finally:
        if many:
            session.progress.finish()
    columns = ["unit", "formula", *metric_columns(session, ranked is not None), "mask_size"]
    return Result(str(stmt), "eval", columns, rows, _cancel_note(len(rows), len(units)) or note)


RANKED_COLUMNS = ("auroc", "p_value", "auprc", "sample_auroc")
#: EVAL adds the ranked columns by itself while (units x positions) stays under this (one sort per unit:
#: about 6 s for 20M positions on 2 CPU cores); beyond it only when the chosen metric needs them.
RANK_BUDGET = 1 << 27


def metric_columns(session: Session, ranked: bool) -> list[str]:
    """The metric columns of a row: the chosen metric first, then the count metrics, then (where the
    layer keeps activations) auroc, p_value and auprc."""
    columns = metrics.columns(session.metric)
    return columns + [c for c in RANKED_COLUMNS if c not in columns] if ranked else columns


def _ranked_left_out(session: Session, n_units: int) -> str | None:
    """Why EVAL leaves the ranked columns out although the layer keeps activations (too many units, or
    not enough memory), or None; never when the chosen metric needs them (then it is an error)."""
    from .activation_source import RANK_BYTES_PER_POSITION

    n = session.store.n_positions
    if session.metric.needs_activations or session.layer().activations is None:
        return None
    if n_units * n > RANK_BUDGET:
        return (f"auroc, p_value and auprc left out: ranking {n_units} units over {n:,} positions takes one sort "
                "each; EVAL fewer units, or SET metric = 'auroc' to have them")
    if RANK_BYTES_PER_POSITION * n > session.settings["memory_limit"]:
        return "auroc, p_value and auprc left out: ranking a unit's activations needs more than SET memory_limit"
    return None


def _ranked_scores(session: Session, sig_mask: np.ndarray, size: int) -> Any:
    """unit -> {auroc, p_value, auprc} for a formula, or None when the layer keeps no activations
    (an error instead when the chosen metric needs them)."""
    layer = session.layer()
    if layer.activations is None and not session.metric.needs_activations:
        return None
    from .activation_source import RANK_BYTES_PER_POSITION

    memory.check(RANK_BYTES_PER_POSITION * session.store.n_positions, session.settings["memory_limit"],
                 "ranking a unit's activations (auroc, p_value, auprc)")
    source = session.activation_source()
    positives = source.positives(sig_mask)

    def scores(u: int) -> dict[str, float]:
        session.token.check("ranking activations")  # one sort of the layer's positions per unit
        return source.scores(u, sig_mask, size, positives)
    return scores


def _cancel_note(done: int, total: int) -> str | None:
    return f"cancelled after {done} of {total} units" if done < total else None


def _check_formula_memory(session: Session, plan: Any, n_rows: int, what: str) -> None:
    entries = len(session.unit_histograms()[1])
    estimate = memory.formula_bytes(len(plan.ops), session.store.n_signatures, entries, n_rows)
    estimate += 200 * session.layer().n_units  # per-unit counts and scores
    memory.check(estimate, session.settings["memory_limit"], what)


def unit_intersections(session: Session, sig_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|M_u AND F|, |M_u|) for every unit of the layer, from the CSR histograms."""
    indptr, sig, cnt = session.unit_histograms()  # chunk by chunk: a sparse layer has a billion entries
    return un.unit_sums(indptr, cnt, sig, np.asarray(sig_mask, dtype=bool)), un.unit_sums(indptr, cnt)


def search(session: Session, stmt: s.Search) -> Result:
    """SEARCH: a beam searcher (``SET engine``) or, with EXACT, the exact one; rows in the session's metric."""
    length = stmt.length if stmt.length is not None else session.settings["length"]
    exact = stmt.exact or stmt.within is not None
    if exact:
        check_exact(stmt, length, len(session.store.concepts), session.metric)
    units, notes = _active_enough(session, stmt.units)
    if stmt.accuracy:
        from .text_record import accuracy_columns

        accuracy_columns(session, [])  # no classifier: say so before searching, not after
    if exact:
        engine = session.searcher("exact")
        memory.check(search_bytes(session, engine, units, 0), session.settings["memory_limit"],
                     f"SEARCH ... EXACT over {len(session.store.concepts):,} concepts",
                     hint="search fewer concepts (USING)")
        results = engine.search(session.search_context(stmt.within), units, length=length)
    else:
        beam = stmt.beam if stmt.beam is not None else session.settings["beam"]
        distinct = stmt.distinct or session.settings["distinct"]
        engine = session.searcher()
        beam = checked_search(session, engine, units, length, beam)
        ctx = session.search_context(units=units)  # under AUROC: the units' rank sums (cxql.activation_source)
        results = engine.search(ctx, units, length=length, beam=beam, distinct=distinct)
    rows, columns = search_rows(session, results, length, exact)
    if session.metric.needs_activations:
        rows, columns = ranked_search_rows(session, rows, results, columns)
    if stmt.accuracy:
        _add_accuracy(session, rows, columns)
    if exact:
        notes += exact_notes(results)
    if len(results) < len(units):
        notes.append(_cancel_note(len(results), len(units)))
    if stmt.order is not None:
        rows = order_rows(rows, stmt.order, stmt.descending, columns, "SEARCH results")
    return Result(str(stmt), "search", columns, rows, "; ".join(n for n in notes if n) or None)


def search_rows(session: Session, results: list[SearchResult], length: int,
                exact: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and columns of SEARCH: every metric, the search metric first, and a bound above every formula
    of the EXACT space (exact rows: also whether it is proven optimal; beam rows: the root bound)."""
    metric = session.metric
    rows = [search_row(r, metric, session.store.n_positions) for r in results]
    columns = ["unit", "formula", *metrics.columns(metric), "length", "mask_size"]
    if exact:
        for row, r in zip(rows, results):
            row["optimal"], row["bound"] = r.optimal, r.bound
        columns[3:3] = ["optimal", "bound"]
        return rows, columns
    bounds = _root_bounds(session.search_context(), [r.unit for r in results], length)
    if bounds is not None:  # None: no bound for this metric
        for row, bound in zip(rows, bounds):
            row["bound"] = bound  # how far any formula of the space could be above this answer
        columns[3:3] = ["bound"]
    return rows, columns


#: Units whose root bounds are computed at once: each holds its histogram in the EXACT space's form
#: (about 0.5 MB on a 10M-token store), so 16,384 units at once took 8 GB.
BOUND_CHUNK = 256


def _root_bounds(ctx: Any, units: list[int], length: int) -> list[float] | None:
    """:func:`root_bounds` of ``units``, a chunk of units at a time so memory does not grow with their number."""
    if not units:
        return root_bounds(ctx, units, length)
    out: list[float] = []
    for a in range(0, len(units), BOUND_CHUNK):
        part = root_bounds(ctx, units[a:a + BOUND_CHUNK], length)
        if part is None:
            return None
        out += part
    return out


def ranked_search_rows(session: Session, rows: list[dict[str, Any]], results: list[SearchResult],
                        columns: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """SEARCH rows under AUROC: the searcher's counts were rank sums, so each best formula is measured again
    as EVAL measures it (its own counts, mask size and auroc, p_value, auprc)."""
    mask_sizes = unit_intersections(session, np.ones(session.store.n_signatures, dtype=bool))[1]
    for row, r in zip(rows, results):
        if r.best is None:
            row.update({name: 0.0 for name in metrics.METRICS}, auroc=0.0, p_value=1.0, auprc=0.0,
                       sample_auroc=0.0, mask_size=int(mask_sizes[r.unit]))
            continue
        mask = session.backend.formula_mask(session.formula_plan(r.best.formula))
        sig_mask, size = mask.cpu().numpy(), session.backend.formula_size(mask)
        inters, sizes = unit_intersections(session, sig_mask)
        inter, m = int(inters[r.unit]), int(sizes[r.unit])
        scores = _ranked_scores(session, sig_mask, size)(r.unit)  # its auroc is the search's score, to the bit
        row.update(metrics.values(inter, size, m, session.store.n_positions), **scores, mask_size=m)
    shown = metric_columns(session, True)
    return rows, ["unit", "formula", *shown, *[c for c in columns if c not in shown and c not in ("unit", "formula")]]


def checked_search(session: Session, engine: Searcher, units: list[int], length: int, beam: int) -> int:
    """The BEAM to run with, after refusing a LENGTH, BEAM or memory estimate out of bounds.

    BEAM is clipped to the most entries a beam can ever hold (which changes
    no result); what remains must fit ``SET memory_limit``.
    """
    for name, value in (("LENGTH", length), ("BEAM", beam)):
        if value < 1:
            raise QueryError(f"{name} must be at least 1, got {value}", needle=f"{name} {value}")
    if length > MAX_LENGTH:
        raise QueryError(f"LENGTH must be at most {MAX_LENGTH}, got {length}", needle=f"LENGTH {length}",
                         hint="compexp's figures stop at LENGTH 10")
    beam = min(beam, beam_capacity(int((session.backend.concept_sizes > 0).sum()), length))
    memory.check(search_bytes(session, engine, units, beam), session.settings["memory_limit"],
                 f"SEARCH of {len(units)} unit{'s' * (len(units) != 1)} with BEAM {beam}",
                 hint="lower BEAM or search fewer units")
    return beam


def search_bytes(session: Session, engine: Searcher, units: list[int], beam: int) -> int:
    """Estimated peak bytes of a SEARCH: the searcher's own estimate (see cxql.memory, cxql.batched)."""
    return engine.estimate_bytes(session.search_context(), units, beam)


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
    if not selection.all or session.store.kind not in ("text", "tokens") or least == 0:
        return units, []
    sizes = unit_intersections(session, np.ones(session.store.n_signatures, dtype=bool))[1]
    kept = [u for u in units if sizes[u] >= least]
    if len(kept) == len(units):
        return units, []
    return kept, [f"skipped {len(units) - len(kept)} of {len(units)} units active on fewer than {least} "
                  f"{'tokens' if session.store.kind == 'tokens' else 'pairs'} (SET min_active = 0 to search them)"]


def search_row(r: SearchResult, metric: metrics.Metric = metrics.IOU, n: int = 0) -> dict[str, Any]:
    """A SEARCH result as a plain row: every metric of the best formula, and the best per length
    (``by_length``, scored by the search metric, for score-by-length plots)."""
    best = r.best
    inter, size = (best.inter, best.size) if best else (0, 0)
    return {"unit": r.unit, "formula": str(best.formula) if best else "NONE",
            **metrics.values(inter, size, r.mask_size, n),
            "length": best.length if best else 0, "mask_size": r.mask_size,
            "by_length": [{"length": k, "formula": str(v.formula), metric.name: v.score}
                          for k, v in sorted(r.by_length.items())]}


def match(session: Session, stmt: s.Match) -> Result:
    plan = session.formula_plan(stmt.formula)
    top = stmt.top if stmt.top is not None else session.settings["top"]
    if top < 1:
        raise QueryError(f"TOP must be at least 1, got {top}", needle=f"TOP {top}")
    _check_formula_memory(session, plan, min(top, session.layer().n_units), "MATCH")
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    sig_mask = mask.cpu().numpy()
    inters, sizes = unit_intersections(session, sig_mask)
    metric, n = session.metric, session.store.n_positions
    ranked = _ranked_scores(session, sig_mask, size) if metric.needs_activations else None
    if ranked:
        per_unit = [ranked(u) for u in range(len(sizes))]
        scores = [row["auroc"] for row in per_unit]
    else:
        scores = [float(metric(int(i), size, int(m), n)) for i, m in zip(inters, sizes)]
    order = sorted(range(len(scores)), key=lambda u: (-scores[u], u))[:top]
    rows = [{"unit": u, "formula": str(plan.formula), **metrics.values(int(inters[u]), size, int(sizes[u]), n),
             **(per_unit[u] if ranked else {}), "mask_size": int(sizes[u])} for u in order]
    return Result(str(stmt), "match", ["unit", *metric_columns(session, ranked is not None), "mask_size"], rows,
                  f"{plan.formula}: best {len(rows)} of {len(scores)} units by {metric.label}")


def let(session: Session, stmt: s.Let) -> Result:
    # a LET name is looked up before concepts: one that is also a concept would change what it means
    if session.resolver.names_a_concept(stmt.name):
        raise QueryError(f"{stmt.name} is a concept; choose another LET name", needle=stmt.name,
                         hint=f"e.g. LET my_{stmt.name} = ...")
    canonical = session.compiler.canonical(stmt.formula)
    session.lets[stmt.name] = canonical
    session.forget_plans()
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
