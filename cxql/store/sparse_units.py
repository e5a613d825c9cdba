"""Sparse activations (scipy CSR ``.npz``, [tokens, units]) attached with memory bounded by the non-zeros.

Sparse-autoencoder features are zero almost everywhere, yet 16,384 features
over 10 million tokens are still 1.6 billion non-zeros: 13 GB as CSR, more
than memory holds next to anything else. So the matrix is never loaded,
copied to column order or densified:

1. the archive's members are memory-mapped in place (an uncompressed
   ``save_npz``) or decompressed to temporary files and mapped
   (:mod:`cxql.store.npz_members`);
2. rows are read in blocks of about :data:`BLOCK_NNZ` non-zeros. Pass 1
   counts each unit's entries above the threshold (a bincount per block);
   pass 2 writes each kept entry's row into its unit's run of one
   positions array (uint32, CSR over units). Blocks go in row order and a
   stable sort by column within a block keeps rows increasing, so each
   unit's positions come out sorted. The array is a memory-mapped file in
   the staging directory of the commit that attaches the layer, and the
   histograms are written next to it chunk by chunk
   (:meth:`ConceptStore._attach` with ``staging``).

Working memory is O(block + units + tokens); the non-zeros themselves stay
on disk (in the page cache while they are read). Each block is checked as it
is read: column indices in range, no NaN or infinite value (the error names
the row). A block that is not canonical CSR (unsorted columns, duplicates)
is sorted and its duplicates summed, in the order they appear, as scipy's
``sum_duplicates`` does.

Only absolute thresholds are taken (``value:V`` with V >= 0, default 0: a
feature is active where it is positive). A negative one would make every
implicit zero active, i.e. dense masks; a quantile would count the zeros and
is refused with a hint. Raw activations are not kept, so ``SET threshold``
does not apply to such a layer.
"""

from __future__ import annotations

import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import DataError
from ..progress import Progress, Quiet
from . import units as un
from .npz_members import NpzArchive
from .staged import new_npy, staged_layer_dir

SPARSE_KEYS = {"data.npy", "indices.npy", "indptr.npy", "format.npy", "shape.npy"}

#: Non-zeros per block of rows (its int64 temporaries: a few times 8 bytes each).
BLOCK_NNZ = 1 << 22


@dataclass
class CsrArrays:
    """A CSR matrix as its three arrays (memory-mapped or in memory) and its shape; ``name`` for errors."""

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    name: str

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1]) if len(self.indptr) else 0


def is_sparse_npz(path: str | Path) -> bool:
    """Whether ``path`` is a scipy.sparse.save_npz archive."""
    try:
        with zipfile.ZipFile(path) as z:
            return {"format.npy", "shape.npy", "data.npy"} <= set(z.namelist())  # CSR, CSC, COO, ...
    except (OSError, zipfile.BadZipFile):
        return False


def load_sparse(path: str | Path) -> Any:
    """The CSR matrix saved at ``path``, loaded whole (small files; :func:`open_sparse` maps big ones)."""
    with open_sparse(path) as csr:
        import scipy.sparse as sp

        return sp.csr_matrix((np.array(csr.data), np.array(csr.indices), np.array(csr.indptr)), shape=csr.shape)


@contextmanager
def open_sparse(source: "str | Path | Any") -> Iterator[CsrArrays]:
    """The CSR arrays of a ``save_npz`` file (mapped, not loaded) or of a scipy matrix; checked, else DataError."""
    if not isinstance(source, (str, Path)):
        matrix = source.tocsr()
        yield _checked(CsrArrays(tuple(matrix.shape), matrix.indptr, matrix.indices, matrix.data,
                                 "sparse activations"))
        return
    path = Path(source)
    try:
        archive = NpzArchive(path)
    except DataError as exc:
        raise DataError(f"{path}: cannot read a scipy sparse matrix ({exc.message})") from None
    try:
        yield _from_archive(archive, path)
    finally:
        archive.close()


def _from_archive(archive: NpzArchive, path: Path) -> CsrArrays:
    if "format.npy" not in archive.names():
        raise DataError(f"{path}: cannot read a scipy sparse matrix (no format.npy)")
    fmt = archive.small("format.npy")
    fmt = fmt.item().decode() if fmt.dtype.kind == "S" else str(fmt.item())
    if fmt != "csr":  # other layouts (CSC, COO) are rare for activations: converted in memory, as scipy would
        return _checked(_converted(path), f"{path}: ")
    missing = SPARSE_KEYS - archive.names()
    if missing:
        raise DataError(f"{path}: cannot read a scipy sparse matrix (no {', '.join(sorted(missing))})")
    shape = tuple(int(x) for x in np.atleast_1d(archive.small("shape.npy")))
    if len(shape) != 2:
        raise DataError(f"{path}: expected a 2-D [tokens, units] matrix, got shape {list(shape)}")
    return _checked(CsrArrays(shape, archive.mapped("indptr.npy"), archive.mapped("indices.npy"),
                              archive.mapped("data.npy"), str(path)), f"{path}: ")


