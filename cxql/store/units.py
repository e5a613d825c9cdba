"""Unit masks: from activations to thresholded masks, and how they are kept.

A unit's mask is ``activation > T_u`` (strict). For vision the default T_u is
the exact quantile at level 1 - 0.005 of the unit's raw activations (numpy's
linear method), taken *before* the map is upsampled bilinearly to the mask
resolution (torch ``interpolate``, ``align_corners=False``, which matches the
PIL resize compexp uses); for text it is 0. NetDissect-Lite and compexp
estimate the same quantile with a streaming sketch, so their thresholds can
differ from ours in the last digits.

Masks are kept in whichever of two exact encodings is smaller: sorted active
positions per unit (CSR; best for the sparse 0.5 % vision masks) or bit-packed
rows [U, ceil(N/8)] (best for dense text masks). Alongside, each unit keeps a
histogram over signature ids (``hist``), which is all IoU ever needs:
``|M AND F| = sum_s F(s) * hist_u(s)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import DataError

DEFAULT_TOP_FRACTION = 0.005


@dataclass(frozen=True)
class Threshold:
    """How a layer's thresholds were chosen: a quantile level or an absolute value."""

    kind: str  # "quantile" | "absolute" | "masks"
    value: float = 0.0

    @classmethod
    def parse(cls, spec: "float | int | str | Threshold | None", default: "Threshold") -> "Threshold":
        """Read a user's threshold: a number is absolute, ``quantile:0.99`` a quantile level."""
        if spec is None:
            return default
        if isinstance(spec, Threshold):
            return spec
        if isinstance(spec, (int, float)):
            return cls("absolute", float(spec))
        text = str(spec).strip().lower()
        for prefix in ("quantile:", "q:"):
            if text.startswith(prefix):
                level = _number(text[len(prefix):], spec)
                if not 0.0 < level < 1.0:
                    raise DataError(f"quantile level must be between 0 and 1, got {level}")
                return cls("quantile", level)
        return cls("absolute", _number(text, spec))

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    def __str__(self) -> str:
        return f"quantile:{self.value:g}" if self.kind == "quantile" else f"{self.value:g}"


VISION_DEFAULT = Threshold("quantile", 1.0 - DEFAULT_TOP_FRACTION)
TEXT_DEFAULT = Threshold("absolute", 0.0)


def _number(text: str, spec: object) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"threshold must be a number or 'quantile:LEVEL', got {spec!r}") from None


def check_activations(acts: np.ndarray, n_samples: int, source: str = "activations") -> None:
    """Reject activations whose shape or values cannot be thresholded."""
    if acts.ndim not in (2, 4):
        raise DataError(f"{source}: expected shape [samples, units] or [samples, units, h, w], "
                        f"got {list(acts.shape)}")
    if acts.shape[0] != n_samples:
        raise DataError(f"{source}: has {acts.shape[0]} samples but the store has {n_samples}")
    if acts.shape[1] == 0:
        raise DataError(f"{source}: has no units")


def unit_thresholds(acts: np.ndarray, threshold: Threshold, chunk_units: int = 16) -> np.ndarray:
    """float64 [U]: each unit's T_u over all samples and raw spatial positions."""
    n_units = acts.shape[1]
    if threshold.kind == "absolute":
        return np.full(n_units, threshold.value, dtype=np.float64)
    out = np.empty(n_units, dtype=np.float64)
    for start in range(0, n_units, chunk_units):
        block = np.asarray(acts[:, start:start + chunk_units], dtype=np.float64)
        block = np.moveaxis(block, 1, 0).reshape(block.shape[1], -1)
        if np.isnan(block).any():
            bad = start + int(np.flatnonzero(np.isnan(block).any(axis=1))[0])
            raise DataError(f"activations of unit {bad} contain NaN")
        out[start:start + block.shape[0]] = np.quantile(block, threshold.value, axis=1)
    return out


