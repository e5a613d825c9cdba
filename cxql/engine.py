"""Sessions: statements in, :class:`Result` data out (never printed here).

A :class:`Session` holds one open store, the LET names and SET settings, and
runs statements through the compiler, the backend kernels and beam search.
The CLI, the shell and the Python API all call :meth:`Session.execute`, and
all formatting happens in :mod:`cxql.render`, so every front end shows the
same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from . import batched
from . import syntax as s
from .backend import Backend
from .compiler import Compiler, Plan, Resolver
from .errors import CxqlError, NameResolutionError, QueryError
from .parser import parse_with_spans
from .search import SearchResult, beam_search, iou_of
from .settings import SETTINGS, check_setting, defaults
from .store import ConceptStore, Layer, Threshold
from .store import units as un


class Progress(Protocol):
    """What long statements report to; the CLI and shell plug in Rich bars."""

    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1, note: str | None = None) -> None: ...
    def finish(self) -> None: ...


class _Quiet:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Result:
    """One statement's answer: rows of plain values, plus a message for the people reading."""

    statement: str
    kind: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"statement": self.statement, "kind": self.kind, "columns": self.columns,
                "rows": self.rows, "message": self.message}


def connect(store: "str | Path | ConceptStore") -> "Session":
    """A session on a store (a path to open, or a store object)."""
    if not isinstance(store, ConceptStore):
        store = ConceptStore.open(store)
    return Session(store)


