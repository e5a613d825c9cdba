"""Cheap, exact consistency checks of a layer's signature histograms, run when a layer is first used.

Every IoU of a unit is computed from its histogram (which signatures it
fires on, and on how many positions of each), so a changed byte there is a
wrong answer, not an error; opening reads headers only and cannot see it.
The histogram arrays are small (one entry per unit and signature it touches),
so before their first use they are checked against what they summarise:

- ``hist_indptr`` never decreases;
- ``hist_sig`` holds signature ids of the store, increasing within a unit;
- ``hist_count`` is at least 1 and at most the positions carrying that signature;
- each unit's counts add up to its mask size: ``mask_indptr`` for masks kept as
  positions, a popcount of ``mask_bits`` for bit-packed masks (when those are
  at most :data:`POPCOUNT_BYTES`; ``cxql store check`` covers larger ones by checksum).

A fault raises a StoreError naming the file (``cxql store check`` then
tells which files changed since they were written).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import StoreError
from .unit_masks import unit_chunks

#: Bit-packed masks up to this size are popcounted to check mask sizes (about 0.1 s).
POPCOUNT_BYTES = 64 << 20
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def checked_histograms(layer: str, arrays: Mapping[str, np.ndarray], encoding: str, sig_counts: np.ndarray,
                       files: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, signature ids, counts) of a layer, as int64 arrays, after checking them; else StoreError.

    The entries are read unit chunk by unit chunk (a layer of sparse
    features has a billion of them); each check keeps its first fault, and
    the faults are raised in the order above, so the message does not depend on the chunking.
    """
    def where(key: str) -> str:
        return str(files.get(key, f"layer {layer!r} {key}"))

    indptr = np.asarray(arrays["hist_indptr"], dtype=np.int64)
    sig = np.asarray(arrays["hist_sig"], dtype=np.int64)  # int64 on disk: a view of the map, not a copy
    cnt = np.asarray(arrays["hist_count"], dtype=np.int64)
    steps = np.diff(indptr)
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(sig) or np.any(steps < 0):
        raise StoreError(f"{where('hist_indptr')}: not a valid histogram pointer array (it must rise "
                         f"from 0 to {len(sig)}); the layer's histograms are damaged")
    n_sig = len(sig_counts)
    carried_all = np.asarray(sig_counts, dtype=np.int64)
    faults: dict[str, str] = {}
    per_unit = np.zeros(len(indptr) - 1, dtype=np.int64)
    for u0, u1 in unit_chunks(indptr):
        a, b = int(indptr[u0]), int(indptr[u1])
        s, c = np.asarray(sig[a:b]), np.asarray(cnt[a:b])
        local = indptr[u0:u1 + 1] - a
        sums = np.concatenate([[0], np.cumsum(c)])
        per_unit[u0:u1] = sums[local[1:]] - sums[local[:-1]]
        outside = (s < 0) | (s >= n_sig)
        bad = np.flatnonzero(outside)
        if len(bad) and "range" not in faults:
            e = a + int(bad[0])
            faults["range"] = (f"{where('hist_sig')}: entry {e} (unit {_unit(indptr, e)}) holds signature id "
                               f"{int(sig[e])}, but the store has signatures 0..{n_sig - 1}")
        starts = np.zeros(len(s), dtype=bool)
        starts[local[:-1][np.diff(local) > 0]] = True
        bad = np.flatnonzero((np.diff(s) <= 0) & ~starts[1:]) + 1
        if len(bad) and "order" not in faults:
            e = a + int(bad[0])
            faults["order"] = (f"{where('hist_sig')}: unit {_unit(indptr, e)} lists signature ids out of order "
                               f"or twice (entry {e})")
        carried = carried_all[np.where(outside, 0, s)]
        bad = np.flatnonzero(((c < 1) | (c > carried)) & ~outside)
        if len(bad) and "count" not in faults:
            e = a + int(bad[0])
            faults["count"] = (f"{where('hist_count')}: entry {e} (unit {_unit(indptr, e)}) counts {int(cnt[e])} "
                               f"positions of signature {int(sig[e])}, which {int(carried[bad[0]])} positions carry")
    if "range" in faults:
        raise StoreError(faults["range"])
    sizes, mask_key = _mask_sizes(arrays, encoding)
    if sizes is not None and len(sizes) == len(per_unit):
        bad = np.flatnonzero(per_unit != sizes)
        if len(bad):
            u = int(bad[0])
            # the right total with a wrong split between units: the pointers moved, not the counts
            key = "hist_indptr" if int(per_unit.sum()) == int(sizes.sum()) else "hist_count"
            raise StoreError(f"{where(key)}: unit {u}'s histogram adds up to {int(per_unit[u])} positions, "
                             f"but its mask ({where(mask_key)}) has {int(sizes[u])}")
    for kind in ("order", "count"):
        if kind in faults:
            raise StoreError(faults[kind])
    return indptr, sig, cnt


def _unit(indptr: np.ndarray, entry: int) -> int:
    return int(np.searchsorted(indptr, entry, side="right")) - 1


def _mask_sizes(arrays: Mapping[str, np.ndarray], encoding: str) -> tuple[np.ndarray | None, str]:
    """Each unit's mask size from the masks themselves, when that is cheap (None otherwise).

    A layer built in memory from histograms alone (``benchmarks/search.py``) has no masks to compare.
    """
    if "mask_indptr" not in arrays and "mask_bits" not in arrays:
        return None, "mask_bits"
    if encoding == "positions":
        return np.diff(np.asarray(arrays["mask_indptr"], dtype=np.int64)), "mask_indptr"
    bits = arrays["mask_bits"]
    if bits.nbytes > POPCOUNT_BYTES:
        return None, "mask_bits"
    rows = max(1, (16 << 20) // max(1, bits.shape[1]))
    sizes = np.zeros(bits.shape[0], dtype=np.int64)
    for start in range(0, bits.shape[0], rows):
        sizes[start:start + rows] = _POPCOUNT[np.asarray(bits[start:start + rows])].sum(axis=1, dtype=np.int64)
    return sizes, "mask_bits"
