"""Batched SEARCH: the beam searches of many units at once, on CPU or GPU.

Technique. Beam search (SPEC section 3, :mod:`cxql.search`) scores every
candidate ``F OR c``, ``F AND c``, ``F AND NOT c`` in closed form from
|F AND c| and |M AND F AND c|. This module gets those counts for all units of
a chunk, all their beam entries and all concepts from two sparse products per
step, the same code on CPU (MKL) and GPU (cuSPARSE). A probe position holds a
handful of concepts, so the table is over 99 % zeros and a sparse product
costs its nonzeros, not S * K (dense BLAS was 8x slower on the 2-core CPU):

* |F AND c| does not depend on the unit. Beam formulas are deduplicated
  across units (keyed by leaves and operators) into a table of masks over
  the S signatures, and each new formula is scored once, counts-weighted
  ``table^T [K, S] @ F [S, R]`` (:meth:`Backend.overlaps`); a formula carried
  over from the previous beam keeps its row.
* |M_u AND F AND c| only involves the signatures a unit fires on: the units'
  histograms are one sparse matrix [U * K', E] over their E (unit, signature)
  entries, times the beam masks read at those entries [E, B].

Selection is vectorised: a stable top-b per unit (ties to the earlier
candidate, old beam first) from ``topk`` and a running count of ties. DISTINCT
needs no scan: in a beam without duplicates, a new candidate ``(P op c)`` can
only repeat an old entry with the same parent P, op and c, so those
candidates are masked out before selecting.

Exactness. Counts are integers. Products run in float32 only where every
partial sum is an integer below 2**24 (table chunks of fewer than 2**24
positions, with weights at most the signature's count; units with |M| below
2**24), in float64 elsewhere, and are summed in float64 (exact below 2**53).
Scores (the context's metric, :mod:`cxql.metrics`) are float64 divisions
of the same integers the per-unit path divides, so they are the same floats, and the results are the :class:`SearchResult`
objects of :func:`cxql.search.beam_search`.

Memory. Units run in chunks whose estimated state stays under
``16 * chunk_bytes`` (1 GiB at the default chunk_mb = 64), at least one unit:
per unit ``B * S / 4`` bytes of formula masks (old and new table, bit-packed),
``200 * B * K'`` for the candidate scores [B, K', 3] and their temporaries,
and ``(16 q + 8 B + 40)`` per histogram entry (q concepts per signature).
Product operands are built in blocks under ``chunk_bytes``, and the sparse
table takes 12 bytes per nonzero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Union

import numpy as np
import torch

from . import syntax as s
from .backend import Backend, read_bits, sparse_csr, unpack_columns
from .compiler import Resolver
from .metrics import IOU, Metric
from .ranking import top_stable
from .search import Scored, SearchResult, candidate_counts, combine
from .searcher import Hists

Key = Union[int, tuple]  # a concept index, or (parent key, op, concept index); op 0 OR, 1 AND, 2 AND NOT
LOAD, COPY = 3, 4         # table ops besides OR, AND, AND NOT: a concept's column; an old column
RANK = {COPY: 0, LOAD: 1, 0: 2, 1: 3, 2: 4}  # table column order: carried formulas first


def supports(resolver: Resolver) -> bool:
    """Formulas are keyed by concept index here, which needs every display name to be unique."""
    names = [resolver.display_name(i) for i in range(len(resolver.concepts))]
    return len(set(names)) == len(names)


def unit_costs(backend: Backend, hists: Hists, units: list[int], beam: int) -> np.ndarray:
    """float64 [len(units)]: each unit's bytes of search state (the formula in the module docstring)."""
    n_sig = backend.bits.shape[0]
    per_entry = 16 * len(backend.concept_pairs[0]) / max(1, n_sig) + 8 * beam + 40
    entries = np.diff(np.asarray(hists[0], dtype=np.int64))[np.asarray(units, dtype=np.int64)]
    nonempty = max(1, int((backend.concept_sizes > 0).sum()))
    return beam * n_sig / 4 + 200.0 * beam * nonempty + per_entry * entries.astype(np.float64)