class Session:
    def __init__(self, store: ConceptStore) -> None:
        self.store = store
        self.settings: dict[str, Any] = defaults()
        self.lets: dict[str, s.Formula] = {}
        self.progress: Progress = _Quiet()
        self._cancel = False
        self.resolver = Resolver(store.concepts)
        self.compiler = Compiler(self.resolver, self.lets, neighbors=_neighbors_provider(store))
        self._backend: Backend | None = None
        self._unit_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------ entry points

    def execute(self, text: str) -> Result:
        """Run every statement of ``text``; return the last one's result."""
        results = list(self.stream(text))
        if not results:
            raise QueryError("nothing to run: the query is empty")
        return results[-1]

    def stream(self, text: str) -> Iterator[Result]:
        """Run the statements of ``text`` one by one, yielding each result as it is ready."""
        for statement, span in parse_with_spans(text):
            try:
                yield self.run(statement)
            except CxqlError as exc:
                raise exc.locate(text, span) from None

    def run(self, statement: s.Statement) -> Result:
        """Run one parsed statement."""
        self._cancel = False
        handler = _HANDLERS[type(statement)]
        return handler(self, statement)

    def cancel(self) -> None:
        """Ask a running SEARCH to stop after the current step (the shell's Ctrl-C)."""
        self._cancel = True

    # ------------------------------------------------------------ shared pieces

    @property
    def backend(self) -> Backend:
        chunk = int(self.settings["chunk_mb"]) << 20
        device = self.settings["device"]
        if self._backend is None or str(self._backend.device) != str(torch.device(device)) \
                or self._backend.chunk_bytes != chunk:
            self._backend = Backend(self.store, device, chunk)
        return self._backend

    def layer(self) -> Layer:
        if not self.store.layers:
            raise QueryError("this store has no unit layers yet",
                             hint="attach one with: cxql units add STORE LAYER ACTIVATIONS.npy")
        name = self.settings["layer"] or next(iter(self.store.layers))
        if name not in self.store.layers:
            raise NameResolutionError(f"unknown layer {name!r}; layers: {', '.join(self.store.layers)}",
                                      needle=name)
        return self.store.layers[name]

    def units(self, selection: s.Units) -> list[int]:
        n = self.layer().n_units
        if selection.all:
            return list(range(n))
        out: list[int] = []
        for item in selection.items:
            first, last = (item, item) if isinstance(item, int) else (item.first, item.last)
            if first > last:
                raise QueryError(f"empty unit range {item}", needle=str(item))
            if last >= n:
                raise NameResolutionError(f"unit {last} does not exist: layer {self.layer().name!r} "
                                          f"has units 0..{n - 1}", needle=str(last))
            out.extend(range(first, last + 1))
        return list(dict.fromkeys(out))

    def unit_histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current layer's per-unit signature histograms (CSR), under the session's threshold."""
        layer = self.layer()
        override = self.settings["threshold"]
        if override is None:
            a = layer.arrays
            return (np.asarray(a["hist_indptr"]), np.asarray(a["hist_sig"]), np.asarray(a["hist_count"]))
        rule = Threshold.parse(override, self.store.default_threshold())
        key = (layer.name, str(rule))
        if key not in self._unit_cache:
            if layer.activations is None:
                raise QueryError(f"layer {layer.name!r} keeps no activations, so its threshold is fixed",
                                 hint="SET threshold = 'default', or re-add the layer with its activations")
            thresholds = un.unit_thresholds(layer.activations, rule)
            masks = self.store.unit_masks_for(layer.activations, thresholds)
            self._unit_cache[key] = un.histograms(masks, self.store.position_signatures)
        return self._unit_cache[key]

    def unit_hist(self, u: int) -> torch.Tensor:
        indptr, sig, cnt = self.unit_histograms()
        a, b = int(indptr[u]), int(indptr[u + 1])
        return self.backend.hist_vector(sig[a:b], cnt[a:b])

    def formula_plan(self, formula: s.Formula) -> Plan:
        return self.compiler.compile(formula)

    def searcher(self) -> Callable[..., list[SearchResult]]:
        """The SEARCH implementation: the batched engine, or per-unit beam search (``SET engine = 'plain'``)."""
        plain = self.settings["engine"] == "plain" or not batched.supports(self.resolver)
        return _search_units if plain else batched.batched_search


# ---------------------------------------------------------------- handlers


def _formula(session: Session, stmt: s.FormulaStmt) -> Result:
    plan = session.formula_plan(stmt.formula)
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


def _eval(session: Session, stmt: s.Eval) -> Result:
    plan = session.formula_plan(stmt.formula)
    units = session.units(stmt.units)
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    inters, sizes = _unit_intersections(session, mask.cpu().numpy())
    rows = []
    for u in units:
        inter, m = int(inters[u]), int(sizes[u])
        rows.append({"unit": u, "formula": str(plan.formula), "iou": iou_of(inter, size, m),
                     "precision": inter / size if size else 0.0, "recall": inter / m if m else 0.0,
                     "intersection": inter, "formula_size": size, "mask_size": m})
    return Result(str(stmt), "eval", ["unit", "formula", "iou", "precision", "recall", "mask_size"], rows)


def _unit_intersections(session: Session, sig_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|M_u AND F|, |M_u|) for every unit of the layer, from the CSR histograms."""
    indptr, sig, cnt = session.unit_histograms()
    weighted = np.where(sig_mask[sig], cnt, 0) if len(sig) else np.zeros(0, np.int64)
    cums = np.concatenate([[0], np.cumsum(weighted, dtype=np.int64)])
    totals = np.concatenate([[0], np.cumsum(cnt, dtype=np.int64)])
    return cums[indptr[1:]] - cums[indptr[:-1]], totals[indptr[1:]] - totals[indptr[:-1]]


def _search(session: Session, stmt: s.Search) -> Result:
    length = stmt.length if stmt.length is not None else session.settings["length"]
    beam = stmt.beam if stmt.beam is not None else session.settings["beam"]
    for name, value in (("LENGTH", length), ("BEAM", beam)):
        if value < 1:
            raise QueryError(f"{name} must be at least 1, got {value}", needle=f"{value}")
    distinct = stmt.distinct or session.settings["distinct"]
    units, notes = _active_enough(session, stmt.units)
    results = session.searcher()(session, units, length=length, beam=beam, distinct=distinct)
    rows = [search_row(r) for r in results]
    columns = ["unit", "formula", "iou", "precision", "recall", "length", "mask_size"]
    if stmt.accuracy:
        from .text_record import accuracy_columns

        extra = accuracy_columns(session, [r["unit"] for r in rows])
        for row in rows:
            row.update(extra[row["unit"]])
        columns[3:3] = ["favours", "accuracy"]
    if len(results) < len(units):
        notes.append(f"cancelled after {len(results)} of {len(units)} units")
    return Result(str(stmt), "search", columns, rows, "; ".join(notes) or None)


