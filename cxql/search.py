"""Beam search for a unit's best formula (SPEC section 3, after compexp).

For a unit mask M and a formula F already in the beam, every candidate
``F OR c``, ``F AND c``, ``F AND NOT c`` has its counts in closed form from
|F AND c| and |M AND F AND c|, plus |c|, |M AND c|, |F|, |M AND F| known in
advance::

    OR:      |G| = |F| + |c| - |F&c|     |M&G| = |M&F| + |M&c| - |M&F&c|
    AND:     |G| = |F&c|                 |M&G| = |M&F&c|
    AND NOT: |G| = |F| - |F&c|           |M&G| = |M&F| - |M&F&c|

so one step scores every beam entry against every concept with a single
product of [2B, S] weighted beam masks by the [S, K] concept table
(:meth:`Backend.concept_counts`). Only the B winners ever get a mask.

Order and ties (deterministic, as compexp): concepts are scored in store
order; candidates are the old beam (in beam order) followed by, for each beam
entry in order and each non-empty concept in store order, ``(f OR c)``,
``(f AND c)``, ``(f AND NOT c)``. A stable sort by IoU, descending, keeps the
earlier candidate on ties. Duplicates keep their own slots unless DISTINCT.

The score is the context's metric (:mod:`cxql.metrics`, IoU by default),
computed from the same exact counts, so any count metric searches the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import memory
from . import syntax as s
from .backend import Backend
from .compiler import Resolver
from .metrics import IOU, Metric
from .searcher import Scored, SearchContext, SearchResult, unit_note


def candidate_counts(f_size: torch.Tensor, f_inter: torch.Tensor, f_c: torch.Tensor, m_f_c: torch.Tensor,
                     c_size: torch.Tensor, m_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|G|, |M AND G|), each [..., 3], for G = F OR c, F AND c, F AND NOT c (the closed form above).

    All arguments broadcast against each other: |F|, |M&F| per beam entry, |F&c|,
    |M&F&c| per entry and concept, |c|, |M&c| per concept.
    """
    size = torch.stack(torch.broadcast_tensors(f_size + c_size - f_c, f_c, f_size - f_c), dim=-1)
    inter = torch.stack(torch.broadcast_tensors(f_inter + m_c - m_f_c, m_f_c, f_inter - m_f_c), dim=-1)
    return size, inter


@dataclass
class _Entry:
    scored: Scored
    mask: torch.Tensor  # bool [S]


def combine(f: s.Formula, c: s.Concept, op: int) -> s.Formula:
    """The candidate ``f OP c`` for op 0, 1, 2 = OR, AND, AND NOT."""
    if op == 0:
        return s.Or(f, c)
    if op == 1:
        return s.And(f, c)
    return s.And(f, s.Not(c))


def beam_search(backend: Backend, resolver: Resolver, hist: torch.Tensor, unit: int = 0, *,
                length: int = 3, beam: int = 5, distinct: bool = False,
                cancelled: Callable[[], bool] | None = None, metric: Metric = IOU) -> SearchResult:
    """The best formula of at most ``length`` leaves for the unit whose signature histogram is ``hist``."""
    mask_size = int(hist.sum().item())
    n = backend.store.n_positions
    sizes = backend.concept_sizes
    m_and_c = backend.concept_counts(hist[None, :])[0]
    single = metric(m_and_c, sizes, mask_size, n)
    names = [s.Concept(resolver.display_name(i)) for i in range(backend.n_concepts)]

    result = SearchResult(unit, mask_size, None, [])
    order = np.argsort(-single.cpu().numpy(), kind="stable")
    entries: list[_Entry] = []
    for k in order:
        if len(entries) == beam or single[k] <= 0:
            break
        scored = Scored(names[k], int(m_and_c[k]), int(sizes[k]), float(single[k]))
        entries.append(_Entry(scored, backend.column(int(k))))
    if not entries:
        return result
    result.by_length[1] = entries[0].scored

    nonempty = torch.nonzero(sizes > 0).flatten()
    cs, mc = sizes[nonempty], m_and_c[nonempty]
    for _ in range(length - 1):
        if cancelled and cancelled():
            break
        masks = torch.stack([e.mask for e in entries])                     # [B, S]
        weights = torch.stack([backend.counts, hist])                        # [2, S]
        counts = backend.concept_counts(
            lambda a, b: (masks[:, None, a:b] * weights[None, :, a:b]).transpose(0, 1).reshape(-1, b - a))
        n_b = len(entries)
        f_c, m_f_c = counts[:n_b, nonempty], counts[n_b:, nonempty]           # [B, K']
        f_size = torch.tensor([float(e.scored.size) for e in entries], dtype=torch.float64,
                              device=backend.device)[:, None]
        f_inter = torch.tensor([float(e.scored.inter) for e in entries], dtype=torch.float64,
                               device=backend.device)[:, None]
        new_size, new_inter = candidate_counts(f_size, f_inter, f_c, m_f_c, cs, mc)        # [B, K', 3]
        new_score = metric(new_inter, new_size, mask_size, n)
        old_score = torch.tensor([e.scored.score for e in entries], dtype=torch.float64)
        all_score = np.concatenate([old_score.numpy(), new_score.flatten().cpu().numpy()])
        _note_lengths(result, entries, new_score, new_inter, new_size, nonempty, names)

        chosen: list[_Entry] = []
        seen: set[s.Formula] = set()
        flat_inter = new_inter.flatten().cpu().numpy()
        flat_size = new_size.flatten().cpu().numpy()
        for idx in np.argsort(-all_score, kind="stable"):
            if idx < n_b:
                entry = entries[idx]
            else:
                j = idx - n_b
                b, rest = divmod(j, len(nonempty) * 3)
                ci, op = divmod(rest, 3)
                k = int(nonempty[ci])
                parent = entries[b]
                formula = combine(parent.scored.formula, names[k], op)
                if distinct and formula in seen:
                    continue
                col = backend.column(k)
                mask = (parent.mask | col, parent.mask & col, parent.mask & ~col)[op]
                entry = _Entry(Scored(formula, int(flat_inter[j]), int(flat_size[j]), float(all_score[idx])), mask)
            if distinct and entry.scored.formula in seen:
                continue
            seen.add(entry.scored.formula)
            chosen.append(entry)
            if len(chosen) == beam:
                break
        entries = chosen

    result.beam = [e.scored for e in entries]
    result.best = result.beam[0]
    return result


