"""The arrays of an ``.npz`` archive as memory maps, without loading them.

scipy's ``save_npz`` writes a sparse matrix as a zip of ``.npy`` members
(``data``, ``indices``, ``indptr``, ``shape``, ``format``). Sparse-autoencoder
activations over millions of tokens are billions of non-zeros, more than
memory holds, so the members are mapped rather than read:

- a member stored uncompressed (``compressed=False``) is one contiguous run
  of bytes inside the zip: its local header (30 bytes, then the name and an
  extra field whose lengths it gives) is parsed to find where the ``.npy``
  starts, the ``.npy`` header to find the data, and the data is mapped in
  place. ``zipfile`` reads the central directory, zip64 included;
- a compressed member is decompressed, streaming, to a file in a temporary
  directory of our own (never next to the input) and that file is mapped;
  the directory is removed when the archive is closed.

Anything unexpected (not a zip, a member that is not a plain ``.npy``, an
encrypted or truncated one) is a DataError naming the file and the member.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .validate import HEADER_ERRORS, npy_header

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"
_COPY_BYTES = 1 << 24


class NpzArchive:
    """An open ``.npz`` whose members are mapped on request; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp: Path | None = None
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable .npz archive ({exc})") from None
        self.members = {info.filename: info for info in self._zip.infolist()}

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def names(self) -> set[str]:
        return set(self.members)

    def small(self, name: str) -> np.ndarray:
        """A small member (``shape``, ``format``) read whole."""
        try:
            with self._zip.open(self.members[name]) as fh:
                return np.lib.format.read_array(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{self.path}: member {name} is not a readable array ({exc})") from None

    def mapped(self, name: str) -> np.ndarray:
        """Member ``name`` as a read-only array mapped from disk (decompressed to a temp file if need be)."""
        info = self.members.get(name)
        if info is None:
            raise DataError(f"{self.path}: has no member {name}")
        if info.flag_bits & 0x1:
            raise DataError(f"{self.path}: member {name} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            return self._map(self.path, self._data_offset(info), info.file_size, name)
        file = self._decompressed(info)
        return self._map(file, 0, file.stat().st_size, name)

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes start: after its local header, name and extra field."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(info.header_offset)
                raw = fh.read(_LOCAL_HEADER.size)
        except OSError as exc:
            raise DataError(f"{self.path}: unreadable ({exc.strerror})") from None
        if len(raw) != _LOCAL_HEADER.size or raw[:4] != _LOCAL_MAGIC:
            raise DataError(f"{self.path}: damaged zip (member {info.filename} has no local header)")
        fields = _LOCAL_HEADER.unpack(raw)
        return info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]

    def _decompressed(self, info: zipfile.ZipInfo) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="cxql-npz-"))
        out = self._tmp / f"member-{len(list(self._tmp.iterdir()))}.npy"
        try:
            with self._zip.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _COPY_BYTES)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            raise DataError(f"{self.path}: member {info.filename} cannot be decompressed ({exc})") from None
        return out

    def _map(self, file: Path, start: int, size: int, name: str) -> np.ndarray:
        """The ``.npy`` at ``file[start:start+size]``, mapped after checking its header against ``size``."""
        try:
            with open(file, "rb") as fh:
                fh.seek(start)
                dtype, shape, _, offset = npy_header(fh)
        except HEADER_ERRORS as exc:
            raise DataError(f"{self.path}: member {name} is not a plain .npy array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf" or len(shape) != 1:
            raise DataError(f"{self.path}: member {name} holds {dtype} {list(shape)}, "
                            "not a one-dimensional numeric array")
        length = int(shape[0])
        if offset - start + length * dtype.itemsize != size:
            raise DataError(f"{self.path}: member {name} is truncated or damaged "
                            f"({size} bytes for {length:,} values of {dtype})")
        if length == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=(length,))


class CsrNpzWriter:
    """A CSR matrix written row block by row block into an uncompressed ``.npz`` that ``scipy.sparse.load_npz`` reads.

    ``data`` and ``indices`` are streamed into two temporary ``.npy``
    files next to the output (their lengths fixed at the end, as in
    :class:`~cxql.store.staged.NpyAppender`), then copied into the zip as
    stored (zip64) members; memory is one block at a time. For benchmarks
    and tools that make activations bigger than memory.
    """

    def __init__(self, path: str | Path, n_cols: int, dtype: np.dtype | type = np.float32,
                 index_dtype: np.dtype | type = np.int32) -> None:
        from .staged import NpyAppender

        self.path, self.n_cols = Path(path), int(n_cols)
        self._parts = {"data": NpyAppender(self.path.with_name(self.path.name + ".data.tmp"), dtype),
                       "indices": NpyAppender(self.path.with_name(self.path.name + ".indices.tmp"), index_dtype)}
        self._indptr = [np.zeros(1, dtype=np.int64)]
        self._nnz = 0

    def add_rows(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        """Append rows given as a CSR block (``indptr`` starting at 0)."""
        self._indptr.append(np.asarray(indptr[1:], dtype=np.int64) + self._nnz)
        self._parts["indices"].append(indices)
        self._parts["data"].append(data)
        self._nnz += len(indices)

    def close(self) -> None:
        indptr = np.concatenate(self._indptr)
        files = {name: part.close().file for name, part in self._parts.items()}
        try:
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                for name in ("indices", "indptr", "format", "shape", "data"):
                    with z.open(f"{name}.npy", "w", force_zip64=True) as dst:
                        if name in files:
                            with open(files[name], "rb") as src:
                                shutil.copyfileobj(src, dst, _COPY_BYTES)
                        else:
                            value = {"indptr": indptr, "format": np.array(b"csr"),
                                     "shape": np.array([len(indptr) - 1, self.n_cols], dtype=np.int64)}[name]
                            np.lib.format.write_array(dst, value, allow_pickle=False)
        finally:
            for file in files.values():
                file.unlink(missing_ok=True)


__all__ = ["CsrNpzWriter", "NpzArchive"]
