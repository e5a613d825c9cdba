"""Concept masks as a table of distinct signatures.

A probe dataset has N positions and K concepts, but far fewer distinct *sets*
of concepts than positions: every sky pixel of one image looks alike. So the
store keeps each distinct set once, as a bit-packed row (a *signature*), and
each position keeps only the id of its signature. A formula is then evaluated
once per signature and its counts weighted by how many positions carry that
signature, which is exact and shrinks all work by the ratio N / S.

Bit layout: row ``s`` of the [S, ceil(K/8)] uint8 table holds concept ``k`` in
bit ``k % 8`` (little bit order) of byte ``k // 8``. Size on disk is about
``S * K / 8 + 4 * N`` bytes, never more than bit-packing the dense [N, K] masks
plus the 4-byte ids.
"""

from __future__ import annotations

import numpy as np


def smallest_uint(max_value: int) -> type:
    """The narrowest unsigned dtype holding ``max_value`` (ids and counts stay small on disk)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def packed_width(n_concepts: int) -> int:
    """Bytes per signature row."""
    return (n_concepts + 7) // 8


def pack_rows(masks: np.ndarray) -> np.ndarray:
    """Bool [n, K] -> uint8 [n, ceil(K/8)], little bit order."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=1, bitorder="little")


def unpack_rows(packed: np.ndarray, n_concepts: int) -> np.ndarray:
    """uint8 [n, ceil(K/8)] -> bool [n, K]."""
    return np.unpackbits(packed, axis=1, count=n_concepts, bitorder="little").astype(bool)


def concept_column(packed: np.ndarray, k: int) -> np.ndarray:
    """Bool [n]: which rows hold concept k, read straight from the packed bits."""
    return ((packed[:, k >> 3] >> (k & 7)) & 1).astype(bool)


class SignatureBuilder:
    """Assigns signature ids to packed rows as they stream in.

    Rows arrive in chunks (a few images at a time); each chunk is deduplicated
    with numpy, and only its distinct rows touch the Python dict, so memory is
    bounded by the number of distinct signatures, not of positions.
    """

    def __init__(self, n_concepts: int) -> None:
        self.n_concepts = n_concepts
        self.width = packed_width(n_concepts)
        self._ids: dict[bytes, int] = {}
        self._rows: list[bytes] = []
        self._counts: list[int] = []

    def add(self, packed: np.ndarray) -> np.ndarray:
        """Ids (uint32 [n]) for the packed rows ``packed`` [n, width]."""
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.shape[0] == 0:
            return np.zeros(0, dtype=np.uint32)
        view = packed.view(np.dtype((np.void, self.width))).ravel()
        uniq, inverse, counts = np.unique(view, return_inverse=True, return_counts=True)
        local_ids = np.empty(len(uniq), dtype=np.uint32)
        for i, (row, count) in enumerate(zip(uniq, counts)):
            key = row.tobytes()
            sid = self._ids.get(key)
            if sid is None:
                sid = self._ids[key] = len(self._rows)
                self._rows.append(key)
                self._counts.append(0)
            self._counts[sid] += int(count)
            local_ids[i] = sid
        return local_ids[inverse.ravel()]

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [S, width] signature bits, int64 [S] positions per signature)."""
        bits = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(len(self._rows), self.width)
        return bits.copy(), np.asarray(self._counts, dtype=np.int64)


def concept_counts(bits: np.ndarray, counts: np.ndarray, n_concepts: int,
                   chunk: int = 1 << 16) -> np.ndarray:
    """int64 [K]: positions covered by each concept (exact)."""
    total = np.zeros(n_concepts, dtype=np.int64)
    for start in range(0, bits.shape[0], chunk):
        rows = unpack_rows(bits[start:start + chunk], n_concepts)
        total += counts[start:start + chunk] @ rows.astype(np.int64)
    return total
