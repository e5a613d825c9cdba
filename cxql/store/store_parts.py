"""Building a concept store's parts in memory: the signature table from dense masks, and the
manifest and arrays of a new store.

Kept apart from :mod:`cxql.store.concept_store` so the store class holds what a store does
(open, read, attach layers, commit), and this module what making one from raw masks takes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from . import signatures as sig
from . import units as un
from . import validate_input as vi
from .writer import bulk_arrays, store_manifest, without_bulk


def signatures_from_masks(masks: np.ndarray, names: Sequence[str], categories: Sequence[str] | None,
                          sample_ids: Sequence[Any] | None, mask_shape: Sequence[int] | None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, np.ndarray | None, list | None]:
    """Checked dense masks [N, K] -> (signature bits, counts, position ids, categories, sample offsets, names).

    Validation comes first so a bad input fails with a DataError before any work is done.
    """
    masks = vi.check_mask_array(masks, "masks")
    if masks.ndim != 2:
        raise DataError(f"masks must be a 2-D bool array [positions, concepts], got shape {list(masks.shape)}")
    n, k = masks.shape
    if len(names) != k:
        raise DataError(f"{len(names)} names for {k} concept columns")
    if k == 0:
        raise DataError("a store needs at least one concept")
    categories = list(categories) if categories is not None else [""] * k
    if len(categories) != k:
        raise DataError(f"{len(categories)} categories for {k} concept columns")
    vi.check_concept_names(names, categories)
    offsets, sample_names = sample_layout(n, sample_ids, mask_shape)
    builder = sig.SignatureBuilder(k)
    position_sig = np.concatenate([builder.add(sig.pack_rows(masks[i:i + 65536]))
                                   for i in range(0, max(n, 1), 65536)]) if n else np.zeros(0, np.uint32)
    bits, counts = builder.table()
    return bits, counts, position_sig, categories, offsets, sample_names


def store_parts(bits: np.ndarray, counts: np.ndarray, position_sig: np.ndarray,
                names: Sequence[str], categories: Sequence[str], sample_offsets: np.ndarray | None,
                *, mask_shape: Sequence[int] | None = None, kind: str = "vision",
                sample_names: Sequence[str] | None = None,
                metadata: Mapping[str, Any] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, arrays) of a new store; ids are narrowed to the smallest uint that holds them."""
    vi.check_concept_names(names, categories)
    n = int(len(position_sig))
    per = int(np.prod(mask_shape)) if mask_shape else 1
    n_samples = n // per if sample_offsets is None else len(sample_offsets) - 1
    concept_counts = sig.concept_counts(bits, counts, len(names))
    manifest = store_manifest(names, categories, concept_counts, n_positions=n, n_samples=n_samples,
                              n_signatures=bits.shape[0], mask_shape=mask_shape, kind=kind,
                              sample_names=sample_names, metadata=metadata)
    arrays = {"signatures": bits,
              "sig_counts": counts.astype(sig.smallest_uint(int(counts.max(initial=0)))),
              "position_sig": position_sig.astype(sig.smallest_uint(max(len(counts) - 1, 0)))}
    if sample_offsets is not None:
        arrays["samples"] = np.asarray(sample_offsets, dtype=np.int64)
    arrays.update(bulk_arrays(manifest))
    return without_bulk(manifest), arrays


def sample_layout(n: int, sample_ids, mask_shape) -> tuple[np.ndarray | None, list | None]:
    per = int(np.prod(mask_shape)) if mask_shape else None
    if per is not None and n % per:
        raise DataError(f"{n} positions is not a whole number of {list(mask_shape)} masks")
    if sample_ids is None:
        return None, None
    ids = list(sample_ids)
    if per is not None and len(ids) == n // per:
        return None, ids
    if len(ids) != n:
        raise DataError(f"sample_ids has {len(ids)} entries; expected {n} (one per position)"
                        + (f" or {n // per} (one per sample)" if per else ""))
    starts = [0] + [i for i in range(1, n) if ids[i] != ids[i - 1]]
    names = [ids[i] for i in starts]
    if len(set(map(str, names))) != len(names):
        raise DataError("sample_ids: each sample's positions must be contiguous")
    offsets = np.asarray(starts + [n], dtype=np.int64)
    if per is not None and np.any(np.diff(offsets) != per):
        raise DataError(f"sample_ids: every sample must have {per} positions for mask shape {list(mask_shape)}")
    return (None if per is not None else offsets), names


def spread_sample_masks(masks: np.ndarray, offsets: np.ndarray) -> un.UnitMasks:
    per_unit = []
    for u in range(masks.shape[1]):
        samples = np.flatnonzero(masks[:, u])
        parts = [np.arange(offsets[i], offsets[i + 1]) for i in samples]
        per_unit.append(np.concatenate(parts) if parts else np.zeros(0, np.int64))
    return un.csr_from_lists(per_unit)


