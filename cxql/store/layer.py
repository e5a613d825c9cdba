"""A unit layer of a store: masks, signature histograms, thresholds (arrays mapped lazily).

Opening a layer only maps its arrays and checks their shapes against the
manifest; a missing or damaged file is reported by name.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import StoreError
from . import units as un


class Layer:
    """A layer's unit masks, histograms and thresholds (arrays mapped lazily)."""

    def __init__(self, name: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 n_positions: int) -> None:
        self.name = name
        self.meta = dict(meta)
        self.arrays = dict(arrays)
        self.n_positions = n_positions

    @property
    def n_units(self) -> int:
        return int(self.meta["units"])

    @property
    def threshold(self) -> un.Threshold:
        t = self.meta["threshold"]
        return un.Threshold(t["kind"], float(t["value"]))

    @property
    def thresholds(self) -> np.ndarray | None:
        return self.arrays.get("thresholds")

    @property
    def activations(self) -> np.ndarray | None:
        return self.arrays.get("activations")

    def unit_positions(self, u: int) -> np.ndarray:
        """Sorted positions where unit u is active."""
        if self.meta["encoding"] == "bits":
            return un.decode_bits_row(self.arrays["mask_bits"][u], self.n_positions)
        ptr = self.arrays["mask_indptr"]
        return np.asarray(self.arrays["mask_positions"][ptr[u]:ptr[u + 1]], dtype=np.int64)

    def describe(self) -> str:
        """One line for people: ``layer 'conv2': 16 units, threshold quantile:0.95, masks as positions``."""
        return (f"layer {self.name!r}: {self.n_units} units, threshold {self.threshold}, "
                f"masks as {self.meta['encoding']}")

    @cached_property
    def mask_sizes(self) -> np.ndarray:
        """int64 [U]: |M_u| for every unit."""
        ptr = self.arrays["hist_indptr"]
        cnt = np.asarray(self.arrays["hist_count"], dtype=np.int64)
        sums = np.concatenate([[0], np.cumsum(cnt)])
        return sums[ptr[1:]] - sums[ptr[:-1]]


def load_array(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if not path.exists():
        raise StoreError(f"{path}: missing file; the store is incomplete")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise StoreError(f"{path}: damaged array file ({exc})") from None
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise StoreError(f"{path}: has shape {list(arr.shape)}, the manifest says {list(shape)}")
    return arr


_LAYER_FILES = {"positions": ("hist_indptr", "hist_sig", "hist_count", "mask_indptr", "mask_positions"),
                "bits": ("hist_indptr", "hist_sig", "hist_count", "mask_bits")}


def open_layer(directory: Path, name: str, meta: Mapping[str, Any], n_positions: int) -> Layer:
    try:
        files = _LAYER_FILES[meta["encoding"]]
    except KeyError:
        raise StoreError(f"{directory}: unknown mask encoding {meta.get('encoding')!r}") from None
    units = int(meta["units"])
    arrays = {key: load_array(directory / f"{key}.npy") for key in files}
    for key in ("hist_indptr", "mask_indptr"):
        if key in arrays and arrays[key].shape != (units + 1,):
            raise StoreError(f"{directory / (key + '.npy')}: has shape {list(arrays[key].shape)}, "
                             f"expected [{units + 1}]")
    for key in ("thresholds", "activations"):
        if (directory / f"{key}.npy").exists():
            arrays[key] = load_array(directory / f"{key}.npy")
    return Layer(name, meta, arrays, n_positions)
