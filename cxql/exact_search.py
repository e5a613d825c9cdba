"""The exact searcher: SEARCH ... EXACT's units through :mod:`cxql.exact`, behind :mod:`cxql.searcher`.

Kept apart from the algorithm so that :mod:`cxql.exact` stays a pure
function of signature counts (tested against enumeration), and apart from
the beam searchers so the engines can change independently. It is the
registered searcher ``exact``, chosen by the EXACT keyword.

Metrics. The branch and bound proves the best IoU. A metric that is an
increasing function of IoU (:attr:`cxql.metrics.Metric.of_iou`: IoU itself,
and F1 = 2 IoU / (1 + IoU)) has the same best formula with the same ties,
and the IoU bound maps through that function to a bound on it. Precision
and recall rank formulas differently and have no bound here yet: EXACT
refuses them with a clear error (beam SEARCH takes them).

Budget. ``WITHIN t s`` is for the whole statement: each unit may use the
time left divided by the units left, so time a quick unit does not use
passes on to the next. A unit whose time is up (or every unit after a
Ctrl-C, the statement's cancel token) answers the seed beam's formula with the
bound of what was left unexplored, and ``optimal`` false unless that bound
already proves it. The search runs in numpy on the CPU whatever ``SET
device`` says: its work is a few hundred small products per unit, which a
GPU would not speed up; ``SET workers`` spreads the units over forked
processes instead (:mod:`cxql.exact_pool`; the rows do not change).
"""

from __future__ import annotations

import time
import weakref
import math
from typing import TYPE_CHECKING

import numpy as np

from . import syntax as s
from .errors import QueryError
from . import exact_pool
from .exact import Answer, Key, Space, Unit, relaxed_bound, search_unit
from .exact_space import CACHE_BYTES, PAIR_CELLS
from .memory import format_size
from .metrics import Metric
from .search import combine
from .searcher import Hists, Scored, SearchContext, SearchResult, unit_note
from .store import ConceptStore

if TYPE_CHECKING:
    from .context import StatementContext
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


def check_exact(stmt: s.Search, length: int, n_concepts: int, metric: Metric) -> None:
    """One clear error for each way an EXACT search cannot be asked."""
    if not stmt.exact:
        raise QueryError("WITHIN sets the time budget of SEARCH ... EXACT; add EXACT", needle="WITHIN")
    if stmt.beam is not None:
        raise QueryError("EXACT and BEAM do not combine: EXACT proves the best formula, BEAM limits a greedy "
                         "search; drop one of them", needle="BEAM")
    if length < 1:
        raise QueryError(f"LENGTH must be at least 1, got {length}", needle=f"LENGTH {length}")
    if length > n_concepts:
        raise QueryError(f"LENGTH {length} is above the {n_concepts} concepts of this store: EXACT formulas use "
                         f"each concept at most once", needle=f"LENGTH {length}")
    if stmt.within is not None and not stmt.within > 0:
        raise QueryError(f"WITHIN must be a positive number of seconds, got {stmt.within:g}", needle="WITHIN")
    if metric.of_iou is None:
        raise QueryError(f"EXACT proves the best IoU, and of metrics that rank formulas as IoU does (iou, f1); "
                         f"it has no bound for {metric.name!r} yet", needle="EXACT",
                         hint="SET metric = 'iou' or 'f1', or drop EXACT for a beam SEARCH by " + metric.name)


def explain_lines(session: StatementContext, stmt: s.Search) -> list[str]:
    """EXPLAIN for SEARCH ... EXACT: the engine, the space and the bound, after the same checks as running it."""
    length = stmt.length if stmt.length is not None else session.settings["length"]
    metric = session.metric
    check_exact(stmt, length, len(session.store.concepts), metric)
    units = session.units(stmt.units)
    space = space_of(session.store)
    k = len(space.candidates)
    estimate = ExactSearcher().estimate_bytes(session.search_context(), units, 0)
    budget = f", WITHIN {stmt.within:g} s for all units" if stmt.within is not None else ", no time limit"
    return [f"exact search (branch and bound, cxql.exact) over {len(units)} units, LENGTH {length}{budget}"
            " -- numpy on the CPU whatever SET device says",
            f"  space: left-deep formulas over distinct concepts, {k:,} non-empty concepts, at most {length} leaves",
            "  seed: a greedy beam of width 5",
            "  every two-leaf formula scored at once from pair counts (|c & d| shared by all units);",
            "  the two-leaf prefixes screened in one batch (cxql.exact_pairs: dominance, cut and two-leaf bounds)",
            "  then best-first on an admissible bound over the unit's signatures",
            f"  per expanded prefix G: |G & c| = bincount over G's signature-concept pairs ({len(space.sig):,}), "
            f"|M & G & c| = hist_u[E] @ member[E, {k:,}]; {3 * k:,} children in closed form",
            f"  score: {metric.label} = {metric.formula}, ranked as IoU (the bound is IoU's, mapped)"
            if metric.name != "iou" else "  score: IoU = |M&F| / (|M| + |F| - |M&F|)",
            f"  rows add optimal (proven) and bound (>= every formula's {metric.label}; = {metric.name} when optimal)",
            f"  memory: about {format_size(estimate)} (memory_limit {format_size(session.settings['memory_limit'])})",
            *([f"  note: at LENGTH {length} a proof can take hours (the space grows as {k:,}^{length}); "
               "add WITHIN t s to cap it and read the gap from bound"] if length >= 4 and stmt.within is None else [])]


