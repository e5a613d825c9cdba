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
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable

import numpy as np
import torch

from .compiler import Plan
from .store import ConceptStore

DEFAULT_CHUNK_BYTES = 64 << 20
RowsFn = Callable[[int, int], torch.Tensor]
_SHIFTS = torch.arange(8, dtype=torch.uint8)


def tensor(array: np.ndarray, dtype: np.dtype | type, device: torch.device | str = "cpu") -> torch.Tensor:
    """A torch copy of a (possibly read-only, memory-mapped) numpy array."""
    return torch.from_numpy(np.array(array, dtype=dtype, copy=True)).to(device)


class Backend:
    """A store's signature table on one device, with the kernels above."""

    def __init__(self, store: ConceptStore, device: str = "cpu", chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.store = store
        self.device = torch.device(device)
        self.chunk_bytes = chunk_bytes
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
        return out

    def hist_vector(self, ids: np.ndarray, counts: np.ndarray) -> torch.Tensor:
        """float64 [S]: a unit's sparse signature histogram made dense."""
        out = torch.zeros(self.bits.shape[0], dtype=torch.float64, device=self.device)
        out[tensor(ids, np.int64, self.device)] = tensor(counts, np.float64, self.device)
        return out

    def formula_size(self, mask: torch.Tensor) -> int:
        """|F| in positions."""
        return int(self.counts[mask].sum().item())

    def position_mask(self, mask: torch.Tensor, start: int, stop: int) -> np.ndarray:
        """bool [stop-start]: the formula at positions start:stop (for per-sample views)."""
        ids = np.asarray(self.store.position_signatures[start:stop], dtype=np.int64)
        return mask.cpu().numpy()[ids]
