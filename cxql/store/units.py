"""Unit masks: from activations to thresholded masks, and how they are kept.

A unit's mask is ``activation > T_u`` (strict). For vision the default T_u is
the exact quantile at level 1 - 0.005 of the unit's raw activations (numpy's
linear method), taken *before* the map is upsampled bilinearly to the mask
resolution (torch ``interpolate``, ``align_corners=False``, which matches the
PIL resize compexp uses); for text it is 0. NetDissect-Lite and compexp
estimate the same quantile with a streaming sketch, so their thresholds can
differ from ours in the last digits.

How masks are kept (CSR positions or bit-packed rows, plus per-unit signature
histograms) is :mod:`cxql.store.unit_masks`; its names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
import sys
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from . import bands
from .unit_masks import (  # noqa: F401  (re-exported: callers use un.UnitMasks, un.histograms, ...)
    UnitMasks, choose_encoding, csr_from_lists, decode_bits_row, encode_bits, histograms, masks_from_dense,
    layer_arrays, masks_from_pairs, staged_layer_arrays, unit_sums)

if TYPE_CHECKING:
    import torch

DEFAULT_TOP_FRACTION = 0.005


@dataclass(frozen=True)
class Threshold:
    """How a layer's thresholds were chosen: a quantile level or an absolute value."""

    kind: str  # "quantile" | "absolute" | "cluster" | "given" (per-unit array) | "masks"
    value: float = 0.0
    #: A band's upper end (quantile level or value; None: no upper end), or n of ``cluster:k/n`` (value = k).
    upper: float | None = None

    @classmethod
    def parse(cls, spec: "float | int | str | Threshold | None", default: "Threshold") -> "Threshold":
        """Read a user's threshold: a number or ``value:0.5`` is absolute, ``quantile:0.99`` a quantile level."""
        if spec is None:
            return default
        if isinstance(spec, Threshold):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls("absolute", _finite(float(spec), spec))
        text = str(spec).strip().lower()
        if text.startswith("cluster:"):
            k, n = bands.parse_cluster(text[len("cluster:"):], spec)
            return cls("cluster", float(k), float(n))
        for prefix in ("quantile:", "q:"):
            if text.startswith(prefix) and ".." in text:
                a, b = bands.parse_band(text[len(prefix):], spec)
                if not 0.0 <= a < b <= 1.0:
                    raise DataError(f"threshold {spec!r}: a quantile band's levels must be within 0..1")
                return cls("quantile", a, b)
            if text.startswith(prefix):
                level = _number(text[len(prefix):], spec)
                if not 0.0 < level < 1.0:
                    raise DataError(f"threshold {spec!r}: quantile level must be between 0 and 1, got {level}")
                return cls("quantile", level)
        for prefix in ("value:", "v:"):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        if ".." in text:
            a, b = bands.parse_band(text, spec)
            return cls("absolute", _finite(a, spec), _finite(b, spec))
        return cls("absolute", _finite(_number(text, spec), spec))

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": self.value, **({"upper": self.upper} if self.upper is not None else {})}

    def __str__(self) -> str:
        if self.kind == "cluster":
            return f"cluster:{self.value:g}/{self.upper:g}"
        if self.kind == "given":
            return "per-unit thresholds"
        if self.upper is not None:
            return f"{'quantile' if self.kind == 'quantile' else 'value'}:{self.value:g}..{self.upper:g}"
        return f"quantile:{self.value:g}" if self.kind == "quantile" else f"{self.value:g}"


VISION_DEFAULT = Threshold("quantile", 1.0 - DEFAULT_TOP_FRACTION)
TEXT_DEFAULT = Threshold("absolute", 0.0)


def _number(text: str, spec: object) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"threshold must be a number, 'value:V' or 'quantile:LEVEL', got {spec!r}") from None


def _finite(value: float, spec: object) -> float:
    """An infinite or NaN threshold would empty (or fill) every unit without a word: refuse it."""
    if not np.isfinite(value):
        raise DataError(f"threshold must be a finite number, got {spec!r}")
    return value


