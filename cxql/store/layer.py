"""A unit layer of a store: masks, signature histograms, thresholds (arrays mapped lazily).

Layers are opened by :mod:`cxql.store.reader`, which maps their arrays and
checks them against the manifest; a missing or damaged file is reported by name.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import numpy as np

from . import units as un
from .layer_check import checked_histograms


class Layer:
    """A layer's unit masks, histograms and thresholds (arrays mapped lazily)."""

    def __init__(self, name: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 n_positions: int, sig_counts: np.ndarray | None = None,
                 files: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.meta = dict(meta)
        self.arrays = dict(arrays)
        self.n_positions = n_positions
        self.sig_counts = sig_counts  # positions per signature of the store: bounds the histogram counts
        self.files = dict(files or {})  # array key -> file, to name in errors

    @property
    def n_units(self) -> int:
        return int(self.meta["units"])

    @property
    def threshold(self) -> un.Threshold:
        t = self.meta["threshold"]
        return un.Threshold(t["kind"], float(t["value"]), None if t.get("upper") is None else float(t["upper"]))

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
    def histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, signature ids, counts): the per-unit signature histograms, checked on first use.

        Every IoU is computed from these, so a damaged byte must be an error,
        not a different answer (:mod:`cxql.store.layer_check`).
        """
        counts = self.sig_counts
        if counts is None:  # a layer made in memory by this process: only the id range can be checked
            counts = np.full(int(np.max(self.arrays["hist_sig"], initial=-1)) + 1, np.iinfo(np.int64).max)
        return checked_histograms(self.name, self.arrays, self.meta["encoding"], counts, self.files)

    @cached_property
    def mask_sizes(self) -> np.ndarray:
        """int64 [U]: |M_u| for every unit."""
        ptr, _, cnt = self.histograms
        return un.unit_sums(ptr, cnt)
