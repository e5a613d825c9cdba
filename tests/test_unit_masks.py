"""Signature histograms, unit chunk by unit chunk, equal one np.unique per unit."""

from __future__ import annotations

import numpy as np
import pytest

from cxql.store.ids import FILES, SampleLocalIds, encode_sample_local
from cxql.store.unit_masks import UnitMasks, csr_from_lists, histogram_chunks, histograms, write_histograms


def per_unit_reference(masks: UnitMasks, position_sig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [np.unique(np.asarray(position_sig[masks.unit(u)], dtype=np.int64), return_counts=True)
             for u in range(masks.n_units)]
    indptr = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])]).astype(np.int64)
    return (indptr, np.concatenate([p[0] for p in parts] + [np.zeros(0, np.int64)]),
            np.concatenate([p[1] for p in parts] + [np.zeros(0, np.int64)]))


def random_masks(rng, n_positions: int, n_units: int) -> UnitMasks:
    sizes = rng.integers(0, n_positions // 2, n_units)
    sizes[rng.integers(0, n_units)] = 0  # an empty unit
    return csr_from_lists([np.sort(rng.choice(n_positions, s, replace=False)) for s in sizes])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_sig", [3, 400])      # few signatures: bincount; many: sort
@pytest.mark.parametrize("chunk", [1, 13, 1 << 22])
def test_chunked_histograms_equal_the_per_unit_reference(seed, n_sig, chunk):
    rng = np.random.default_rng(seed)
    position_sig = rng.integers(0, n_sig, 300).astype(np.uint32)
    masks = random_masks(rng, 300, 9)
    parts = list(histogram_chunks(masks, position_sig, chunk))
    got = (np.concatenate([[0], np.cumsum(np.concatenate([p[0] for p in parts]))]),
           np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
    for a, b in zip(got, per_unit_reference(masks, position_sig)):
        assert a.dtype == np.int64 and np.array_equal(a, b)
    for a, b in zip(histograms(masks, position_sig), per_unit_reference(masks, position_sig)):
        assert np.array_equal(a, b)


def test_written_histograms_equal_the_in_memory_ones_with_sample_local_ids(tmp_path, monkeypatch):
    import cxql.store.unit_masks as um

    monkeypatch.setattr(um, "HIST_CHUNK", 11)
    rng = np.random.default_rng(7)
    plain = rng.integers(0, 50, 240).astype(np.uint32)
    offsets = np.arange(0, 241, 12, dtype=np.int64)
    parts: dict = {}
    encode_sample_local(plain, offsets, lambda key, shape, dtype: parts.setdefault(key, np.zeros(shape, dtype)))
    masks = random_masks(rng, 240, 6)
    staged = write_histograms(masks, plain, tmp_path)
    for key, expected in zip(("hist_indptr", "hist_sig", "hist_count"), per_unit_reference(masks, plain)):
        assert np.array_equal(np.load(staged[key].file), expected), key
    ids = SampleLocalIds(*(parts[k] for k in FILES), offsets)
    for a, b in zip(histograms(masks, ids), per_unit_reference(masks, plain)):
        assert np.array_equal(a, b)