def units_of(hists: Hists, space: Space, units: list[int]) -> list[Unit]:
    indptr, sig, cnt = hists
    return [Unit(space, np.asarray(sig[indptr[u]:indptr[u + 1]], np.int64),
                 np.asarray(cnt[indptr[u]:indptr[u + 1]], np.int64)) for u in units]


class ExactSearcher:
    """Branch and bound per unit (:mod:`cxql.exact`); results carry ``optimal`` and ``bound``.

    ``ctx.within`` is the whole statement's time budget (module docstring).
    ``length`` is the most leaves; ``beam`` and ``distinct`` do not apply.
    """

    name = "exact"

    def supports(self, ctx: SearchContext) -> bool:
        return ctx.metric.of_iou is not None

    def estimate_bytes(self, ctx: SearchContext, units: list[int], beam: int) -> int:
        """The (signature, concept) pair table (three int64/float64 arrays), the |G AND c| cache, the store's
        |c AND d| table when it is kept whole, and a unit's two-leaf tables (a few int64 [R, K'] arrays, R
        the first leaves a unit can start with, taken as up to 2,048); all but the first once per worker."""
        space = space_of(ctx.backend.store)
        k = len(space.candidates)
        whole = 8 * k * k if k * k <= PAIR_CELLS else 0
        cache = min(CACHE_BYTES, 8 * k * 4 * k)  # |G AND c| rows of the prefixes expanded, up to its cap
        workers = exact_pool.workers_for(ctx.workers, len(units))  # each its own caches and tables
        return 24 * len(space.sig) + workers * (cache + whole + 6 * 8 * k * min(k, 2048))

    def search(self, ctx: SearchContext, units: list[int], *, length: int, beam: int = 0,
               distinct: bool = False) -> list[SearchResult]:
        space = space_of(ctx.backend.store)
        names = [s.Concept(ctx.resolver.display_name(i)) for i in range(space.n_concepts)]
        metric, n = ctx.metric, space.n_positions
        assert metric.of_iou is not None, "check_exact refuses metrics without of_iou"
        end = None if ctx.within is None else time.monotonic() + ctx.within
        out: list[SearchResult | None] = [None] * len(units)

        def unit_of(i: int) -> Unit:
            return units_of(ctx.hists, space, [units[i]])[0]

        def land(i: int, a: Answer) -> None:
            best = None
            if a.key:
                best = Scored(formula_of(a.key, names), a.inter, a.size, float(metric(a.inter, a.size, a.mask_size, n)))
            score = best.score if best else 0.0
            out[i] = SearchResult(units[i], a.mask_size, best, [best] if best else [], {},
                                  a.optimal, score if a.optimal else max(score, bound_in(metric, a.bound)))
            ctx.progress.advance(1, unit_note(out[i]))

        workers = exact_pool.workers_for(ctx.workers, len(units))
        ctx.progress.start(len(units), "SEARCH EXACT")
        try:
            if workers > 1:
                exact_pool.run(space, unit_of, len(units), length, end, ctx.cancel, workers, land)
            else:
                for i in range(len(units)):
                    now = time.monotonic()
                    deadline = None if end is None else now + max(0.0, end - now) / (len(units) - i)
                    land(i, search_unit(space, unit_of(i), length, deadline=deadline, cancelled=ctx.cancel))
        finally:
            ctx.progress.finish()
        return [r for r in out if r is not None]

    def describe(self, ctx: SearchContext, length: int, beam: int) -> list[str]:
        return ["exact engine: branch and bound per unit (cxql.exact), numpy on the CPU, units over SET workers"]


def bound_in(metric: Metric, iou_bound: float) -> float:
    """An IoU bound as a bound on ``metric`` (an increasing function of IoU); a map that is not the
    identity rounds twice, so the result moves up two ulps to stay above every formula's value."""
    assert metric.of_iou is not None
    mapped = float(metric.of_iou(iou_bound))
    if mapped != iou_bound:
        mapped = min(1.0, math.nextafter(math.nextafter(mapped, 2.0), 2.0))
    return mapped


def exact_notes(results: list[SearchResult]) -> list[str]:
    """How many units are proven optimal, and the largest gap of the others."""
    proven = sum(bool(r.optimal) for r in results)
    notes = [f"{proven} of {len(results)} units proven optimal"]
    if proven < len(results):
        gap = max(r.bound - (r.best.score if r.best else 0.0) for r in results if r.bound is not None)
        notes.append(f"the others carry a bound (largest gap {gap:.4f})")
    return notes


def formula_of(key: Key, names: list[s.Concept]) -> s.Formula:
    formula: s.Formula = names[key[0]]
    for i in range(1, len(key), 2):
        formula = combine(formula, names[key[i]], key[i + 1])
    return formula


def root_bounds(ctx: SearchContext, units: list[int], length: int) -> list[float] | None:
    """For beam rows: a proven upper bound on every formula of the EXACT space (the search's root bound),
    in the context's metric; None for a metric that has no bound (see the module docstring)."""
    of_iou = ctx.metric.of_iou
    if of_iou is None:
        return None
    space = space_of(ctx.backend.store)
    out = []
    for unit in units_of(ctx.hists, space, units):
        if unit.size == 0 or not len(space.candidates):
            out.append(0.0)
            continue
        a, b = relaxed_bound(unit, min(length, len(space.candidates)), 0, 1)
        out.append(bound_in(ctx.metric, min(1.0, a / b)))
    return out
