"""Each position's signature id, stored per sample when that is smaller.

A vision store's signatures are nearly all private to one image: a scene
label covers its whole image, so two images rarely share a concept set. Then
a global id per position (4 bytes at ADE20k's 1.1 M signatures) is mostly
redundant: an image carries a few dozen distinct signatures, so a *local*
index into that image's own short table fits in one byte. The per-sample
layout keeps

    position_local.npy     uint8/uint16 [N]   index into the sample's table
    sample_sig_indptr.npy  int64 [n+1]        where each sample's table starts
    sample_sig_table.npy   uint [T]           the samples' signature ids

and reads ``id(p) = table[indptr[sample(p)] + local[p]]``. It is chosen at
write time only when smaller than the plain ``position_sig.npy``; readers see
the same ids either way through :class:`SampleLocalIds`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .signatures import smallest_uint

FILES = ("position_local", "sample_sig_indptr", "sample_sig_table")


class SampleLocalIds:
    """A read-only view of per-sample ids that indexes like the plain int array of global ids."""

    def __init__(self, local: np.ndarray, indptr: np.ndarray, table: np.ndarray, offsets: np.ndarray) -> None:
        self.local, self.indptr, self.table, self.offsets = local, indptr, table, offsets
        self.shape = local.shape
        self.dtype = np.dtype(np.int64)

    def __len__(self) -> int:
        return len(self.local)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[0:len(self)]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        indptr = np.asarray(self.indptr)
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            # a run of positions: each sample's table start, repeated over its positions in the run
            first = int(np.searchsorted(self.offsets, start, side="right")) - 1
            last = int(np.searchsorted(self.offsets, stop, side="left"))
            bounds = np.clip(self.offsets[first:last + 1], start, stop)
            index = np.repeat(indptr[first:last], np.diff(bounds))
            index += self.local[start:stop]
        else:
            positions = np.asarray(key, dtype=np.int64)
            index = indptr[np.searchsorted(self.offsets, positions, side="right") - 1]
            index += self.local[positions]
        return np.asarray(self.table[index], dtype=np.int64)


def encode_sample_local(position_sig: np.ndarray, offsets: np.ndarray,
                        out: Callable[[str, tuple[int, ...], type], np.ndarray]) -> int:
    """Write the per-sample layout of ``position_sig`` through ``out(key, shape, dtype) -> array``.

    One pass over the samples. Local indices are written wide enough for the
    largest sample; returns the largest table, so the caller can narrow them.
    """
    widest = int(np.max(np.diff(offsets), initial=1))
    local = out("position_local", position_sig.shape, smallest_uint(max(widest - 1, 0)))
    tables, indptr = [], np.zeros(len(offsets), dtype=np.int64)
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        sig, inverse = np.unique(position_sig[a:b], return_inverse=True)
        local[a:b] = inverse.ravel()
        tables.append(sig)
        indptr[i + 1] = indptr[i] + len(sig)
    table = np.concatenate(tables) if tables else np.zeros(0, np.int64)
    out("sample_sig_indptr", indptr.shape, np.int64)[:] = indptr
    out("sample_sig_table", table.shape, smallest_uint(int(table.max(initial=0))))[:] = table
    return int(np.max(np.diff(indptr), initial=0))


def sample_local_bytes(n_positions: int, n_samples: int, table_size: int, largest: int) -> int:
    """Bytes of the per-sample layout with local indices in their narrowest dtype."""
    local = np.dtype(smallest_uint(max(largest - 1, 0))).itemsize
    return local * n_positions + 8 * (n_samples + 1) + 4 * table_size