def _converted(path: Path) -> CsrArrays:
    import scipy.sparse as sp

    try:
        matrix = sp.load_npz(path).tocsr()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read a scipy sparse matrix ({exc})") from None
    return CsrArrays(tuple(matrix.shape), matrix.indptr, matrix.indices, matrix.data, str(path))


def _checked(csr: CsrArrays, where: str = "") -> CsrArrays:
    """The structure scipy's own constructor checks, from O(rows) reads; values are checked per block."""
    rows, _ = csr.shape
    if csr.data.dtype.kind not in "iuf":
        raise DataError(f"{where}activations must be numbers, got dtype {csr.data.dtype}")
    for key in ("indptr", "indices"):
        if getattr(csr, key).dtype.kind not in "iu":
            raise DataError(f"{where}cannot read a scipy sparse matrix ({key} holds {getattr(csr, key).dtype})")
    ptr = csr.indptr
    if len(ptr) != rows + 1:
        raise DataError(f"{where}cannot read a scipy sparse matrix (its shape says {rows:,} rows, so indptr "
                        f"should have {rows + 1:,} entries; it has {len(ptr):,})")
    if int(ptr[0]) != 0:
        raise DataError(f"{where}cannot read a scipy sparse matrix (indptr starts at {int(ptr[0])}, not 0)")
    for a in range(0, rows, BLOCK_NNZ):
        steps = np.diff(np.asarray(ptr[a:a + BLOCK_NNZ + 1], dtype=np.int64))
        if np.any(steps < 0):
            raise DataError(f"{where}cannot read a scipy sparse matrix (indptr decreases at row "
                            f"{a + int(np.flatnonzero(steps < 0)[0])})")
    if len(csr.indices) != len(csr.data) or csr.nnz > len(csr.indices):
        raise DataError(f"{where}cannot read a scipy sparse matrix ({len(csr.indices)} indices, "
                        f"{len(csr.data)} values, indptr ends at {csr.nnz})")
    return csr


def sparse_threshold(spec: Any) -> float:
    """The absolute threshold of a sparse layer: ``value:V`` or a bare number, V >= 0 (default 0)."""
    if spec is None:
        return 0.0
    rule = un.Threshold.parse(spec, un.Threshold("absolute", 0.0))
    if rule.kind != "absolute":
        raise DataError(f"threshold {rule}: sparse activations take an absolute threshold only",
                        hint="--threshold value:0 (active where positive) or another value >= 0")
    if rule.value < 0:
        raise DataError(f"threshold {rule}: below 0 every implicit zero of a sparse matrix would be active",
                        hint="use a value >= 0")
    return float(rule.value)


# ------------------------------------------------------------------ blocks of rows


def row_blocks(indptr: np.ndarray, max_nnz: int = BLOCK_NNZ) -> Iterator[tuple[int, int]]:
    """(first row, end row) of consecutive blocks of about ``max_nnz`` non-zeros (at least one row each)."""
    rows = len(indptr) - 1
    r0 = 0
    while r0 < rows:
        r1 = int(np.searchsorted(indptr, int(indptr[r0]) + max_nnz, side="right")) - 1
        r1 = min(max(r1, r0 + 1), rows, r0 + max_nnz)
        yield r0, r1
        r0 = r1


def block_entries(csr: CsrArrays, r0: int, r1: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of rows r0:r1's entries above ``threshold``, by row then column; checked, canonical."""
    n_units = csr.shape[1]
    ptr = np.asarray(csr.indptr[r0:r1 + 1], dtype=np.int64)
    a, b = int(ptr[0]), int(ptr[-1])
    cols = np.asarray(csr.indices[a:b])
    values = np.asarray(csr.data[a:b])
    if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= n_units):
        e = int(np.flatnonzero((cols < 0) | (cols >= n_units))[0])
        raise DataError(f"sparse activations: row {_row_of(ptr, r0, e)} has column index {int(cols[e])}, "
                        f"but the matrix has {n_units} columns")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        e = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"sparse activations hold NaN or infinite values (row {_row_of(ptr, r0, e)})")
    rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(ptr))
    later = np.diff(cols.astype(np.int64)) > 0
    later[ptr[1:-1][(ptr[1:-1] > a) & (ptr[1:-1] < b)] - a - 1] = True  # a new row may start anywhere
    if not later.all():
        rows, cols, values = _canonical(rows, cols, values, n_units)
    keep = values > threshold
    return rows[keep], cols[keep]