def _active_enough(session: Session, selection: s.Units) -> tuple[list[int], list[str]]:
    """The units to search, less (for ``*`` on text stores) those active fewer than min_active times."""
    units = session.units(selection)
    least = session.settings["min_active"]
    if not selection.all or session.store.kind != "text" or least == 0:
        return units, []
    sizes = _unit_intersections(session, np.ones(session.store.n_signatures, dtype=bool))[1]
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


def _search_units(session: Session, units: list[int], *, length: int, beam: int,
                  distinct: bool) -> list[SearchResult]:
    """Reference path: one beam search per unit."""
    out = []
    session.progress.start(len(units), "SEARCH")
    try:
        for u in units:
            if session._cancel:
                break
            r = beam_search(session.backend, session.resolver, session.unit_hist(u), u,
                            length=length, beam=beam, distinct=distinct, cancelled=lambda: session._cancel)
            out.append(r)
            session.progress.advance(1, f"unit {u}: {r.best.formula if r.best else 'NONE'}")
    finally:
        session.progress.finish()
    return out


def _match(session: Session, stmt: s.Match) -> Result:
    plan = session.formula_plan(stmt.formula)
    top = stmt.top if stmt.top is not None else session.settings["top"]
    if top < 1:
        raise QueryError(f"TOP must be at least 1, got {top}", needle=str(top))
    backend = session.backend
    mask = backend.formula_mask(plan)
    size = backend.formula_size(mask)
    inters, sizes = _unit_intersections(session, mask.cpu().numpy())
    ious = [iou_of(int(i), size, int(m)) for i, m in zip(inters, sizes)]
    order = sorted(range(len(ious)), key=lambda u: (-ious[u], u))[:top]
    rows = [{"unit": u, "formula": str(plan.formula), "iou": ious[u],
             "precision": int(inters[u]) / size if size else 0.0,
             "recall": int(inters[u]) / int(sizes[u]) if sizes[u] else 0.0, "mask_size": int(sizes[u])}
            for u in order]
    return Result(str(stmt), "match", ["unit", "iou", "precision", "recall", "mask_size"], rows,
                  f"{plan.formula}: best {len(rows)} of {len(ious)} units")


def _let(session: Session, stmt: s.Let) -> Result:
    canonical = session.compiler.canonical(stmt.formula)
    session.lets[stmt.name] = canonical
    session.compiler._cache.clear()
    return Result(str(stmt), "let", ["name", "formula"], [{"name": stmt.name, "formula": str(canonical)}],
                  f"{stmt.name} = {canonical}")


def _set(session: Session, stmt: s.Set) -> Result:
    value = check_setting(stmt.name, stmt.value)
    if stmt.name == "layer" and value is not None and value not in session.store.layers:
        raise NameResolutionError(f"unknown layer {value!r}; layers: {', '.join(session.store.layers) or 'none'}",
                                  needle=str(stmt.value))
    session.settings[stmt.name] = value
    return Result(str(stmt), "set", ["name", "value"], [{"name": stmt.name, "value": value}],
                  f"{stmt.name} = {value}")


def _show(session: Session, stmt: s.Show) -> Result:
    store = session.store
    if stmt.what == "concepts":
        rows = [{"name": c.name, "category": c.category, "count": c.count,
                 "fraction": c.count / store.n_positions if store.n_positions else 0.0}
                for c in store.concepts if stmt.pattern is None or like(c.qualified, stmt.pattern)
                or like(c.name, stmt.pattern)]
        return Result(str(stmt), "show", ["name", "category", "count", "fraction"], rows,
                      f"{len(rows)} of {len(store.concepts)} concepts")
    if stmt.what == "categories":
        counts: dict[str, int] = {}
        for c in store.concepts:
            counts[c.category] = counts.get(c.category, 0) + 1
        rows = [{"category": k, "concepts": v} for k, v in counts.items()]
        return Result(str(stmt), "show", ["category", "concepts"], rows)
    if stmt.what == "units":
        layer = session.layer()
        sizes = _unit_intersections(session, np.ones(store.n_signatures, dtype=bool))[1]
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
        return Result(str(stmt), "show", ["name", "formula"], rows)
    rows = [{"name": k, "value": session.settings[k], "help": v.help} for k, v in SETTINGS.items()]
    return Result(str(stmt), "show", ["name", "value", "help"], rows)


