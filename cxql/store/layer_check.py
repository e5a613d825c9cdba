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

#: Bit-packed masks up to this size are popcounted to check mask sizes (about 0.1 s).
POPCOUNT_BYTES = 64 << 20
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def checked_histograms(layer: str, arrays: Mapping[str, np.ndarray], encoding: str, sig_counts: np.ndarray,
                       files: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, signature ids, counts) of a layer, as int64 arrays, after checking them; else StoreError."""
    def where(key: str) -> str:
        return str(files.get(key, f"layer {layer!r} {key}"))

    indptr = np.asarray(arrays["hist_indptr"], dtype=np.int64)
    sig = np.asarray(arrays["hist_sig"], dtype=np.int64)
    cnt = np.asarray(arrays["hist_count"], dtype=np.int64)
    steps = np.diff(indptr)
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(sig) or np.any(steps < 0):
        raise StoreError(f"{where('hist_indptr')}: not a valid histogram pointer array (it must rise "
                         f"from 0 to {len(sig)}); the layer's histograms are damaged")
    n_sig = len(sig_counts)
    bad = np.flatnonzero((sig < 0) | (sig >= n_sig))
    if len(bad):
        e = int(bad[0])
        raise StoreError(f"{where('hist_sig')}: entry {e} (unit {_unit(indptr, e)}) holds signature id "
                         f"{int(sig[e])}, but the store has signatures 0..{n_sig - 1}")
    sums = np.concatenate([[0], np.cumsum(cnt)])
    per_unit = sums[indptr[1:]] - sums[indptr[:-1]]
    sizes, mask_key = _mask_sizes(arrays, encoding)
    if sizes is not None and len(sizes) == len(per_unit):
        bad = np.flatnonzero(per_unit != sizes)
        if len(bad):
            u = int(bad[0])
            # the right total with a wrong split between units: the pointers moved, not the counts
            key = "hist_indptr" if int(sums[-1]) == int(sizes.sum()) else "hist_count"
            raise StoreError(f"{where(key)}: unit {u}'s histogram adds up to {int(per_unit[u])} positions, "
                             f"but its mask ({where(mask_key)}) has {int(sizes[u])}")
    starts = np.zeros(len(sig), dtype=bool)
    starts[indptr[:-1][steps > 0]] = True
    bad = np.flatnonzero((np.diff(sig) <= 0) & ~starts[1:]) + 1
    if len(bad):
        e = int(bad[0])
        raise StoreError(f"{where('hist_sig')}: unit {_unit(indptr, e)} lists signature ids out of order "
                         f"or twice (entry {e})")
    carried = np.asarray(sig_counts, dtype=np.int64)[sig]
    bad = np.flatnonzero((cnt < 1) | (cnt > carried))
    if len(bad):
        e = int(bad[0])
        raise StoreError(f"{where('hist_count')}: entry {e} (unit {_unit(indptr, e)}) counts {int(cnt[e])} "
                         f"positions of signature {int(sig[e])}, which {int(carried[e])} positions carry")
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
