"""The batched engine behind the searcher interface (:mod:`cxql.searcher`): chunking for
progress and cancel, the memory estimate, EXPLAIN's lines.

The search itself (the sparse products, the vectorised beam) is :mod:`cxql.batched`;
this module only adapts it to a session's :class:`~cxql.searcher.SearchContext`.
"""

from __future__ import annotations

from .batched import BatchedSearch, supports, unit_costs
from .search import SearchResult, unit_note
from .searcher import SearchContext


#: A SEARCH from a session runs its units in at least this many chunks (of at least
#: :data:`MIN_CHUNK_UNITS`), so Ctrl-C keeps the units of the chunks that finished and the
#: progress bar moves as units finish; a chunk's units finish together, at its last step.
SLICES = 4
MIN_CHUNK_UNITS = 4


def responsive_chunk(n_units: int) -> int:
    """Units per chunk for a cancellable SEARCH of ``n_units`` (the memory bound may cut it further)."""
    return max(MIN_CHUNK_UNITS, -(-n_units // SLICES))


class BatchedSearcher:
    """The batched engine behind the searcher interface (:mod:`cxql.searcher`), the default.

    Units run chunk by chunk; the bar counts finished units (a chunk's units at
    its end; each step only adds a note), and a cancel drops only the chunk in
    progress: the units finished before stay.
    """

    name = "batched"

    def supports(self, ctx: SearchContext) -> bool:
        return supports(ctx.resolver)

    def estimate_bytes(self, ctx: SearchContext, units: list[int], beam: int) -> int:
        return estimate_bytes(ctx, units, beam) + 400 * beam * len(units)

    def search(self, ctx: SearchContext, units: list[int], *, length: int, beam: int,
               distinct: bool) -> list[SearchResult]:
        search = BatchedSearch(ctx.backend, ctx.resolver, ctx.hists, length=length, beam=beam, distinct=distinct,
                               unit_chunk=responsive_chunk(len(units)), budget=chunk_budget(ctx), metric=ctx.metric)
        out: list[SearchResult] = []
        ctx.progress.start(len(units), "SEARCH")
        try:
            for chunk in search.chunks(units):
                if ctx.cancel.cancelled:
                    break
                done = search.run(chunk, lambda note: ctx.progress.advance(0, note), ctx.cancel)
                if done is None:
                    break
                out.extend(done)
                for r in done:  # each unit's answer as it lands, for live displays
                    ctx.progress.advance(1, unit_note(r))
        finally:
            ctx.progress.finish()
        return out

    def describe(self, ctx: SearchContext, length: int, beam: int) -> list[str]:
        k = ctx.backend.n_concepts
        return ["batched engine, units in chunks under 16 x chunk_mb of state",
                f"  step 0: |M_u & c| for all units = sparse hist[U*{k}, E] @ ones[E]  (E = unit-signature entries)",
                f"  steps 1..{length - 1}: |F & c| = sparse concepts^T[{k}, S] @ new beam masks[S, R] (R distinct "
                f"formulas, shared across units); |M_u & F & c| = sparse hist[U*{k}, E] @ beam masks[E, {beam}]",
                f"  {3 * beam * k:,} candidates per unit in closed form, scored by {ctx.metric.label} = "
                f"{ctx.metric.formula}; stable top-{beam} per unit "
                "(float32 where sums stay below 2**24, else float64; exact)",
                "  SET engine = 'plain' runs the per-unit reference path"]


def chunk_budget(ctx: SearchContext) -> int:
    """Bytes of state per chunk of units: 16 x chunk_mb, and at most half of ``SET memory_limit``."""
    return min(16 * ctx.backend.chunk_bytes, ctx.memory_limit // 2)


def estimate_bytes(ctx: SearchContext, units: list[int], beam: int) -> int:
    """Peak bytes of a batched SEARCH: the largest chunk's state plus the product blocks.

    The chunk formula tracks the state to within a few percent at large
    beams (demo store, BEAM 543,036: 12.06 GB estimated, 12.0 GB measured),
    so the estimate adds half again for the allocator and temporaries.
    """
    if not units:
        return 0
    costs = 1.5 * unit_costs(ctx.backend, ctx.hists, units, beam)
    peak = min(float(costs.sum()), max(float(chunk_budget(ctx)), float(costs.max())))
    blocks = 4 * min(ctx.backend.chunk_bytes, 8 * ctx.n_signatures * beam * len(units))
    return int(peak) + blocks