def iter_unit_masks(acts: np.ndarray, thresholds: np.ndarray, mask_shape: tuple[int, ...] | None,
                    chunk_samples: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first sample, bool [n, U, P]) blocks of thresholded, upsampled masks.

    P is the number of positions per sample. 4-D activations are upsampled to
    ``mask_shape``; 2-D ones (one value per sample and unit) cover every
    position of their sample.
    """
    positions = int(np.prod(mask_shape)) if mask_shape else 1
    t = torch.as_tensor(thresholds, dtype=torch.float64)
    for start in range(0, acts.shape[0], chunk_samples):
        block = torch.from_numpy(np.array(acts[start:start + chunk_samples], dtype=np.float32))
        if torch.isnan(block).any():
            raise DataError(f"activations of sample {start + int(torch.isnan(block).flatten(1).any(1).nonzero()[0])} contain NaN")
        if block.ndim == 4:
            if not mask_shape or len(mask_shape) != 2:
                raise DataError("spatial activations [samples, units, h, w] need a store with a 2-D mask shape")
            if tuple(block.shape[2:]) != tuple(mask_shape):
                block = torch.nn.functional.interpolate(block, size=tuple(mask_shape), mode="bilinear",
                                                        align_corners=False)
            masks = block.double() > t.view(1, -1, 1, 1)
            yield start, masks.reshape(masks.shape[0], masks.shape[1], -1).numpy()
        else:
            masks = block.double() > t.view(1, -1)
            yield start, masks.unsqueeze(-1).expand(-1, -1, positions).numpy()


@dataclass
class UnitMasks:
    """A layer's masks in CSR form: unit u is active at ``positions[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray    # int64 [U + 1]
    positions: np.ndarray  # int64 [nnz], sorted within each unit

    @property
    def n_units(self) -> int:
        return len(self.indptr) - 1

    def unit(self, u: int) -> np.ndarray:
        return self.positions[self.indptr[u]:self.indptr[u + 1]]


def masks_from_blocks(blocks: Iterator[tuple[int, np.ndarray]], n_units: int, positions_per_sample: int,
                      progress: Callable[[int], None] | None = None) -> UnitMasks:
    """Collect thresholded blocks into per-unit sorted position lists."""
    per_unit: list[list[np.ndarray]] = [[] for _ in range(n_units)]
    for start, block in blocks:
        base = start * positions_per_sample
        flat = block.transpose(1, 0, 2).reshape(n_units, -1)
        for u in range(n_units):
            per_unit[u].append(np.flatnonzero(flat[u]) + base)
        if progress:
            progress(block.shape[0])
    return csr_from_lists([np.concatenate(p) if p else np.zeros(0, np.int64) for p in per_unit])


def masks_from_dense(masks: np.ndarray) -> UnitMasks:
    """Bool [N, U] -> CSR."""
    masks = np.asarray(masks, dtype=bool)
    return csr_from_lists([np.flatnonzero(masks[:, u]) for u in range(masks.shape[1])])


def csr_from_lists(per_unit: list[np.ndarray]) -> UnitMasks:
    indptr = np.zeros(len(per_unit) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(p) for p in per_unit])
    positions = np.concatenate(per_unit).astype(np.int64) if per_unit else np.zeros(0, np.int64)
    return UnitMasks(indptr, positions)


def histograms(masks: UnitMasks, position_sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit signature histograms in CSR form: (indptr, signature ids, counts)."""
    sig_parts, count_parts, sizes = [], [], []
    for u in range(masks.n_units):
        sig = np.asarray(position_sig[masks.unit(u)], dtype=np.int64)
        ids, counts = np.unique(sig, return_counts=True)
        sig_parts.append(ids)
        count_parts.append(counts.astype(np.int64))
        sizes.append(len(ids))
    indptr = np.zeros(masks.n_units + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(sizes)
    sig = np.concatenate(sig_parts) if sig_parts else np.zeros(0, np.int64)
    cnt = np.concatenate(count_parts) if count_parts else np.zeros(0, np.int64)
    return indptr, sig, cnt


def choose_encoding(masks: UnitMasks, n_positions: int) -> str:
    """'positions' (4 bytes per active position) or 'bits' (N/8 bytes per unit), whichever is smaller."""
    as_positions = 4 * len(masks.positions) if n_positions < 2**32 else 8 * len(masks.positions)
    as_bits = masks.n_units * ((n_positions + 7) // 8)
    return "bits" if as_bits < as_positions else "positions"


def encode_bits(masks: UnitMasks, n_positions: int) -> np.ndarray:
    """CSR -> uint8 [U, ceil(N/8)], little bit order."""
    out = np.zeros((masks.n_units, (n_positions + 7) // 8), dtype=np.uint8)
    for u in range(masks.n_units):
        dense = np.zeros(n_positions, dtype=bool)
        dense[masks.unit(u)] = True
        out[u] = np.packbits(dense, bitorder="little")
    return out


def decode_bits_row(row: np.ndarray, n_positions: int) -> np.ndarray:
    """One bit-packed unit row -> its sorted active positions."""
    return np.flatnonzero(np.unpackbits(row, count=n_positions, bitorder="little"))