def _show_unit(session: Session, unit: int | None) -> Result:
    """A unit at a glance: its mask size, threshold and best length-1..3 formulas."""
    assert unit is not None
    [u] = session.units(s.Units((unit,)))
    [r] = _search_units(session, [u], length=session.settings["length"], beam=session.settings["beam"],
                        distinct=False)
    row = search_row(r)
    layer = session.layer()
    row["layer"] = layer.name
    row["threshold"] = float(layer.thresholds[u]) if layer.thresholds is not None else None
    return Result(f"SHOW unit {unit}", "search", ["layer", "unit", "formula", "iou", "mask_size", "threshold"],
                  [row])


def store_summary(store: ConceptStore) -> dict[str, Any]:
    return {"path": str(store.path) if store.path else "(in memory)", "kind": store.kind,
            "positions": store.n_positions, "samples": store.n_samples,
            "mask_shape": "x".join(map(str, store.mask_shape)) if store.mask_shape else "-",
            "concepts": len(store.concepts), "signatures": store.n_signatures,
            "bytes": store.nbytes(),
            "layers": ", ".join(f"{n} ({l.n_units} units)" for n, l in store.layers.items()) or "-"}


def _explain(session: Session, stmt: s.Explain) -> Result:
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
    if isinstance(inner, s.Eval):
        lines += [f"for each of {len(session.units(inner.units))} units: |M & F| = hist_u[S] . t{len(plan.ops) - 1}"
                  " (sparse CSR histogram), IoU = |M&F| / (|M| + |F| - |M&F|)"]
    elif isinstance(inner, s.Match):
        lines += [f"|M_u & F| for all {session.layer().n_units} units from CSR histograms; sort by IoU, keep TOP"]
    elif isinstance(inner, s.Search):
        units = session.units(inner.units)
        length = inner.length or session.settings["length"]
        beam = inner.beam or session.settings["beam"]
        lines += [f"beam search over {len(units)} units, LENGTH {length}, BEAM {beam}"
                  + (" DISTINCT" if inner.distinct else ""),
                  f"  step 0: |M & c| = hist[1, S] @ concepts[S, {k}]  (float64, exact)",
                  f"  steps 1..{length - 1}: [2*{beam}, S] weighted beam masks @ concepts[S, {k}] -> "
                  f"{3 * beam * k:,} candidates scored in closed form (OR, AND, AND NOT)",
                  f"  keep the best {beam} (stable sort, old beam first)"]
    elif formula is None:
        lines += [f"{inner}: no tensor work"]
    rows = [{"plan": line} for line in header + lines]
    return Result(str(stmt), "explain", ["plan"], rows)


_HANDLERS: dict[type, Callable[[Session, Any], Result]] = {
    s.FormulaStmt: _formula, s.Eval: _eval, s.Search: _search, s.Match: _match, s.Let: _let,
    s.Set: _set, s.Show: _show, s.Explain: _explain,
}


def like(text: str, pattern: str) -> bool:
    """SQL LIKE, case-insensitive: ``%`` any run, ``_`` one character."""
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, flags=re.IGNORECASE | re.DOTALL) is not None


def _neighbors_provider(store: ConceptStore):
    """NEIGHBORS support, when the store carries word vectors (text stores)."""
    try:
        from .text import neighbors_for  # noqa: WPS433 - optional, installed with text stores
    except ImportError:
        return None
    return neighbors_for(store)


__all__ = ["Result", "Session", "connect", "like"]