def build_table(old: torch.Tensor | None, concepts: torch.Tensor, op: list[int], src: torch.Tensor,
                k: torch.Tensor, block: int) -> torch.Tensor:
    """uint8 [n, ceil(S/8)]: row j is op[j] (OR, AND, AND NOT, LOAD, COPY) of old[src[j]] and concepts[k[j]]."""
    out = torch.empty(len(op), concepts.shape[1], dtype=torch.uint8, device=concepts.device)
    for a, b in _runs(op, block):
        if op[a] == COPY:
            out[a:b] = old[src[a:b]]
            continue
        col = concepts[k[a:b]]
        if op[a] == LOAD:
            out[a:b] = col
            continue
        par = old[src[a:b]]
        out[a:b] = par | col if op[a] == 0 else par & col if op[a] == 1 else par & ~col
    return out


def _runs(values: list[int], block: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of the runs of equal values, split every ``block`` items."""
    a = 0
    for b in range(1, len(values) + 1):
        if b == len(values) or values[b] != values[a] or b - a == block:
            yield a, b
            a = b


@dataclass
class _Units:
    """One chunk's units: sizes and histograms, as a sparse matrix over their (unit, signature) entries."""

    sizes: torch.Tensor   # float64 [U]: |M_u|
    sig: torch.Tensor     # long [E]: each entry's signature
    unit: torch.Tensor    # long [E]: each entry's unit
    hist: torch.Tensor    # sparse CSR [U * K', E]: hist_u(sig[e]) where concept c is in sig[e]

    def counts(self, marks: torch.Tensor) -> torch.Tensor:
        """float64 [U, B, K']: sum over entries of hist * marks [E, B] (0/1), per unit and concept."""
        out = torch.sparse.mm(self.hist, marks.to(self.hist.dtype)).to(torch.float64)
        return out.view(len(self.sizes), -1, marks.shape[1]).permute(0, 2, 1)


@dataclass
class _Beam:
    """The beams of one chunk's active units, padded to B entries (pads: fid -1, iou -1)."""

    keys: list[list[Key]]
    lengths: np.ndarray   # int [U, B]
    iou: torch.Tensor     # float64 [U, B]
    inter: torch.Tensor   # float64 [U, B]: |M & F|
    size: torch.Tensor    # float64 [U, B]: |F|
    fid: torch.Tensor     # long [U, B]: the entry's column in ``table``
    table: torch.Tensor   # uint8 [R, ceil(S/8)]: each distinct formula's signatures, bit-packed
    fc: torch.Tensor      # float64 [R, K']: |F & c|, known for the first ``known`` rows
    known: int


class BatchedSearch:
    """Beam search for chunks of units, equal to :func:`cxql.search.beam_search` unit by unit."""

    def __init__(self, backend: Backend, resolver: Resolver, hists: Hists, *, length: int, beam: int,
                 distinct: bool, unit_chunk: int | None = None, budget: int | None = None,
                 metric: Metric = IOU) -> None:
        self.backend, self.hists, self.unit_chunk, self.metric = backend, hists, unit_chunk, metric
        self.n_positions = backend.store.n_positions
        self.budget = 16 * backend.chunk_bytes if budget is None else budget
        self.length, self.beam, self.distinct = length, beam, distinct
        self.names = [s.Concept(resolver.display_name(i)) for i in range(backend.n_concepts)]
        self.nonempty = torch.nonzero(backend.concept_sizes > 0).flatten()          # [K']
        self.nonempty_np = self.nonempty.cpu().numpy()
        self.slot_np = np.full(backend.n_concepts, -1)
        self.slot_np[self.nonempty_np] = np.arange(len(self.nonempty_np))
        self.slot = torch.as_tensor(self.slot_np, device=backend.device)
        self.cs = backend.concept_sizes[self.nonempty]
        sig, self.concepts = backend.concept_pairs                                   # signature-major
        self.crow = torch.cat([sig.new_zeros(1), torch.cumsum(torch.bincount(sig, minlength=backend.bits.shape[0]), 0)])
        self._formulas: dict[Key, s.Formula] = {}

    def chunks(self, units: list[int]) -> Iterator[list[int]]:
        """Consecutive runs of units whose state fits the memory bound (module docstring)."""
        costs = unit_costs(self.backend, self.hists, units, self.beam)
        budget, chunk, used = self.budget, [], 0.0
        for u, cost in zip(units, costs.tolist()):
            if chunk and (used + cost > budget or len(chunk) == self.unit_chunk):
                yield chunk
                chunk, used = [], 0.0
            chunk.append(u)
            used += cost
        if chunk:
            yield chunk

    # ------------------------------------------------------------ one chunk

    def run(self, units: list[int], note: Callable[[str], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[SearchResult] | None:
        """Results for ``units`` in order, or None when cancelled before the end; ``note`` hears each step."""
        chunk = self._units(units)
        results = [SearchResult(u, int(m), None, []) for u, m in zip(units, chunk.sizes.cpu().tolist())]
        if not len(self.nonempty):  # no concept covers anything: every answer is NONE
            return results
        m_c, beam = self._start(chunk)
        act = torch.nonzero(beam.fid[:, 0] >= 0).flatten()
        if len(act) < len(units):
            chunk = self._units([units[i] for i in act.tolist()])
            beam, m_c = self._subset(beam, act), m_c[act]
        by_length = [{1: row[0]} for row in self._scored(beam)]
        for step in range(1, self.length if len(act) else 1):
            if cancelled and cancelled():
                return None
            beam = self._step(beam, chunk, m_c, by_length)
            if note:
                note(f"units {units[0]}..{units[-1]}: length {step + 1}")
        for i, (r, entries) in enumerate(zip(act.tolist(), self._scored(beam))):
            results[r] = SearchResult(units[r], results[r].mask_size, entries[0], entries, by_length[i])
        return results

    def _units(self, units: list[int]) -> _Units:
        indptr, sig, cnt = self.hists
        dev, k = self.backend.device, len(self.nonempty)
        take = np.concatenate([np.arange(indptr[u], indptr[u + 1]) for u in units] + [np.zeros(0, np.int64)])
        unit = torch.as_tensor(np.repeat(np.arange(len(units)), np.diff(indptr)[units]), device=dev)
        entry_sig = torch.as_tensor(np.asarray(sig[take], np.int64), device=dev)
        hist = torch.as_tensor(np.asarray(cnt[take], np.float64), device=dev)
        sizes = torch.zeros(len(units), dtype=torch.float64, device=dev).index_add_(0, unit, hist)
        first, deg = self.crow[entry_sig], self.crow[entry_sig + 1] - self.crow[entry_sig]
        entry = torch.repeat_interleave(torch.arange(len(take), device=dev), deg)      # one per (entry, concept)
        nth = torch.arange(len(entry), device=dev) - torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        rows = unit[entry] * k + self.slot[self.concepts[first[entry] + nth]]
        dtype = torch.float64 if len(units) and float(sizes.max()) >= self.backend.exact_limit else torch.float32
        return _Units(sizes, entry_sig, unit, sparse_csr(rows, entry, hist[entry].to(dtype), (len(units) * k, len(take))))

    def _start(self, chunk: _Units) -> tuple[torch.Tensor, _Beam]:
        """|M & c| [U, K'] and the first beam: the best concepts alone with IoU > 0."""
        m_c = chunk.counts(torch.ones(len(chunk.sig), 1, device=chunk.sig.device))[:, 0]
        single = self.metric(m_c, self.cs, chunk.sizes[:, None], self.n_positions)                             # [U, K']
        pick = top_stable([torch.where(single > 0, single, torch.full_like(single, -1.0))], self.beam)
        safe = pick.clamp(min=0)
        values = torch.stack([single.gather(1, safe), m_c.gather(1, safe), self.cs[safe]])
        concept = [[int(self.nonempty_np[c]) for c in row if c >= 0] for row in pick.cpu().tolist()]
        sources = [[(k, 1, (LOAD, -1, k)) for k in row] for row in concept]
        return m_c, self._new_beam(None, sources, torch.where(pick >= 0, values, -1.0))

    # ------------------------------------------------------------ one step

    def _step(self, beam: _Beam, chunk: _Units, m_c: torch.Tensor, by_length: list[dict[int, Scored]]) -> _Beam:
        self._fill_fc(beam)
        fid = beam.fid[chunk.unit]                                                      # [E, B]
        marks = read_bits(beam.table, fid.clamp(min=0), chunk.sig) & (fid >= 0)
        size, inter = candidate_counts(beam.size[..., None], beam.inter[..., None], beam.fc[beam.fid.clamp(min=0)],
                                       chunk.counts(marks), self.cs, m_c[:, None, :])
        iou = self.metric(inter, size, chunk.sizes[:, None, None, None], self.n_positions)                     # [U, B, K', 3]
        iou[beam.fid < 0] = -1.0
        self._note_lengths(beam, iou, inter, size, by_length)
        new = iou.flatten(1)
        if self.distinct:
            self._mask_repeats(beam, new)
        n_old = beam.iou.shape[1]
        pick = top_stable([beam.iou, new], self.beam)                                  # [U, B]
        old, j = pick.clamp(0, n_old - 1), (pick - n_old).clamp(min=0)
        values = torch.stack([torch.where(pick < n_old, o.gather(1, old), n.flatten(1).gather(1, j))
                              for o, n in ((beam.iou, iou), (beam.inter, inter), (beam.size, size))])
        fid = beam.fid.cpu().numpy()
        sources = [self._sources(beam, fid[i], i, row) for i, row in enumerate(pick.cpu().tolist())]
        return self._new_beam(beam, sources, torch.where(pick >= 0, values, -1.0))

    def _sources(self, beam: _Beam, fid: np.ndarray, i: int, picks: list[int]) -> list[tuple[Key, int, tuple]]:
        """(key, length, (op, old column, concept)) for unit i's picked candidates (fid: its columns [B])."""
        out = []
        n_old, per_entry = len(fid), 3 * len(self.nonempty)
        for j in picks:
            if j < 0:
                break
            if j < n_old:
                out.append((beam.keys[i][j], int(beam.lengths[i, j]), (COPY, int(fid[j]), 0)))
                continue
            b, rest = divmod(j - n_old, per_entry)
            ci, op = divmod(rest, 3)
            k = int(self.nonempty_np[ci])
            out.append(((beam.keys[i][b], op, k), int(beam.lengths[i, b]) + 1, (op, int(fid[b]), k)))
        return out

    def _new_beam(self, old: _Beam | None, sources: list[list[tuple[Key, int, tuple]]], values: torch.Tensor) -> _Beam:
        """The next beam from picked (key, length, source) per unit; values [3, U, B] = iou, inter, size."""
        columns: dict[Key, int] = {}
        specs: list[tuple] = []
        for row in sources:
            for key, _, spec in row:
                if key not in columns:
                    columns[key] = len(specs)
                    specs.append(spec)
                elif spec[0] == COPY:  # the old table holds it, with its |F & c|
                    specs[columns[key]] = spec
        order = sorted(range(len(specs)), key=lambda c: RANK[specs[c][0]])          # stable: runs of one op
        where = np.empty(len(specs), dtype=np.int64)
        where[order] = np.arange(len(specs))
        fid = np.full(values.shape[1:], -1, dtype=np.int64)
        lengths = np.zeros(values.shape[1:], dtype=np.int64)
        for i, row in enumerate(sources):
            for j, (key, n, _) in enumerate(row):
                fid[i, j], lengths[i, j] = where[columns[key]], n
        dev = self.backend.device
        op = [specs[c][0] for c in order]
        src, k = (torch.as_tensor([specs[c][x] for c in order], dtype=torch.long, device=dev) for x in (1, 2))
        block = max(1, self.backend.chunk_bytes // (2 * self.backend.concept_masks.shape[1] + 1))
        known = op.count(COPY)
        fc = torch.empty(len(specs), len(self.nonempty), dtype=torch.float64, device=dev)
        fc[:known] = old.fc[src[:known]] if known else fc[:0]
        table = build_table(old.table if old else None, self.backend.concept_masks, op, src, k, block)
        return _Beam([[key for key, _, _ in row] for row in sources], lengths, *values, torch.as_tensor(fid, device=dev),
                     table, fc, known)

    def _fill_fc(self, beam: _Beam) -> None:
        """|F & c| for the table's new rows."""
        a0, n = beam.known, beam.table.shape[0] - beam.known
        if n:
            out = self.backend.overlaps(lambda a, b, j0, j1: unpack_columns(beam.table[a0 + j0:a0 + j1], a, b), n)
            beam.fc[a0:] = out[self.nonempty].T
            beam.known += n

    def _mask_repeats(self, beam: _Beam, new: torch.Tensor) -> None:
        """DISTINCT: drop new candidates (P op c) equal to an old entry (in new [U, B*K'*3])."""
        rows, cols = [], []
        for i, keys in enumerate(beam.keys):
            where = {key: b for b, key in enumerate(keys)}
            for key in keys:
                if isinstance(key, tuple) and key[0] in where:
                    rows.append(i)
                    cols.append((where[key[0]] * len(self.nonempty) + self.slot_np[key[2]]) * 3 + key[1])
        if rows:
            new[torch.as_tensor(rows, device=new.device), torch.as_tensor(cols, device=new.device)] = -1.0

    def _note_lengths(self, beam: _Beam, iou: torch.Tensor, inter: torch.Tensor, size: torch.Tensor,
                      by_length: list[dict[int, Scored]]) -> None:
        """Best new candidate per formula length (ties: the earliest generated), as the per-unit path."""
        flat = iou.flatten(2)                                                           # [U, B, K'*3]
        arg = torch.argmax(flat, dim=2)                                                 # first maximum
        best = flat.gather(2, arg[..., None])[..., 0].cpu().numpy()
        arg_np, valid = arg.cpu().numpy(), beam.fid.cpu().numpy() >= 0
        updates = []
        for n in np.unique(beam.lengths[valid] + 1):
            group = np.where(valid & (beam.lengths + 1 == n), best, -2.0)
            b = np.argmax(group, axis=1)                                                # first maximum
            top = group[np.arange(len(b)), b]
            for i in np.flatnonzero(top >= 0):
                current = by_length[i].get(int(n))
                if current is None or top[i] > current.score:
                    updates.append((i, int(n), int(b[i]), *divmod(int(arg_np[i, b[i]]), 3), float(top[i])))
        if updates:
            at = tuple(torch.as_tensor([u[c] for u in updates], device=iou.device) for c in (0, 2, 3, 4))
            counts = torch.stack([inter[at], size[at]], 1).cpu().tolist()
            for (i, n, b, ci, op, value), (m_f, f) in zip(updates, counts):
                key = (beam.keys[i][b], op, int(self.nonempty_np[ci]))
                by_length[i][n] = Scored(self._formula(key), int(m_f), int(f), value)

    # ------------------------------------------------------------ helpers

    def _subset(self, beam: _Beam, rows: torch.Tensor) -> _Beam:
        picked = rows.cpu().numpy()
        return _Beam([beam.keys[i] for i in picked], beam.lengths[picked], beam.iou[rows], beam.inter[rows],
                     beam.size[rows], beam.fid[rows], beam.table, beam.fc, beam.known)

    def _scored(self, beam: _Beam) -> list[list[Scored]]:
        """Each unit's beam entries as Scored results."""
        iou, inter, size = (x.cpu().tolist() for x in (beam.iou, beam.inter, beam.size))
        return [[Scored(self._formula(key), int(inter[i][j]), int(size[i][j]), iou[i][j]) for j, key in enumerate(keys)]
                for i, keys in enumerate(beam.keys)]

    def _formula(self, key: Key) -> s.Formula:
        formula = self._formulas.get(key)
        if formula is None:
            formula = self.names[key] if isinstance(key, int) else \
                combine(self._formula(key[0]), self.names[key[2]], key[1])
            self._formulas[key] = formula
        return formula
