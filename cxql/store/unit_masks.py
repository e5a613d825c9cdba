"""A layer's unit masks in memory (CSR) and on disk (sorted positions or bit-packed rows).

Masks are kept in whichever of two exact encodings is smaller: sorted active
positions per unit (CSR; best for the sparse 0.5 % vision masks) or bit-packed
rows [U, ceil(N/8)] (best for dense text masks). Alongside, each unit keeps a
histogram over signature ids (``hist``), which is all IoU ever needs:
``|M AND F| = sum_s F(s) * hist_u(s)``. Thresholding, which makes the masks,
is :mod:`cxql.store.units`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .ids import SampleLocalIds
from .staged import NpyAppender, StagedArray, new_npy


@dataclass
class UnitMasks:
    """A layer's masks in CSR form: unit u is active at ``positions[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray    # int64 [U + 1]
    positions: np.ndarray  # int64 (or uint32, e.g. mapped from a staged file) [nnz], sorted within each unit

    @property
    def n_units(self) -> int:
        return len(self.indptr) - 1

    def unit(self, u: int) -> np.ndarray:
        return self.positions[self.indptr[u]:self.indptr[u + 1]]


def masks_from_pairs(pairs: Iterator[tuple[np.ndarray, np.ndarray]], n_units: int) -> UnitMasks:
    """Collect (unit ids, positions) pairs, each batch ordered by unit then position, into CSR."""
    per_unit: list[list[np.ndarray]] = [[] for _ in range(n_units)]
    for unit, pos in pairs:
        bounds = np.searchsorted(unit, np.arange(n_units + 1))
        for u in np.flatnonzero(np.diff(bounds)):
            per_unit[u].append(pos[bounds[u]:bounds[u + 1]])
    return csr_from_lists([np.concatenate(p).astype(np.int64) if p else np.zeros(0, np.int64) for p in per_unit])


def masks_from_dense(masks: np.ndarray) -> UnitMasks:
    """Bool [N, U] -> CSR."""
    masks = np.asarray(masks, dtype=bool)
    return csr_from_lists([np.flatnonzero(masks[:, u]) for u in range(masks.shape[1])])


def csr_from_lists(per_unit: list[np.ndarray]) -> UnitMasks:
    indptr = np.zeros(len(per_unit) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(p) for p in per_unit])
    positions = np.concatenate(per_unit).astype(np.int64) if per_unit else np.zeros(0, np.int64)
    return UnitMasks(indptr, positions)


def histograms(masks: UnitMasks, position_sig: "np.ndarray | SampleLocalIds") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit signature histograms in CSR form: (indptr, signature ids, counts)."""
    sizes, sig_parts, count_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for per_unit, sig, cnt in histogram_chunks(masks, position_sig):
        sizes.append(per_unit)
        sig_parts.append(sig)
        count_parts.append(cnt)
    indptr = np.zeros(masks.n_units + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.concatenate(sizes))
    return indptr, np.concatenate(sig_parts), np.concatenate(count_parts)


#: Positions per step when histograms are computed unit chunk by unit chunk (int64 temporaries: 8 bytes each).
HIST_CHUNK = 1 << 22


def histogram_chunks(masks: UnitMasks, position_sig: "np.ndarray | SampleLocalIds", chunk: int | None = None,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(entries per unit, signature ids, counts) for consecutive runs of units of about ``chunk`` positions.

    A run's units and signatures are one key ``unit * S + signature``;
    counting the keys (a bincount where the key range is small, a sort
    otherwise) gives the entries ordered by unit, then signature: CSR order.
    Memory is O(chunk), whatever the layer's size.
    """
    indptr = np.asarray(masks.indptr, dtype=np.int64)
    for u0, u1 in unit_chunks(indptr, chunk):
        sizes = np.diff(indptr[u0:u1 + 1])
        pos = np.asarray(masks.positions[indptr[u0]:indptr[u1]])
        sig = np.asarray(position_sig[pos], dtype=np.int64)
        n_sig = int(sig.max()) + 1 if len(sig) else 1
        keys = np.repeat(np.arange(u1 - u0, dtype=np.int64) * n_sig, sizes) + sig
        if (u1 - u0) * n_sig <= 4 * len(keys) + 1024:
            counts = np.bincount(keys, minlength=(u1 - u0) * n_sig)
            keys = np.flatnonzero(counts)
            counts = counts[keys]
        else:
            keys.sort()
            first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
            counts = np.diff(np.append(first, len(keys)))
            keys = keys[first]
        unit, sig = np.divmod(keys, n_sig)
        yield np.bincount(unit, minlength=u1 - u0).astype(np.int64), sig.astype(np.int64), counts.astype(np.int64)


