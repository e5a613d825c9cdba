"""Arrays written straight into a commit's staging directory, for layers too big to hold.

A change normally hands :mod:`cxql.store.commit` its arrays in memory and
the commit saves them. A layer of a billion positions cannot be held, so its
builder writes the files itself, into the staging directory the commit will
rename (:meth:`ConceptStore._attach` with ``staging=``), and hands over a
:class:`StagedArray` instead of the array. Two ways to write one:

- :func:`new_npy`: the size is known (a layer's positions after counting):
  a writable memory map of a fresh ``.npy`` file;
- :class:`NpyAppender`: the size is known only at the end (histogram
  entries): chunks are appended after a header written for length 0, and the
  header is rewritten with the real length when closed. numpy pads every
  header for a first axis of up to 21 digits, so the rewritten header has
  exactly the length of the first and the data does not move.

Either way the file is an ordinary ``.npy`` (same header as ``np.save``
writes), so readers, checksums and ``store check`` see no difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class StagedArray:
    """An array already written as ``file`` (a ``.npy`` inside a staging directory); the commit keeps it."""

    file: Path


def staged_layer_dir(staging: Path, layer: str) -> Path:
    """Where layer ``layer``'s files go inside a staging directory (the store's ``layers/<name>/``)."""
    return staging / "layers" / layer


def new_npy(file: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A writable memory map of a new ``.npy`` file of ``shape`` (zero-length arrays get a plain array)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    if int(np.prod(shape, dtype=np.int64)) == 0:  # a zero-byte map cannot be made: write the header only
        np.save(file, np.zeros(shape, dtype=dtype), allow_pickle=False)
        return np.zeros(shape, dtype=dtype)
    return np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)


class NpyAppender:
    """A 1-D ``.npy`` file written chunk by chunk; :meth:`close` fixes its length in the header."""

    def __init__(self, file: Path, dtype: np.dtype | type) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.dtype, self.length = file, np.dtype(dtype), 0
        self._fh = open(file, "wb")
        self._offset = self._write_header()

    def _write_header(self) -> int:
        self._fh.seek(0)
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.length,)})
        return self._fh.tell()

    def append(self, values: np.ndarray) -> None:
        chunk = np.ascontiguousarray(values, dtype=self.dtype)
        self._fh.write(chunk.tobytes() if chunk.nbytes < (1 << 20) else memoryview(chunk).cast("B"))
        self.length += len(chunk)

    def close(self) -> StagedArray:
        end = self._fh.tell()
        if self._write_header() != self._offset:  # numpy pads headers for 21 digits: never happens
            raise RuntimeError(f"{self.file}: the .npy header changed length")
        self._fh.seek(end)
        self._fh.close()
        return StagedArray(self.file)

    def abort(self) -> None:
        self._fh.close()


__all__ = ["NpyAppender", "StagedArray", "new_npy", "staged_layer_dir"]