def _canonical(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
               n_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries sorted by (row, column), duplicates summed in the order they appear (scipy's sum_duplicates)."""
    keys = rows * n_units + cols.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    summed = np.add.reduceat(values[order], first) if len(first) else values[:0]
    rows, cols = np.divmod(keys[first], n_units)
    return rows, cols, summed.astype(values.dtype, copy=False)


def _row_of(ptr: np.ndarray, r0: int, entry: int) -> int:
    return r0 + int(np.searchsorted(ptr, ptr[0] + entry, side="right")) - 1


# ------------------------------------------------------------------ the two passes


def count_active(csr: CsrArrays, threshold: float, step: Callable[[int], None] | None = None) -> np.ndarray:
    """Pass 1: int64 [units], each unit's entries above ``threshold``."""
    counts = np.zeros(csr.shape[1], dtype=np.int64)
    for r0, r1 in row_blocks(csr.indptr):
        _, cols = block_entries(csr, r0, r1, threshold)
        counts += np.bincount(cols, minlength=csr.shape[1])
        if step:
            step(r1 - r0)
    return counts


def fill_positions(csr: CsrArrays, threshold: float, counts: np.ndarray, out: np.ndarray,
                   step: Callable[[int], None] | None = None) -> un.UnitMasks:
    """Pass 2: each unit's sorted positions written into ``out`` (length ``counts.sum()``), as CSR masks."""
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    cursor = indptr[:-1].copy()
    small = csr.shape[1] <= np.iinfo(np.uint16).max + 1  # 16-bit keys sort by radix
    for r0, r1 in row_blocks(csr.indptr):
        rows, cols = block_entries(csr, r0, r1, threshold)
        order = np.argsort(cols.astype(np.uint16) if small else cols, kind="stable")
        cols = cols[order]
        per_unit = np.bincount(cols, minlength=len(counts))
        starts = np.cumsum(per_unit) - per_unit
        out[cursor[cols] + np.arange(len(cols)) - starts[cols]] = rows[order]
        cursor += per_unit
        if step:
            step(r1 - r0)
    if not np.array_equal(cursor, indptr[1:]):
        raise DataError("sparse activations changed while they were read (unit counts differ between passes)")
    return un.UnitMasks(indptr, out)


def sparse_unit_masks(matrix: Any, threshold: float, n_positions: int) -> un.UnitMasks:
    """Each unit's positions where the activation exceeds ``threshold``, in memory (both passes above)."""
    with open_sparse(matrix) as csr:
        _check_size(csr, n_positions)
        counts = count_active(csr, threshold)
        return fill_positions(csr, threshold, counts, np.empty(int(counts.sum()), dtype=np.int64))


def _check_size(csr: CsrArrays, n_positions: int) -> None:
    if csr.shape[0] != n_positions:
        raise DataError(f"sparse activations have {csr.shape[0]:,} rows but the store has "
                        f"{n_positions:,} positions: one row per token")
    if csr.shape[1] == 0:
        raise DataError("sparse activations have no units")


def add_sparse_units(store: Any, layer: str, source: Any, threshold: Any = None, *, replace: bool = False,
                     on_warning: Callable[[str], None] | None = None, progress: Progress | None = None) -> Any:
    """Attach a layer from sparse activations [positions, units] (a ``save_npz`` path or a scipy matrix).

    ``progress`` hears the three long phases: counting, placing positions
    (rows of the matrix each) and histograms (units).
    """
    from .validate_input import check_new_layer

    check_new_layer(store.layers, layer, replace)
    if threshold is None and store.kind == "vision":  # its dense units default to NetDissect's top 0.5 %
        raise DataError(f"this vision store's units default to the threshold {store.default_threshold()}, which a "
                        "sparse matrix cannot take (it would count the implicit zeros)",
                        hint="give an absolute threshold, e.g. --threshold value:0 (active where positive)")
    value = sparse_threshold(threshold)
    progress = progress or Quiet()
    try:
        return _add(store, layer, source, value, replace, on_warning, progress)
    except DataError as exc:  # a file's faults name the file
        if isinstance(source, (str, Path)) and not exc.message.startswith(str(source)):
            exc.message = f"{source}: {exc.message}"
        raise


def _add(store: Any, layer: str, source: Any, value: float, replace: bool,
         on_warning: Callable[[str], None] | None, progress: Progress) -> Any:
    from .validate_input import warn

    with open_sparse(source) as csr:
        _check_size(csr, store.n_positions)
        counts = _phase(progress, csr.shape[0], f"counting {layer}'s active tokens",
                        lambda step: count_active(csr, value, step))
        dtype = np.uint32 if store.n_positions < 2**32 else np.int64
        with store.staging() as staging:
            total = int(counts.sum())
            out = (np.empty(total, dtype=dtype) if staging is None else
                   new_npy(staged_layer_dir(staging, layer) / "mask_positions.npy", dtype, (total,)))
            masks = _phase(progress, csr.shape[0], f"placing {layer}'s positions",
                           lambda step: fill_positions(csr, value, counts, out, step))
            if isinstance(out, np.memmap):
                out.flush()
            warn(un.empty_layer_warning(masks, layer), on_warning)
            thresholds = np.full(masks.n_units, value, dtype=np.float64)
            return _phase(progress, masks.n_units, f"histograms of {layer}", lambda step: store._attach(
                layer, masks, un.Threshold("absolute", value), thresholds, None, replace, staging, step))


def _phase(progress: Progress, total: int, label: str, work: Callable[[Callable[[int], None]], Any]) -> Any:
    progress.start(total, label)
    try:
        return work(lambda n: progress.advance(n))
    finally:
        progress.finish()


__all__ = ["CsrArrays", "add_sparse_units", "block_entries", "count_active", "fill_positions", "is_sparse_npz",
           "load_sparse", "open_sparse", "row_blocks", "sparse_threshold", "sparse_unit_masks"]
