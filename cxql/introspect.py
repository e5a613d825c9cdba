"""Introspection: SHOW and EXPLAIN, which describe the store, the session and plans.

EXPLAIN prints what a statement would compute (the compiled plan, tensor
sizes, the memory bound) without running it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics, sanity
from . import syntax as s
from .errors import QueryError
from .exact_search import explain_lines
from .result import Result
from .settings import SETTINGS
from .limits import MAX_LENGTH, beam_capacity
from .memory import check as check_memory
from .memory import format_size, formula_bytes
from .statements import checked_search, ranked_search_rows, search_bytes, search_row, unit_intersections
from .store import ConceptStore

if TYPE_CHECKING:
    from .context import StatementContext as Session


def show(session: Session, stmt: s.Show) -> Result:
    store = session.store
    if stmt.what == "concepts":
        return _show_concepts(session, stmt)
    if stmt.what == "categories":
        counts: dict[str, int] = {}
        for c in store.concepts:
            counts[c.category] = counts.get(c.category, 0) + 1
        rows = [{"category": k, "concepts": v} for k, v in counts.items()]
        return Result(str(stmt), "show", ["category", "concepts"], rows)
    if stmt.what == "units":
        layer = session.layer()
        estimate = formula_bytes(1, store.n_signatures, len(session.unit_histograms()[1]), layer.n_units)
        check_memory(estimate, session.settings["memory_limit"], "SHOW units")
        sizes = unit_intersections(session, np.ones(store.n_signatures, dtype=bool))[1]
        thresholds = layer.thresholds
        rows = [{"layer": layer.name, "unit": u, "mask_size": int(sizes[u]),
                 "fraction": int(sizes[u]) / store.n_positions if store.n_positions else 0.0,
                 "threshold": float(thresholds[u]) if thresholds is not None else None}
                for u in range(layer.n_units)]
        return Result(str(stmt), "show", ["layer", "unit", "mask_size", "fraction", "threshold"], rows,
                      f"layers: {', '.join(f'{n} ({l.n_units} units)' for n, l in store.layers.items())}")
    if stmt.what == "unit":
        return _show_unit(session, stmt.unit)
    if stmt.what == "store":
        rows = [{"property": k, "value": v} for k, v in store_summary(store).items()]
        return Result(str(stmt), "show", ["property", "value"], rows)
    if stmt.what == "lets":
        rows = [{"name": k, "formula": str(v)} for k, v in session.lets.items()]
        return Result(str(stmt), "show", ["name", "formula"], rows,
                      None if rows else "no LET names yet: define one with LET name = formula")
    rows = [{"name": k, "value": session.settings[k], "help": v.help} for k, v in SETTINGS.items()]
    return Result(str(stmt), "show", ["name", "value", "help"], rows)


def _show_concepts(session: Session, stmt: s.Show) -> Result:
    """Concepts matching LIKE, in store order or ORDER BY a column (stable, so ties keep store order)."""
    store = session.store
    samples = [c.get("images", c.get("samples")) for c in store.manifest["concepts"]]
    columns = ["name", "category", "count", "fraction"] + (["samples"] if any(v is not None for v in samples) else [])
    rows = []
    for c, n in zip(store.concepts, samples):
        if stmt.pattern is None or like(c.qualified, stmt.pattern) or like(c.name, stmt.pattern):
            row = {"name": c.name, "category": c.category, "count": c.count,
                   "fraction": c.count / store.n_positions if store.n_positions else 0.0}
            if "samples" in columns:
                row["samples"] = n
            rows.append(row)
    order = stmt.order
    if order is not None:
        if order not in columns:
            raise QueryError(f"cannot order concepts by {order!r}; columns: {', '.join(columns)}", needle=order)
        rows.sort(key=lambda r: (r[order] is None, r[order]), reverse=stmt.descending)
    return Result(str(stmt), "show", columns, rows, f"{len(rows)} of {len(store.concepts)} concepts")


def _show_unit(session: Session, unit: int | None) -> Result:
    """A unit at a glance: its mask size, threshold and best length-1..3 formulas."""
    assert unit is not None
    [u] = session.units(s.Units((unit,)))
    length = session.settings["length"]
    plain = session.searcher("plain")
    beam = checked_search(session, plain, [u], length, session.settings["beam"])
    columns = ["layer", "unit", "formula", session.metric.name, "mask_size", "threshold",
               "vs_random_unit", "vs_shuffled_concept", "sanity"]
    found = plain.search(session.search_context(units=[u]), [u], length=length, beam=beam, distinct=False)
    if not found:  # cancelled (Ctrl-C) before the search finished
        return Result(f"SHOW unit {unit}", "search", columns, [], f"cancelled: unit {unit} was not searched")
    row = search_row(found[0], session.metric, session.store.n_positions)
    if session.metric.needs_activations:
        [row] = ranked_search_rows(session, [row], found, [])[0]
    layer = session.layer()
    row["layer"] = layer.name
    row["threshold"] = float(layer.thresholds[u]) if layer.thresholds is not None else None
    note = None
    if found[0].best is not None:  # the sanity checks (cxql.sanity): does it beat a random unit and a shuffled concept?
        check = sanity.check(session, u, found[0].best.formula)
        row.update(vs_random_unit=check.random_unit_score, vs_shuffled_concept=check.shuffled_score,
                   sanity=check.verdict())
        if check.random_unit is not None:
            note = f"random-unit control: unit {check.random_unit}; shuffled concept: samples permuted " \
                   f"(seed {sanity.SEED})"
    else:
        row.update(vs_random_unit=None, vs_shuffled_concept=None, sanity="no formula")
    return Result(f"SHOW unit {unit}", "search", columns, [row], note)


def store_summary(store: ConceptStore) -> dict[str, Any]:
    return {"path": str(store.path) if store.path else "(in memory)", "kind": store.kind,
            "positions": store.n_positions, "samples": store.n_samples,
            "mask_shape": "x".join(map(str, store.mask_shape)) if store.mask_shape else "-",
            "concepts": len(store.concepts), "signatures": store.n_signatures,
            "bytes": store.nbytes(),
            "layers": ", ".join(f"{n} ({l.n_units} units)" for n, l in store.layers.items()) or "-"}


def explain(session: Session, stmt: s.Explain) -> Result:
    inner = stmt.statement
    store = session.store
    backend = session.backend
    k, n_sig = len(store.concepts), store.n_signatures
    header = [f"store: {store.n_positions:,} positions in {n_sig:,} signatures x {k:,} concepts "
              f"(bit-packed, {n_sig * ((k + 7) // 8):,} bytes) on {backend.device}",
              f"chunks of {backend.chunk_rows:,} signatures: at most "
              f"{backend.chunk_rows * k * 8:,} bytes unpacked at once"]
    lines: list[str] = []
    formula = getattr(inner, "formula", None)
    if formula is not None and not isinstance(inner, s.Let):
        plan = session.formula_plan(formula)
        lines += [f"formula {plan.formula}  (length {s.length(plan.formula)})"]
        lines += ["  " + line for line in plan.describe(store.concepts)]
        lines += [f"  |F| = sum(count[S] where t{len(plan.ops) - 1})  -- float64 dot over {n_sig:,} signatures"]
    metric = session.metric
    if isinstance(inner, s.Eval):
        lines += [f"for each of {len(session.units(inner.units))} units: |M & F| = hist_u[S] . t{len(plan.ops) - 1}"
                  " (sparse CSR histogram), then from these counts "
                  + ", ".join(f"{m.label} = {m.formula}" for m in metrics.METRICS.values())]
    elif isinstance(inner, s.Match):
        lines += [f"|M_u & F| for all {session.layer().n_units} units from CSR histograms; "
                  f"sort by {metric.label} = {metric.formula}, keep TOP"]
    elif isinstance(inner, s.Search):
        lines += _search_plan(session, inner)
    elif formula is None:
        lines += [f"{inner}: no tensor work"]
    rows = [{"plan": line} for line in header + lines]
    return Result(str(stmt), "explain", ["plan"], rows)


def like(text: str, pattern: str) -> bool:
    """SQL LIKE, case-insensitive: ``%`` any run, ``_`` one character.

    A linear-time wildcard matcher (greedy, backing up to the last ``%``
    only), in place of a regex: ``'%%%...%zz'`` made the regex engine
    backtrack exponentially, in C, where Ctrl-C could not stop it.
    """
    t = [ch.lower() for ch in text]
    p = [ch.lower() for ch in pattern]
    i = j = 0
    star, mark = -1, 0  # the last % seen in the pattern, and where in the text it began
    while i < len(t):
        if j < len(p) and p[j] != "%" and (p[j] == "_" or p[j] == t[i]):
            i, j = i + 1, j + 1
        elif j < len(p) and p[j] == "%":
            star, mark = j, i
            j += 1
        elif star >= 0:
            mark += 1
            i, j = mark, star + 1
        else:
            return False
    return all(ch == "%" for ch in p[j:])


def _search_plan(session: Session, stmt: s.Search) -> list[str]:
    """How SEARCH will run: which engine, and the products of each step."""
    if stmt.exact or stmt.within is not None:
        return explain_lines(session, stmt)
    units = session.units(stmt.units)
    length = stmt.length or session.settings["length"]
    beam = stmt.beam or session.settings["beam"]
    head = (f"beam search over {len(units)} units, LENGTH {length}, BEAM {beam}"
            + (" DISTINCT" if stmt.distinct else ""))
    capacity = beam_capacity(int((session.backend.concept_sizes > 0).sum()), min(length, MAX_LENGTH))
    engine = session.searcher()
    estimate = search_bytes(session, engine, units, min(beam, capacity))
    memory_line = (f"  memory: about {format_size(estimate)} (memory_limit {format_size(session.settings['memory_limit'])})"
                   + (f"; BEAM clipped to {capacity:,}, the most a beam can hold" if beam > capacity else ""))
    lines = engine.describe(session.search_context(), length, beam)
    return [f"{head} -- {lines[0]}", *lines[1:], memory_line]
