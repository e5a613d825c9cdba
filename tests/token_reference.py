"""Plain reference computations for token-store tests (position-level masks, shifts within samples)."""

from __future__ import annotations

import numpy as np

from cxql.store import signatures as sig


def position_masks(store) -> dict[str, np.ndarray]:
    """Every concept's mask over positions, read from the signature table."""
    rows = sig.unpack_rows(np.asarray(store.signature_bits), len(store.concepts))
    dense = rows[np.asarray(store.position_signatures)]
    return {c.qualified: dense[:, c.index] for c in store.concepts}


def sample_of(offsets: np.ndarray) -> np.ndarray:
    """Each position's sample index, by a plain loop."""
    out = []
    for s in range(len(offsets) - 1):
        out += [s] * int(offsets[s + 1] - offsets[s])
    return np.array(out, dtype=np.int64)


def prev(mask: np.ndarray, offsets: np.ndarray, k: int = 1) -> np.ndarray:
    """Position i: mask holds at i-k, and i-k is in i's sample (a plain loop)."""
    owner = sample_of(offsets)
    return np.array([i - k >= 0 and owner[i - k] == owner[i] and bool(mask[i - k]) for i in range(len(mask))])


def next_(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    owner = sample_of(offsets)
    n = len(mask)
    return np.array([i + 1 < n and owner[i + 1] == owner[i] and bool(mask[i + 1]) for i in range(n)])


def within(mask: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(len(mask), bool)
    for j in range(1, k + 1):
        out |= prev(mask, offsets, j)
    return out