def unit_chunks(indptr: np.ndarray, chunk: int | None = None) -> Iterator[tuple[int, int]]:
    """(first unit, end unit) of consecutive runs of units with about ``chunk`` entries (at least one unit)."""
    chunk = chunk or HIST_CHUNK
    n_units = len(indptr) - 1
    u0 = 0
    while u0 < n_units:
        u1 = int(np.searchsorted(indptr, int(indptr[u0]) + chunk, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_units)
        yield u0, u1
        u0 = u1


def unit_sums(indptr: np.ndarray, counts: np.ndarray, sig: np.ndarray | None = None,
              sig_mask: np.ndarray | None = None) -> np.ndarray:
    """int64 [U]: each unit's histogram total (over signatures where ``sig_mask`` holds, when given).

    Chunk by chunk, so a layer of a billion entries needs no temporary of its size.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    out = np.zeros(len(indptr) - 1, dtype=np.int64)
    for u0, u1 in unit_chunks(indptr):
        a, b = int(indptr[u0]), int(indptr[u1])
        values = np.asarray(counts[a:b], dtype=np.int64)
        if sig_mask is not None:
            values = np.where(sig_mask[np.asarray(sig[a:b])], values, 0)
        sums = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
        local = indptr[u0:u1 + 1] - a
        out[u0:u1] = sums[local[1:]] - sums[local[:-1]]
    return out


def write_histograms(masks: UnitMasks, position_sig: "np.ndarray | SampleLocalIds", folder: Path,
                     progress: Callable[[int], None] | None = None) -> dict[str, StagedArray]:
    """The histograms written chunk by chunk as ``hist_indptr/hist_sig/hist_count.npy`` in ``folder``."""
    sig_file, cnt_file = NpyAppender(folder / "hist_sig.npy", np.int64), NpyAppender(folder / "hist_count.npy", np.int64)
    indptr = np.zeros(masks.n_units + 1, dtype=np.int64)
    done = 0
    try:
        for per_unit, sig, cnt in histogram_chunks(masks, position_sig):
            indptr[done + 1:done + 1 + len(per_unit)] = indptr[done] + np.cumsum(per_unit)
            done += len(per_unit)
            sig_file.append(sig)
            cnt_file.append(cnt)
            if progress:
                progress(len(per_unit))
    except BaseException:
        sig_file.abort()
        cnt_file.abort()
        raise
    np.save(folder / "hist_indptr.npy", indptr, allow_pickle=False)
    return {"hist_indptr": StagedArray(folder / "hist_indptr.npy"), "hist_sig": sig_file.close(),
            "hist_count": cnt_file.close()}


def layer_arrays(masks: UnitMasks, encoding: str, position_sig: "np.ndarray | SampleLocalIds",
                 n_positions: int) -> dict[str, np.ndarray]:
    """A layer's mask and histogram arrays in memory (``staged_layer_arrays`` writes the same to files)."""
    arrays = dict(zip(("hist_indptr", "hist_sig", "hist_count"), histograms(masks, position_sig)))
    if encoding == "bits":
        arrays["mask_bits"] = encode_bits(masks, n_positions)
    else:
        dtype = np.uint32 if n_positions < 2**32 else np.int64
        arrays["mask_indptr"], arrays["mask_positions"] = masks.indptr, masks.positions.astype(dtype)
    return arrays


def staged_layer_arrays(masks: UnitMasks, encoding: str, position_sig: "np.ndarray | SampleLocalIds",
                        n_positions: int, folder: Path, progress: Callable[[int], None] | None = None,
                        ) -> dict[str, "np.ndarray | StagedArray"]:
    """A layer's mask and histogram arrays written into ``folder`` (a staging directory's layer folder).

    Masks mapped from ``folder/mask_positions.npy`` (the sparse path writes
    them there) stay where they are when kept as positions, and that file is
    removed when bits are smaller.
    """
    arrays: dict[str, np.ndarray | StagedArray] = dict(write_histograms(masks, position_sig, folder, progress))
    positions_file = folder / "mask_positions.npy"
    if encoding == "bits":
        bits = new_npy(folder / "mask_bits.npy", np.uint8, (masks.n_units, (n_positions + 7) // 8))
        encode_bits(masks, n_positions, bits)
        _flush(bits)
        arrays["mask_bits"] = StagedArray(folder / "mask_bits.npy")
        positions_file.unlink(missing_ok=True)
        return arrays
    dtype = np.dtype(np.uint32 if n_positions < 2**32 else np.int64)
    mapped = getattr(masks.positions, "filename", None)
    if not (mapped and Path(mapped).resolve() == positions_file.resolve() and masks.positions.dtype == dtype):
        out = new_npy(positions_file, dtype, (len(masks.positions),))
        for a in range(0, len(out), HIST_CHUNK):
            out[a:a + HIST_CHUNK] = masks.positions[a:a + HIST_CHUNK]
        _flush(out)
    arrays["mask_indptr"] = np.asarray(masks.indptr, dtype=np.int64)
    arrays["mask_positions"] = StagedArray(positions_file)
    return arrays


def _flush(array: np.ndarray) -> None:
    if isinstance(array, np.memmap):
        array.flush()


def choose_encoding(masks: UnitMasks, n_positions: int) -> str:
    """'positions' (4 bytes per active position) or 'bits' (N/8 bytes per unit), whichever is smaller."""
    as_positions = 4 * len(masks.positions) if n_positions < 2**32 else 8 * len(masks.positions)
    as_bits = masks.n_units * ((n_positions + 7) // 8)
    return "bits" if as_bits < as_positions else "positions"


def encode_bits(masks: UnitMasks, n_positions: int, out: np.ndarray | None = None) -> np.ndarray:
    """CSR -> uint8 [U, ceil(N/8)], little bit order (into ``out``, e.g. a staged file, when given)."""
    if out is None:
        out = np.zeros((masks.n_units, (n_positions + 7) // 8), dtype=np.uint8)
    for u in range(masks.n_units):
        dense = np.zeros(n_positions, dtype=bool)
        dense[masks.unit(u)] = True
        out[u] = np.packbits(dense, bitorder="little")
    return out


def decode_bits_row(row: np.ndarray, n_positions: int) -> np.ndarray:
    """One bit-packed unit row -> its sorted active positions."""
    return np.flatnonzero(np.unpackbits(row, count=n_positions, bitorder="little"))
