"""Tensor kernels over the signature table, on CPU or GPU.

Everything cxql computes reduces to two kernels over the S signatures:

* ``formula_mask(plan)``: run a plan's ops on bit columns -> bool [S];
* ``concept_counts(rows)``: weighted rows [R, S] times the unpacked concept
  table [S, K] -> [R, K]. With rows ``F * count`` this gives |F AND c| for
  every concept c at once; with rows ``F * hist_u`` it gives |M_u AND F AND c|.

Counts are exact: rows and table are float64, every partial sum is an integer
below 2**53, so the products are exact integers on any device.

Memory stays bounded whatever N and S are: the concept table is unpacked
``chunk_rows`` signatures at a time, so the extra memory of a product is
``chunk_rows * K * 8`` bytes for the unpacked chunk plus ``R * chunk_rows * 8``
for the matching slice of the rows; ``chunk_rows`` is chosen so that the
chunk stays under ``chunk_bytes`` (64 MiB by default, ``SET chunk_mb``).
The packed table itself (S * K / 8 bytes) is copied to the device once.

The batched SEARCH (:mod:`cxql.batched`) keeps formula masks bit-packed
over signatures ([R, ceil(S/8)] uint8, like ``concept_masks``; read with
``unpack_columns`` and ``read_bits``) and uses a third kernel:

* ``overlaps(masks, n)``: |F_j AND c| for n formula masks at once. The
  concept table is kept transposed as sparse CSR matrices [K, chunk] whose
  values are the signatures' counts (a probe position holds a handful of
  concepts, so the table is over 99 % zeros), times the 0/1 masks
  [chunk, n]. Signature chunks hold fewer than 2**24 positions, so every
  partial sum is an integer below 2**24 and float32 is exact; a signature
  with 2**24 positions or more gets a float64 chunk of its own. Chunk results
  are summed in float64 (exact below 2**53).
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable

import warnings

import numpy as np
import torch

from .compiler import Plan
from .store import ConceptStore

DEFAULT_CHUNK_BYTES = 64 << 20
EXACT_FP32 = 1 << 24  # float32 holds every integer up to 2**24 exactly
RowsFn = Callable[[int, int], torch.Tensor]
MasksFn = Callable[[int, int, int, int], torch.Tensor]
_SHIFTS = torch.arange(8, dtype=torch.uint8)


def tensor(array: np.ndarray, dtype: np.dtype | type, device: torch.device | str = "cpu") -> torch.Tensor:
    """A torch copy of a (possibly read-only, memory-mapped) numpy array."""
    return torch.from_numpy(np.array(array, dtype=dtype, copy=True)).to(device)


class Backend:
    """A store's signature table on one device, with the kernels above."""

    def __init__(self, store: ConceptStore, device: str = "cpu", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 exact_limit: int = EXACT_FP32) -> None:
        self.store = store
        self.device = torch.device(device)
        self.chunk_bytes = chunk_bytes
        self.exact_limit = exact_limit  # positions per float32 incidence chunk (tests lower it)
        self.n_concepts = len(store.concepts)

    @cached_property
    def bits(self) -> torch.Tensor:
        """uint8 [S, ceil(K/8)] on the device."""
        return tensor(self.store.signature_bits, np.uint8, self.device)

    @cached_property
    def counts(self) -> torch.Tensor:
        """float64 [S]: positions per signature."""
        return tensor(self.store.signature_counts, np.float64, self.device)

    @cached_property
    def concept_sizes(self) -> torch.Tensor:
        """float64 [K]: |c| for every concept."""
        return torch.tensor([c.count for c in self.store.concepts], dtype=torch.float64, device=self.device)

    @cached_property
    def concept_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(signature, concept) long [nnz] each: every concept of every signature, signature-major."""
        n_sig = self.bits.shape[0]
        pairs = [torch.nonzero(self.unpack(a, min(a + self.chunk_rows, n_sig))) + torch.tensor([a, 0], device=self.device)
                 for a in range(0, n_sig, self.chunk_rows)]                        # [nnz, 2]
        both = torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.long, device=self.device)
        return both[:, 0].contiguous(), both[:, 1].contiguous()

    @cached_property
    def concept_masks(self) -> torch.Tensor:
        """uint8 [K, ceil(S/8)]: each concept's signatures, bit-packed (s in bit s % 8 of byte s // 8)."""
        sig, concept = self.concept_pairs
        width = (self.bits.shape[0] + 7) // 8
        packed = torch.zeros(self.n_concepts * width, dtype=torch.int32, device=self.device)
        packed.index_add_(0, concept * width + (sig >> 3), (1 << (sig & 7)).to(torch.int32))  # distinct bits: + is OR
        return packed.to(torch.uint8).view(self.n_concepts, width)

    @cached_property
    def incidence(self) -> list[tuple[int, int, torch.Tensor]]:
        """(start, stop, sparse CSR [K, stop-start]): the table transposed, times counts, per exact chunk."""
        sig, concept = self.concept_pairs
        weight = self.counts[sig]
        out = []
        for a, b, wide in exact_chunks(self.store.signature_counts, max(16, self.chunk_bytes // 256), self.exact_limit):
            keep = (sig >= a) & (sig < b)
            values = weight[keep].to(torch.float64 if wide else torch.float32)
            out.append((a, b, sparse_csr(concept[keep], sig[keep] - a, values, (self.n_concepts, b - a))))
        return out

    @property
    def chunk_rows(self) -> int:
        return max(1024, self.chunk_bytes // (8 * max(1, self.n_concepts)))

    # ------------------------------------------------------------ kernels

    def column(self, k: int) -> torch.Tensor:
        """bool [S]: signatures holding concept k."""
        return ((self.bits[:, k >> 3] >> (k & 7)) & 1).bool()

    def formula_mask(self, plan: Plan) -> torch.Tensor:
        """bool [S]: signatures where the plan's formula holds."""
        regs: list[torch.Tensor] = []
        for op in plan.ops:
            if op.op == "load":
                regs.append(self.column(op.args[0]))
            elif op.op == "not":
                regs.append(~regs[op.args[0]])
            elif op.op == "and":
                regs.append(regs[op.args[0]] & regs[op.args[1]])
            elif op.op == "or":
                regs.append(regs[op.args[0]] | regs[op.args[1]])
            else:  # any
                out = torch.zeros(self.bits.shape[0], dtype=torch.bool, device=self.device)
                for k in op.args:
                    out |= self.column(k)
                regs.append(out)
        return regs[-1]

    def unpack(self, start: int, stop: int) -> torch.Tensor:
        """float64 [stop-start, K]: the concept table's rows start:stop."""
        chunk = self.bits[start:stop]
        rows = (chunk.unsqueeze(-1) >> _SHIFTS.to(self.device)) & 1
        return rows.reshape(chunk.shape[0], -1)[:, : self.n_concepts].to(torch.float64)

    def concept_counts(self, rows: "torch.Tensor | RowsFn") -> torch.Tensor:
        """float64 [R, K] = rows [R, S] @ table [S, K], chunked over S.

        ``rows`` is a tensor or a function ``(start, stop) -> [R, stop-start]``
        that builds each slice on demand, so [R, S] never exists at once.
        """
        slice_of = rows if callable(rows) else (lambda a, b: rows[:, a:b])
        n_sig = self.bits.shape[0]
        out = None
        for start in range(0, max(n_sig, 1), self.chunk_rows):
            stop = min(start + self.chunk_rows, n_sig)
            part = slice_of(start, stop) @ self.unpack(start, stop)
            out = part if out is None else out + part
        assert out is not None  # the loop runs at least once
        return out

    def overlaps(self, masks: MasksFn, n: int) -> torch.Tensor:
        """float64 [K, n]: |F_j AND c| for every concept c, exact.

        ``masks(a, b, j0, j1)`` gives formulas j0..j1 on signatures a..b as
        0/1 values [b-a, j1-j0] (any dtype); blocks stay under ``chunk_bytes``.
        """
        out = torch.zeros(self.n_concepts, n, dtype=torch.float64, device=self.device)
        for a, b, table in self.incidence:
            width = max(1, self.chunk_bytes // (table.dtype.itemsize * (b - a)))
            for j0 in range(0, n, width):
                j1 = min(n, j0 + width)
                out[:, j0:j1] += torch.sparse.mm(table, masks(a, b, j0, j1).to(table.dtype))
        return out

    def hist_vector(self, ids: np.ndarray, counts: np.ndarray) -> torch.Tensor:
        """float64 [S]: a unit's sparse signature histogram made dense."""
        out = torch.zeros(self.bits.shape[0], dtype=torch.float64, device=self.device)
        out[tensor(ids, np.int64, self.device)] = tensor(counts, np.float64, self.device)
        return out

    def formula_size(self, mask: torch.Tensor) -> int:
        """|F| in positions."""
        return int(self.counts[mask].sum().item())


def unpack_columns(packed: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """uint8 [b-a, R] (0/1): signatures a..b of bit-packed masks packed [R, ceil(S/8)], signature-major."""
    q0 = a >> 3
    part = packed[:, q0:(b + 7) >> 3].T.contiguous()                                     # [q, R]: 1/8 of the bits
    bits = (part[:, None, :] >> _SHIFTS.to(packed.device)[None, :, None]) & 1           # [q, 8, R]
    return bits.reshape(-1, packed.shape[0])[a - 8 * q0:b - 8 * q0]


def read_bits(packed: torch.Tensor, rows: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
    """bool [E, B]: bit sig[e] of mask rows[e, b] (packed [R, ceil(S/8)], rows [E, B], sig [E])."""
    return ((packed[rows, (sig >> 3)[:, None]] >> (sig & 7).to(torch.uint8)[:, None]) & 1).bool()


def sparse_csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix from coordinates (long [nnz] each, any order, no repeats) and values [nnz]."""
    order = torch.argsort(rows * max(1, shape[1]) + cols)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=values.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols[order], values[order], shape)


def exact_chunks(counts: np.ndarray, max_rows: int, limit: int = EXACT_FP32) -> list[tuple[int, int, bool]]:
    """(start, stop, wide) signature chunks of at most ``max_rows`` rows and fewer than ``limit`` positions.

    ``wide`` marks a chunk of one signature that alone has ``limit`` positions or more (float64).
    """
    cum = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
    out, a = [], 0
    while a < len(cum) - 1:
        b = min(int(np.searchsorted(cum, cum[a] + limit, side="left")) - 1, a + max_rows, len(cum) - 1)
        out.append((a, max(b, a + 1), b <= a))
        a = max(b, a + 1)
    return out