def as_array(acts: "np.ndarray | torch.Tensor | Sequence", source: str = "activations") -> np.ndarray:
    """Activations as a numpy array: arrays (and memory maps) as they are, torch tensors converted.

    numpy has no bfloat16, so such tensors widen to float32, which holds them
    exactly; sparse tensors are refused rather than densified behind the user's back.
    """
    if isinstance(acts, np.ndarray):
        return acts
    torch = sys.modules.get("torch")  # without torch loaded, nothing is a tensor (and cxql need not load it)
    if torch is not None and isinstance(acts, torch.Tensor):
        if acts.layout != torch.strided:
            raise DataError(f"{source}: a {str(acts.layout).replace('torch.', '')} tensor; "
                            "pass it dense (tensor.to_dense())")
        acts = acts.detach().cpu()
        return (acts.float() if acts.dtype == torch.bfloat16 else acts).numpy()
    try:
        return np.asarray(acts)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: not an array of activations ({exc})") from None


def check_activations(acts: np.ndarray, n_samples: int, source: str = "activations") -> None:
    """Reject activations whose shape or type cannot be thresholded (values are checked as they are read)."""
    dtype = getattr(acts, "dtype", None)
    if dtype is None or not hasattr(acts, "shape"):
        raise DataError(f"{source}: expected an array of activations, got {type(acts).__name__}")
    if dtype.kind not in "iuf":
        what = {"b": "masks? attach those with add_unit_masks", "M": "dates", "m": "time spans", "U": "text",
                "S": "bytes", "O": "Python objects", "c": "complex numbers", "V": "records"}.get(dtype.kind, "")
        raise DataError(f"{source}: activations must be integer or float numbers, got dtype {dtype}"
                        + (f" ({what})" if what else ""))
    if acts.ndim not in (2, 4):
        raise DataError(f"{source}: expected shape [samples, units] or [samples, units, h, w], "
                        f"got {list(acts.shape)}")
    if acts.shape[0] != n_samples:
        raise DataError(f"{source}: has {acts.shape[0]} samples but the store has {n_samples}")
    if acts.shape[1] == 0:
        raise DataError(f"{source}: has no units")
    if acts.ndim == 4 and 0 in acts.shape[2:]:
        raise DataError(f"{source}: spatial maps of size {acts.shape[2]}x{acts.shape[3]} hold no values")


def check_finite(block: np.ndarray, start: int = 0, axis_name: str = "sample", per_sample: int = 0) -> None:
    """Refuse NaN and infinite activations, naming the first bad row of ``block`` (row 0 is ``start``).

    Compared with a threshold, NaN is never active and +inf always, so either
    would silently empty or fill units; a quantile over them is meaningless.
    Rows are samples ([n, U, ...] blocks, which also name the unit) or units
    ([U, n * per_sample] blocks, which name the sample when ``per_sample``).
    """
    check_exact_integers(block, start, axis_name, per_sample)
    if block.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(block)
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    value = block[tuple(where)]
    kind = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    raise DataError(f"activations of {_place(block, where, start, axis_name, per_sample)} contain {kind}; "
                    "every activation must be a finite number")


#: Integers above this magnitude have no exact float64 value, and thresholds are float64.
EXACT_INT = 2**53


def check_exact_integers(block: np.ndarray, start: int = 0, axis_name: str = "sample", per_sample: int = 0) -> None:
    """Refuse 64-bit integer activations beyond 2**53 in magnitude (smaller integer types always fit).

    Thresholds and quantiles are float64, and so is the comparison for wide
    integers: 2**53 + 1 would become 2**53 and fall on the wrong side of a
    threshold. Rather than compare some values exactly and others not, such
    values are refused, naming the first one (call before any cast to float).
    """
    if block.dtype.kind not in "iu" or block.dtype.itemsize < 8:
        return
    bad = block > EXACT_INT
    if block.dtype.kind == "i":
        bad |= block < -EXACT_INT
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    raise DataError(f"activations of {_place(block, where, start, axis_name, per_sample)} hold "
                    f"{int(block[tuple(where)])}, beyond +-2**53: float64 thresholds cannot compare it exactly",
                    hint="scale the activations, or save them as float64 if rounding is acceptable")


def _place(block: np.ndarray, where: np.ndarray, start: int, axis_name: str, per_sample: int) -> str:
    place = f"{axis_name} {start + int(where[0])}"
    if axis_name == "sample" and block.ndim > 1:
        place += f", unit {int(where[1])}"
    elif per_sample and block.ndim > 1:
        place = f"sample {int(where[1]) // per_sample}, {place}"
    return place


