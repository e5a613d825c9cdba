"""Unit masks from activations: SPEC's quantile, bilinear upsampling and strict threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
from cxql.errors import DataError
from cxql.store.units import Threshold


def store_with_images(n_images: int, shape=(8, 8), seed: int = 0) -> cxql.ConceptStore:
    rng = np.random.default_rng(seed)
    n = n_images * shape[0] * shape[1]
    return cxql.ConceptStore.from_masks(rng.random((n, 3)) < 0.3, ["a", "b", "c"], mask_shape=shape)


def expected_masks(acts: np.ndarray, shape, level: float | None = 0.995) -> np.ndarray:
    """SPEC 1, written out: quantile of raw values (None: 0), upsample, compare strictly. -> bool [N, U]"""
    t = (np.quantile(acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1), level, axis=1)
         if level is not None else np.zeros(acts.shape[1]))
    up = torch.nn.functional.interpolate(torch.from_numpy(acts), size=shape, mode="bilinear",
                                         align_corners=False).numpy().astype(np.float64)
    masks = up > t[None, :, None, None]
    return masks.transpose(0, 2, 3, 1).reshape(-1, acts.shape[1])


@pytest.mark.parametrize("raw", [(4, 4), (8, 8), (3, 5)])
def test_spatial_activations_follow_the_spec(raw) -> None:
    store = store_with_images(20)
    acts = np.random.default_rng(1).normal(size=(20, 5, *raw)).astype(np.float32)
    layer = store.add_units("conv", acts)
    want = expected_masks(acts, (8, 8))
    for u in range(5):
        np.testing.assert_array_equal(layer.unit_positions(u), np.flatnonzero(want[:, u]))
    np.testing.assert_allclose(layer.thresholds, np.quantile(acts.transpose(1, 0, 2, 3).reshape(5, -1), 0.995, axis=1))


def test_absolute_and_quantile_thresholds() -> None:
    store = store_with_images(10)
    acts = np.random.default_rng(2).normal(size=(10, 3, 8, 8)).astype(np.float32)
    absolute = store.add_units("abs", acts, threshold=0.5)
    np.testing.assert_array_equal(absolute.unit_positions(0),
                                  np.flatnonzero(acts[:, 0].reshape(-1) > np.float32(0.5)))
    q = store.add_units("q", acts, threshold="quantile:0.9")
    assert q.threshold == Threshold("quantile", 0.9)
    assert abs(len(q.unit_positions(1)) / (10 * 64) - 0.1) < 0.01


def test_non_spatial_activations_cover_their_whole_sample() -> None:
    store = store_with_images(6, shape=(2, 2))
    acts = np.array([[1.0], [0.0], [2.0], [0.0], [0.0], [3.0]], dtype=np.float32)
    layer = store.add_units("fc", acts, threshold=0.5)
    assert layer.unit_positions(0).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 20, 21, 22, 23]


def test_text_stores_default_to_positive_activations() -> None:
    store = cxql.ConceptStore.from_masks(np.ones((4, 1), dtype=bool), ["x"], kind="text")
    layer = store.add_units("pool", np.array([[0.0, 1.0], [0.5, -1.0], [-0.1, 0.0], [2.0, 3.0]]))
    assert layer.unit_positions(0).tolist() == [1, 3]
    assert layer.unit_positions(1).tolist() == [0, 3]


@pytest.mark.parametrize("acts, message", [
    (np.zeros((9, 2, 8, 8)), "has 9 samples but the store has 10"),
    (np.zeros((10, 2, 8)), "expected shape"),
    (np.full((10, 2, 8, 8), np.nan), "NaN"),
    (np.zeros((10, 0)), "no units"),
])
def test_bad_activations_are_refused(acts, message) -> None:
    with pytest.raises(DataError, match=message):
        store_with_images(10).add_units("bad", acts)


def test_dense_units_are_bit_packed_and_sparse_ones_listed() -> None:
    store = store_with_images(20)
    dense = store.add_unit_masks("dense", np.random.default_rng(3).random((20 * 64, 4)) < 0.5)
    sparse = store.add_unit_masks("sparse", np.random.default_rng(3).random((20 * 64, 4)) < 0.005)
    assert dense.meta["encoding"] == "bits" and sparse.meta["encoding"] == "positions"


def test_float32_thresholds_compare_like_the_float64_ones() -> None:
    from cxql.store.units import float32_thresholds

    rng = np.random.default_rng(4)
    x = rng.normal(size=20000).astype(np.float32)
    # thresholds that are float32 values, values between two float32s, and quantiles of x
    t = np.concatenate([x[:50].astype(np.float64), x[50:100].astype(np.float64) + 1e-12,
                        x[100:150].astype(np.float64) - 1e-12, np.quantile(x, [0.5, 0.9, 0.995])])
    t32 = float32_thresholds(t)
    assert t32.dtype == np.float32
    np.testing.assert_array_equal(x[None, :] > t32[:, None], x[None, :].astype(np.float64) > t[:, None])


def test_big_layers_are_processed_in_bounded_blocks() -> None:
    from cxql.store.units import active_positions, masks_from_pairs

    acts = np.random.default_rng(5).normal(size=(12, 3, 2, 2)).astype(np.float32)
    seen = []
    pairs = list(active_positions(acts, np.zeros(3), (8, 8), block_bytes=3 * 4 * 4 * 5,
                                  progress=seen.append))
    assert seen == [5, 5, 2]
    masks = masks_from_pairs(iter(pairs), 3)
    want = expected_masks(acts, (8, 8), level=None)
    for u in range(3):
        np.testing.assert_array_equal(masks.unit(u), np.flatnonzero(want[:, u]))