def _note_lengths(result: SearchResult, entries: list[_Entry], new_score: torch.Tensor, new_inter: torch.Tensor,
                  new_size: torch.Tensor, nonempty: torch.Tensor, names: list[s.Concept]) -> None:
    """Keep the best formula seen at each length (ties: the earliest generated)."""
    lengths = torch.tensor([e.scored.length + 1 for e in entries])
    for n in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == n).flatten()
        block = new_score[rows.to(new_score.device)].flatten()
        j = int(torch.argmax(block).item())  # argmax returns the first maximum
        if n in result.by_length and result.by_length[n].score >= float(block[j]):
            continue
        b_local, rest = divmod(j, new_score.shape[1] * 3)
        ci, op = divmod(rest, 3)
        b = int(rows[b_local])
        formula = combine(entries[b].scored.formula, names[int(nonempty[ci])], op)
        result.by_length[n] = Scored(formula, int(new_inter[b, ci, op]), int(new_size[b, ci, op]), float(block[j]))


class PlainSearcher:
    """The reference searcher: one :func:`beam_search` per unit (``SET engine = 'plain'``).

    A cancel stops within the current unit's steps and drops that unit: SEARCH
    returns only complete searches, like the batched engine.
    """

    name = "plain"

    def supports(self, ctx: SearchContext) -> bool:
        return True

    def estimate_bytes(self, ctx: SearchContext, units: list[int], beam: int) -> int:
        backend = ctx.backend
        nonempty = int((backend.concept_sizes > 0).sum())
        return memory.plain_search_bytes(beam, ctx.n_signatures, backend.n_concepts, nonempty,
                                         backend.chunk_rows, len(units))

    def search(self, ctx: SearchContext, units: list[int], *, length: int, beam: int,
               distinct: bool) -> list[SearchResult]:
        out: list[SearchResult] = []
        ctx.progress.start(len(units), "SEARCH")
        try:
            for u in units:
                if ctx.cancel.cancelled:
                    break
                r = beam_search(ctx.backend, ctx.resolver, ctx.unit_hist(u), u, length=length, beam=beam,
                                distinct=distinct, cancelled=ctx.cancel, metric=ctx.metric)
                if ctx.cancel.cancelled:
                    break
                out.append(r)
                ctx.progress.advance(1, unit_note(r))
        finally:
            ctx.progress.finish()
        return out

    def describe(self, ctx: SearchContext, length: int, beam: int) -> list[str]:
        k = ctx.backend.n_concepts
        return ["plain engine, one unit at a time",
                f"  step 0: |M & c| = hist[1, S] @ concepts[S, {k}]  (float64, exact)",
                f"  steps 1..{length - 1}: [2*{beam}, S] weighted beam masks @ concepts[S, {k}] -> "
                f"{3 * beam * k:,} candidates scored in closed form (OR, AND, AND NOT)",
                f"  score: {ctx.metric.label} = {ctx.metric.formula}; keep the best {beam} "
                "(stable sort, old beam first)"]
