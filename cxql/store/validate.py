"""Opening a store's array files without trusting them, from their headers only.

Each ``.npy`` file is checked before it is mapped: it must be a regular file
(a named pipe in its place would block a plain ``open``), its header must
parse, its dtype must be one the store's code can use for that array (an
``int8`` id array would wrap ids and change counts), its shape must agree
with the manifest and the store's sizes, and the file must be exactly as long
as the header says (a truncated file would otherwise fail only at query
time). None of this reads the data: opening stays instant on stores of any
size. :func:`file_crc32` reads everything and is left to ``cxql store check``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import StoreError
from .manifest import regular_size

#: What each array may hold: allowed dtype kinds (``u`` unsigned, ``i`` signed, ``f`` float, ``U`` text)
#: and, where the code relies on it, the exact dtype.
DTYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "signatures": ("u", ("uint8",)), "mask_bits": ("u", ("uint8",)),
    "sig_counts": ("u", ()), "position_sig": ("u", ()), "position_local": ("u", ()), "sample_sig_table": ("u", ()),
    "samples": ("i", ("int64",)), "sample_sig_indptr": ("i", ("int64",)), "hist_indptr": ("i", ("int64",)),
    "mask_indptr": ("i", ("int64",)), "concept_counts": ("i", ("int64",)),
    "hist_sig": ("i", ("int64",)), "hist_count": ("i", ("int64",)), "mask_positions": ("iu", ("uint32", "int64")),
    "thresholds": ("f", ("float64",)), "activations": ("f", ("float32", "float64")), "word_vectors": ("f", ("float32",)),
    "sample_names": ("U", ()),
    "classifier_weights": ("f", ("float64",)), "classifier_predictions": ("i", ("int64",)),
}
CHUNK_BYTES = 1 << 24


def header(path: Path) -> tuple[np.dtype, tuple[int, ...], bool, int, int]:
    """(dtype, shape, fortran order, data offset, file size) of a ``.npy`` file, reading its header only."""
    size = regular_size(path, "missing file; the store is incomplete")
    try:
        with open(path, "rb") as fh:
            return (*_read_header(fh, path), size)
    except OSError as exc:
        raise StoreError(f"{path}: unreadable ({exc.strerror})") from None




#: What reading a damaged or foreign ``.npy`` header raises.
HEADER_ERRORS = (ValueError, EOFError, OSError, SyntaxError, TypeError)


def npy_header(fh) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran order, data offset) of the ``.npy`` whose header starts at ``fh``'s position;
    raises one of HEADER_ERRORS when it is not one."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return np.dtype(dtype), tuple(int(x) for x in shape), bool(fortran), fh.tell()


def _read_header(fh, path: Path) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    try:
        return npy_header(fh)
    except HEADER_ERRORS as exc:
        raise StoreError(f"{path}: damaged array file ({str(exc) or type(exc).__name__})") from None


def open_array(path: Path, key: str, entry: Mapping[str, Any] | None = None,
               shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Map ``path`` read-only after checking it against its manifest ``entry`` and the expected ``shape``.

    ``shape`` may hold None for a free dimension. Raises StoreError naming the file.
    """
    size = regular_size(path, "missing file; the store is incomplete")
    try:
        with open(path, "rb") as fh:  # one open: the header is read and the map made from this handle
            dtype, actual, fortran, offset = _read_header(fh, path)
            _check(path, key, entry, shape, dtype, actual, offset, size)
            if size == offset:
                out = np.empty(actual, dtype=dtype)
                out.flags.writeable = False
                return out
            return np.memmap(fh, dtype=dtype, mode="r", offset=offset, shape=actual,
                             order="F" if fortran else "C")
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot be mapped ({exc})") from None


def _check(path: Path, key: str, entry: Mapping[str, Any] | None, shape: tuple[int | None, ...] | None,
           dtype: np.dtype, actual: tuple[int, ...], offset: int, size: int) -> None:
    if dtype.hasobject or dtype.kind not in "biufU":
        raise StoreError(f"{path}: holds {dtype}, not a plain numeric array")
    kinds, exact = DTYPES.get(key, ("biufU", ()))
    if dtype.kind not in kinds or (exact and dtype not in [np.dtype(e) for e in exact]):
        want = " or ".join(exact) or {"u": "unsigned integers", "f": "floats", "U": "text"}.get(kinds, kinds)
        raise StoreError(f"{path}: holds {dtype}; {key} must be {want}")
    expected_size = offset + int(np.prod(actual, dtype=np.int64)) * dtype.itemsize
    if size != expected_size:
        word = "truncated" if size < expected_size else "longer than its header says"
        raise StoreError(f"{path}: {word} ({size} bytes, expected {expected_size})")
    if entry is not None:
        for field, value in (("dtype", dtype.str), ("shape", list(actual)), ("bytes", size)):
            if field in entry and entry[field] != value:
                raise StoreError(f"{path}: {field} is {value}, the manifest says {entry[field]}")
    if shape is not None and (len(shape) != len(actual)
                              or any(w is not None and w != a for w, a in zip(shape, actual))):
        want = ["*" if w is None else w for w in shape]
        raise StoreError(f"{path}: has shape {list(actual)}, expected {want}")


def file_crc32(path: Path) -> int:
    """CRC-32 of a file's bytes, read in chunks (what the manifest records for each array)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


def file_entry(root: Path, rel: str, with_crc: bool = True) -> dict[str, Any]:
    """The manifest entry of an array file just written: file name, dtype, shape, bytes, CRC-32."""
    dtype, shape, _, _, size = header(root / rel)
    entry: dict[str, Any] = {"file": rel, "dtype": dtype.str, "shape": list(shape), "bytes": size}
    if with_crc:
        entry["crc32"] = file_crc32(root / rel)
    return entry