def compare_dtype(dtype: np.dtype) -> np.dtype:
    """The precision masks are computed in: float32 when it holds every value of ``dtype`` exactly.

    float16/32 and small integers are exact in float32, where
    :func:`float32_thresholds` makes the comparison exact at half the memory;
    float64 and wide integers are compared in float64, or a value a hair
    below the threshold could round up past it; 64-bit integers beyond
    2**53, which float64 cannot hold, are refused (:func:`check_exact_integers`).
    """
    dtype = np.dtype(dtype)
    exact = (dtype.kind == "f" and dtype.itemsize <= 4) or (dtype.kind in "iu" and dtype.itemsize <= 2)
    return np.dtype(np.float32) if exact else np.dtype(np.float64)


def empty_layer_warning(masks: "UnitMasks", layer: str) -> str | None:
    """A warning when no unit of the layer is active anywhere (constant activations, or a threshold too high)."""
    if masks.n_units and not len(masks.positions):
        units = "its only unit is" if masks.n_units == 1 else f"all {masks.n_units} of its units are"
        return (f"layer {layer!r}: {units} empty (no activation is above its threshold); "
                "are the activations constant, or the threshold too high?")
    return None


BLOCK_BYTES = 256 << 20  # working memory for one block of activations


def unit_thresholds(acts: np.ndarray, threshold: Threshold, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """float64 [U]: each unit's T_u over all samples and raw spatial positions.

    Units are read a few at a time so that one block (float64) stays under
    ``block_bytes``, whatever the number of samples.
    """
    n_units = acts.shape[1]
    if threshold.kind == "absolute":
        return np.full(n_units, threshold.value, dtype=np.float64)
    per_unit = 8 * acts.shape[0] * int(np.prod(acts.shape[2:]))
    chunk_units = max(1, block_bytes // max(1, per_unit))
    out = np.empty(n_units, dtype=np.float64)
    for start in range(0, n_units, chunk_units):
        raw = np.asarray(acts[:, start:start + chunk_units])
        raw = np.moveaxis(raw, 1, 0).reshape(raw.shape[1], -1)
        check_exact_integers(raw, start, "unit", int(np.prod(acts.shape[2:])))
        block = raw.astype(np.float64)
        check_finite(block, start, "unit", int(np.prod(acts.shape[2:])))
        out[start:start + block.shape[0]] = np.quantile(block, threshold.value, axis=1)
    return out


def unit_bands(acts: np.ndarray, rule: Threshold,
               block_bytes: int = BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 ([U] lower ends, [U] upper ends or None): masks are ``lower < a <= upper`` (:mod:`.bands`)."""
    if rule.kind in ("given", "masks"):
        raise DataError(f"threshold {rule}: not a rule to compute thresholds from; pass the thresholds array")
    if rule.upper is None:
        return unit_thresholds(acts, rule, block_bytes), None
    n_units = acts.shape[1]
    if rule.kind == "absolute":
        return np.full(n_units, rule.value), np.full(n_units, float(rule.upper))
    low, high = np.empty(n_units), np.empty(n_units)
    for start, block in _unit_blocks(acts, block_bytes):
        if rule.kind == "cluster":
            for i, row in enumerate(block):
                low[start + i], high[start + i] = bands.cluster_band(row, int(rule.value), int(rule.upper))
        else:
            low[start:start + len(block)], high[start:start + len(block)] = bands.quantile_ends(
                block, rule.value, float(rule.upper))
    return low, high


def _unit_blocks(acts: np.ndarray, block_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first unit, float64 [units, samples * raw positions]) blocks of a few units, finite values checked."""
    per_unit = 8 * acts.shape[0] * int(np.prod(acts.shape[2:]))
    chunk_units = max(1, block_bytes // max(1, per_unit))
    for start in range(0, acts.shape[1], chunk_units):
        block = np.asarray(acts[:, start:start + chunk_units], dtype=np.float64)
        block = np.moveaxis(block, 1, 0).reshape(block.shape[1], -1)
        check_finite(block, start, "unit", int(np.prod(acts.shape[2:])))
        yield start, block


def check_given_thresholds(thresholds: object, n_units: int, source: str = "thresholds") -> np.ndarray:
    """Per-unit thresholds given as data (``--thresholds FILE.npy``): float64 [U], finite, one per unit."""
    array = as_array(thresholds, source)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{source}: thresholds must be integer or float numbers, got dtype {array.dtype}")
    if array.ndim != 1 or len(array) != n_units:
        raise DataError(f"{source}: expected one threshold per unit, shape [{n_units}], got {list(array.shape)}")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise DataError(f"{source}: threshold of unit {int(bad[0])} is {array[bad[0]]}; every threshold must be "
                        "a finite number")
    return np.asarray(array, dtype=np.float64)


def float32_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """float32 t_u with ``x > t_u  <=>  x > T_u`` for every float32 x.

    t_u is the largest float32 not above T_u: if x > T_u then x > t_u; if
    x > t_u then x is at least the next float32, which is above T_u. So masks
    can be compared in float32, at half the memory, with the same result.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(over="ignore"):  # beyond float32's range a threshold becomes -inf or inf: still exact
        t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def active_positions(acts: np.ndarray, thresholds: np.ndarray, mask_shape: tuple[int, ...] | None,
                     block_bytes: int = BLOCK_BYTES,
                     progress: Callable[[int], None] | None = None,
                     upper: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (unit ids, positions) of active positions, block by block of samples.

    4-D activations are upsampled to ``mask_shape`` bilinearly; 2-D ones (one
    value per sample and unit) cover every position of their sample. A
    bilinear value is a convex combination of raw values, so a (sample, unit)
    map whose raw maximum is not above T_u has no active position: only the
    maps that can fire (about 1 in 20 at the default quantile) are
    upsampled, in batches of ``block_bytes``. Within a block, pairs are
    ordered by unit, then position. With ``upper``, a position is active when
    ``thresholds < a <= upper`` (a band, :mod:`.bands`).
    """
    per_sample = int(np.prod(mask_shape)) if mask_shape else 1
    dtype = compare_dtype(acts.dtype)
    t = float32_thresholds(thresholds) if dtype == np.float32 else np.asarray(thresholds, dtype=np.float64)
    # a <= upper  <=>  not (a > upper): the same float32 rounding keeps the upper end exact
    hi = None if upper is None else (float32_thresholds(upper) if dtype == np.float32
                                      else np.asarray(upper, dtype=np.float64))
    raw_size = int(np.prod(acts.shape[2:]))
    chunk = max(1, block_bytes // (dtype.itemsize * acts.shape[1] * raw_size))
    for start in range(0, acts.shape[0], chunk):
        raw = np.asarray(acts[start:start + chunk])
        check_exact_integers(raw, start)
        block = np.array(raw, dtype=dtype)
        check_finite(block, start)
        peak = block.reshape(block.shape[0], block.shape[1], -1).max(axis=2)           # [n, U]
        unit, sample = np.nonzero((peak > t[None, :]).T)                               # by unit, then sample
        if block.ndim == 4:
            yield from _upsampled(block, unit, sample, start, t, mask_shape, block_bytes, hi)
        else:
            if hi is not None:
                keep = block[sample, unit] <= hi[unit]
                unit, sample = unit[keep], sample[keep]
            offsets = np.arange(per_sample, dtype=np.int64)
            yield np.repeat(unit, per_sample), ((sample + start)[:, None] * per_sample + offsets).ravel()
        if progress:
            progress(block.shape[0])


def _upsampled(block: np.ndarray, unit: np.ndarray, sample: np.ndarray, start: int, t: np.ndarray,
               mask_shape: tuple[int, ...] | None, block_bytes: int,
               hi: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Active (unit, position) pairs of the given (sample, unit) maps, upsampled in batches."""
    import torch  # here, not at the top: opening a store must not wait for torch (start-up time)

    if not mask_shape or len(mask_shape) != 2:
        raise DataError("spatial activations [samples, units, h, w] need a store with a 2-D mask shape")
    per_sample = mask_shape[0] * mask_shape[1]
    batch = max(1, block_bytes // (block.itemsize * per_sample))
    for a in range(0, len(unit), batch):
        u, smp = unit[a:a + batch], sample[a:a + batch]
        maps = torch.from_numpy(block[smp, u][:, None])                                 # [m, 1, h, w]
        if tuple(maps.shape[2:]) != tuple(mask_shape):
            maps = torch.nn.functional.interpolate(maps, size=tuple(mask_shape), mode="bilinear",
                                                   align_corners=False)
        flat = maps.reshape(len(u), -1)
        hit = flat > torch.from_numpy(t[u])[:, None]
        if hi is not None:
            hit &= flat <= torch.from_numpy(hi[u])[:, None]
        hit = hit.numpy()
        which, pixel = np.nonzero(hit)
        yield u[which], (smp[which].astype(np.int64) + start) * per_sample + pixel
