"""Sparse activations (scipy CSR ``.npz``, [tokens, units]) attached with memory bounded by the non-zeros.

Sparse-autoencoder features are zero almost everywhere: 16,384 features over
millions of tokens are a few hundred million non-zeros but trillions of
cells. Densifying them, as the dense path would, cannot work, so this path
never does: the matrix is converted to column order (one CSC copy, O(nnz)),
entries above the threshold are kept, and each unit's active positions come
straight out of the CSC index array.

Only absolute thresholds are taken (``value:V`` with V >= 0, default 0: a
feature is active where it is positive). A negative one would make every
implicit zero active, i.e. dense masks; a quantile would count the zeros and
is refused with a hint. Raw activations are not kept, so ``SET threshold``
does not apply to such a layer.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from . import units as un

SPARSE_KEYS = {"data.npy", "indices.npy", "indptr.npy", "format.npy", "shape.npy"}


def is_sparse_npz(path: str | Path) -> bool:
    """Whether ``path`` is a scipy.sparse.save_npz archive."""
    try:
        with zipfile.ZipFile(path) as z:
            return SPARSE_KEYS <= set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_sparse(path: str | Path) -> Any:
    """The CSR matrix saved at ``path``, or a DataError naming the file."""
    import scipy.sparse as sp

    try:
        matrix = sp.load_npz(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read a scipy sparse matrix ({exc})") from None
    if matrix.ndim != 2:
        raise DataError(f"{path}: expected a 2-D [tokens, units] matrix, got shape {list(matrix.shape)}")
    if matrix.dtype.kind not in "iuf":
        raise DataError(f"{path}: activations must be numbers, got dtype {matrix.dtype}")
    return matrix.tocsr()


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


def sparse_unit_masks(matrix: Any, threshold: float, n_positions: int) -> un.UnitMasks:
    """Each unit's positions where the activation exceeds ``threshold`` (CSC, O(nnz) memory)."""
    if matrix.shape[0] != n_positions:
        raise DataError(f"sparse activations have {matrix.shape[0]:,} rows but the store has "
                        f"{n_positions:,} positions: one row per token")
    if matrix.shape[1] == 0:
        raise DataError("sparse activations have no units")
    data = matrix.data
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DataError("sparse activations hold NaN or infinite values")
    csc = matrix.tocsc()
    csc.sum_duplicates()
    csc.sort_indices()
    keep = csc.data > threshold
    cum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    counts = cum[csc.indptr[1:]] - cum[csc.indptr[:-1]]
    indptr = np.zeros(matrix.shape[1] + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    return un.UnitMasks(indptr, csc.indices[keep].astype(np.int64))


def add_sparse_units(store: Any, layer: str, matrix: Any, threshold: Any = None, *,
                     replace: bool = False, on_warning: Callable[[str], None] | None = None) -> Any:
    """Attach a layer from sparse activations [positions, units] at an absolute threshold."""
    from .validate_input import check_new_layer, warn

    check_new_layer(store.layers, layer, replace)
    value = sparse_threshold(threshold)
    masks = sparse_unit_masks(matrix, value, store.n_positions)
    warn(un.empty_layer_warning(masks, layer), on_warning)
    thresholds = np.full(masks.n_units, value, dtype=np.float64)
    return store._attach(layer, masks, un.Threshold("absolute", value), thresholds, None, replace)


__all__ = ["add_sparse_units", "is_sparse_npz", "load_sparse", "sparse_threshold", "sparse_unit_masks"]
