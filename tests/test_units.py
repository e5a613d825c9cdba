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


@pytest.mark.parametrize("spec", [0.5, "0.5", "value:0.5", "VALUE: 0.5", "v:0.5"])
def test_a_value_threshold_is_the_bare_number(spec) -> None:
    assert Threshold.parse(spec, Threshold("quantile", 0.9)) == Threshold("absolute", 0.5)
    store = store_with_images(10)
    acts = np.random.default_rng(2).normal(size=(10, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(store.add_units("a", acts, threshold=spec).mask_sizes,
                                  store.add_units("b", acts, threshold=0.5).mask_sizes)


@pytest.mark.parametrize("spec", ["value:", "value:x", "value:quantile:0.5", "value:inf"])
def test_a_malformed_value_threshold_is_refused(spec) -> None:
    with pytest.raises(DataError, match="threshold"):
        Threshold.parse(spec, Threshold("quantile", 0.9))


def test_set_threshold_takes_a_quoted_value_like_the_number() -> None:
    from cxql.resources import demo_store_path

    session = cxql.connect(demo_store_path())
    session.execute("SET layer = 'fc'")
    quoted = session.execute("SET threshold = 'value:0.5'; SEARCH unit 0, 3 LENGTH 2").rows
    assert quoted == session.execute("SET threshold = 0.5; SEARCH unit 0, 3 LENGTH 2").rows


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


def one_bad_value(shape, value, at) -> np.ndarray:
    acts = np.zeros(shape)
    acts[at] = value
    return acts


@pytest.mark.parametrize("acts, message", [
    (np.zeros((9, 2, 8, 8)), "has 9 samples but the store has 10"),
    (np.zeros((10, 2, 8)), "expected shape"),
    (np.full((10, 2, 8, 8), np.nan), "NaN"),
    (np.zeros((10, 0)), "no units"),
    (np.zeros((10, 2, 0, 0), np.float32), "spatial maps of size 0x0"),
    (np.zeros((10, 2, 4, 0), np.float32), "spatial maps of size 4x0"),
    (np.ones((10, 2), dtype=bool), "dtype bool"),
    (np.zeros((10, 2), dtype="datetime64[s]"), "dtype datetime64"),
    (np.zeros((10, 2), dtype="timedelta64[s]"), "dtype timedelta64"),
    (np.full((10, 2), "1.5"), "dtype <U3"),
    (np.zeros((10, 2), dtype=complex), "dtype complex128"),
    (np.zeros((10, 2), dtype=object), "dtype object"),
    (one_bad_value((10, 2, 4, 4), np.inf, (7, 1, 2, 3)), "sample 7, unit 1 contain inf"),
    (one_bad_value((10, 2, 4, 4), -np.inf, (3, 0, 0, 0)), "sample 3, unit 0 contain -inf"),
    (one_bad_value((10, 3), np.inf, (4, 2)), "sample 4, unit 2 contain inf"),
    (one_bad_value((10, 3), np.nan, (6, 1)), "sample 6, unit 1 contain NaN"),
])
def test_bad_activations_are_refused(acts, message) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[")):
        store_with_images(10).add_units("bad", acts)


@pytest.mark.parametrize("threshold", [np.inf, -np.inf, np.nan, "inf", "-inf", "nan", " NaN ", "1e999"])
def test_infinite_or_nan_thresholds_are_refused(threshold) -> None:
    store = store_with_images(10)
    with pytest.raises(DataError, match="threshold must be a finite number"):
        store.add_units("l", np.zeros((10, 2), np.float32), threshold=threshold)
    with pytest.raises(DataError, match="quantile level"):
        store.add_units("l", np.zeros((10, 2), np.float32), threshold=f"quantile:{threshold}".replace(" ", ""))
    assert "l" not in store.layers


@pytest.mark.parametrize("threshold", [None, 0.5])   # the quantile path and the absolute one
def test_infinite_activations_are_refused_on_every_path(threshold) -> None:
    """Per-pair samples (irregular text stores) compare without the block reader: check that path too."""
    text = cxql.ConceptStore.from_masks(np.ones((5, 1), bool), ["x"], sample_ids=[0, 0, 1, 2, 2], kind="text")
    with pytest.raises(DataError, match="sample 1, unit 0 contain inf"):
        text.add_units("l", np.array([[0.0], [np.inf], [1.0]]), threshold=threshold)
    with pytest.raises(DataError, match="contain inf"):
        store_with_images(10).add_units("l", one_bad_value((10, 2), np.inf, (9, 1)), threshold=threshold)


def ulp_cases() -> list[tuple[float, float, bool]]:
    """(threshold T, float64 value x, x > T) one ulp of float64 either side of T, for T a float32 or not."""
    between = float(np.float64(np.float32(1.0)) + 2.0 ** -23 - 2.0 ** -50)   # no float32 is this value
    cases = []
    for t in (1.0, between, -3.25, 0.0):
        cases += [(t, float(np.nextafter(t, -np.inf)), False), (t, t, False), (t, float(np.nextafter(t, np.inf)), True)]
    return cases


@pytest.mark.parametrize("t, x, active", ulp_cases())
@pytest.mark.parametrize("spatial", [False, True])
def test_float64_activations_compare_in_float64(t, x, active, spatial) -> None:
    """A value one ulp below the threshold is never active, nor one at it; one ulp above always is."""
    store = store_with_images(4, shape=(2, 2))
    acts = np.full((4, 1, 2, 2) if spatial else (4, 1), t - 1.0)
    acts[2, 0] = x
    layer = store.add_units("l", acts, threshold=t, on_warning=lambda message: None)
    assert layer.unit_positions(0).tolist() == ([8, 9, 10, 11] if active else [])


def test_float64_quantile_thresholds_split_close_values_exactly() -> None:
    """Values that float32 would merge into one keep their order against a float64 quantile."""
    base = 1.0 + 2.0 ** -30
    acts = (base + np.arange(100) * 2.0 ** -52).reshape(100, 1)   # all equal in float32
    store = cxql.ConceptStore.from_masks(np.ones((100, 1), bool), ["x"], kind="text")
    layer = store.add_units("l", acts, threshold="quantile:0.9")
    want = np.flatnonzero(acts[:, 0] > np.quantile(acts[:, 0], 0.9))
    assert layer.unit_positions(0).tolist() == want.tolist() and 5 <= len(want) <= 10


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                   np.uint8])
def test_every_numeric_dtype_gives_the_masks_of_exact_comparison(dtype) -> None:
    rng = np.random.default_rng(7)
    acts = (rng.normal(size=(10, 3, 8, 8)) * 50).astype(dtype)
    layer = store_with_images(10).add_units("l", acts, threshold=10.5)
    for u in range(3):
        want = np.flatnonzero(acts[:, u].reshape(-1).astype(np.float64) > 10.5)
        np.testing.assert_array_equal(layer.unit_positions(u), want)


@pytest.mark.parametrize("acts, threshold", [
    (np.ones((10, 2, 4, 4), np.float32), None),            # constant: the quantile is the value itself
    (np.ones((10, 2), np.float32), None),
    (np.random.default_rng(0).normal(size=(10, 2)), 99.0),  # nothing above the threshold
])
def test_a_layer_whose_every_unit_is_empty_is_added_with_a_warning(acts, threshold) -> None:
    store, heard = store_with_images(10), []
    layer = store.add_units("flat", acts, threshold=threshold, on_warning=heard.append)
    assert layer.mask_sizes.tolist() == [0, 0]
    assert len(heard) == 1 and "all 2 of its units are empty" in heard[0] and "'flat'" in heard[0]
    with pytest.warns(UserWarning, match="all 2 of its units are empty"):
        store.add_units("flat2", acts, threshold=threshold)


def test_a_layer_with_some_active_unit_adds_silently() -> None:
    heard: list[str] = []
    acts = np.zeros((10, 2), np.float32)
    acts[3, 1] = 1.0
    store_with_images(10).add_units("l", acts, threshold=0.5, on_warning=heard.append)
    assert heard == []


@pytest.mark.parametrize("add", [
    lambda store, name, **kw: store.add_units(name, np.ones((10, 2), np.float32), threshold=0.5, **kw),
    lambda store, name, **kw: store.add_unit_masks(name, np.zeros((640, 2), bool), **kw),
])
def test_an_existing_layer_is_replaced_only_when_asked(add) -> None:
    store = store_with_images(10)
    first = store.add_unit_masks("l", np.ones((640, 3), bool))
    with pytest.raises(DataError, match="already has a layer 'l'") as err:
        add(store, "l")
    assert "--replace" in str(err.value) and store.layers["l"] is first
    assert add(store, "l", replace=True).n_units == 2 and store.layers["l"].n_units == 2


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


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("t", [-1e308, -3.5e38, 3.5e38, 1e308])
def test_thresholds_beyond_float32_compare_exactly_without_warnings(t) -> None:
    from cxql.store.units import float32_thresholds

    x = np.array([-np.inf, -3.4e38, -1.0, 0.0, 3.4e38, np.inf], dtype=np.float32)
    t32 = float32_thresholds(np.array([t]))
    np.testing.assert_array_equal(x > t32[0], x.astype(np.float64) > t)


@pytest.mark.filterwarnings("error")
def test_set_threshold_far_below_every_activation_activates_everything_quietly() -> None:
    from cxql.resources import demo_store_path

    session = cxql.connect(demo_store_path())
    session.execute("SET layer = 'fc'")
    rows = {t: session.execute(f"SET threshold = {t}; EVAL ink ON unit 3").rows for t in ("-1e308", "-1e30")}
    assert rows["-1e308"] == rows["-1e30"] and rows["-1e308"][0]["precision"] == 1.0  # the unit covers every position


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_activations_rethreshold_to_the_layers_own_masks(dtype) -> None:
    """SET threshold works on the kept activations: at the layer's thresholds they give its masks, ties and all."""
    t = float(np.float64(np.float32(1.0)) + 2.0 ** -23 - 2.0 ** -50)
    values = np.array([np.nextafter(t, -np.inf), t, np.nextafter(t, np.inf), 0.0, 2.0])
    acts = np.random.default_rng(8).choice(values, size=(10, 3, 2, 2)).astype(dtype)
    store = store_with_images(10, shape=(2, 2))
    layer = store.add_units("l", acts, threshold=t)
    assert layer.activations.dtype == dtype
    again = store.unit_masks_for(layer.activations, layer.thresholds)
    for u in range(3):
        np.testing.assert_array_equal(again.unit(u), layer.unit_positions(u))


@pytest.mark.parametrize("convert", [
    lambda a: torch.from_numpy(a),
    lambda a: torch.from_numpy(a).bfloat16(),     # numpy has no bfloat16: widened to float32 exactly
    lambda a: torch.from_numpy(a).requires_grad_(),
    lambda a: a.tolist(),
])
def test_tensors_and_nested_lists_give_the_masks_of_their_array(convert) -> None:
    acts = np.random.default_rng(9).normal(size=(10, 3, 4, 4)).astype(np.float32)
    acts = torch.from_numpy(acts).bfloat16().float().numpy()   # values every form holds exactly
    store = store_with_images(10)
    want = store.add_units("array", acts, threshold=0.25)
    got = store.add_units("other", convert(acts), threshold=0.25)
    for u in range(3):
        np.testing.assert_array_equal(got.unit_positions(u), want.unit_positions(u))


@pytest.mark.parametrize("acts, message", [
    (torch.zeros(10, 2).to_sparse(), "sparse_coo tensor; pass it dense"),
    ([[1.0, 2.0]] * 9 + [[1.0]], "not an array of activations"),
])
def test_sparse_tensors_and_ragged_lists_are_refused(acts, message) -> None:
    with pytest.raises(DataError, match=message):
        store_with_images(10).add_units("l", acts)


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**62])
@pytest.mark.parametrize("threshold", [2.0**53, "quantile:0.5"])
def test_integers_that_float64_cannot_hold_are_refused(value, threshold) -> None:
    # compared as float64, 2**53 + 1 became 2**53 and was not above the threshold 2**53
    store = cxql.ConceptStore.from_masks(np.eye(2, dtype=bool), ["a", "b"])
    acts = np.array([[value], [0]], dtype=np.int64)
    with pytest.raises(DataError, match=r"sample 0, unit 0 .*2\*\*53"):
        store.add_units("l", acts, threshold)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_integers_up_to_2_to_the_53_compare_exactly(dtype) -> None:
    store = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"])
    acts = np.array([[2**53], [2**53 - 1], [0]], dtype=dtype)
    layer = store.add_units("l", acts, float(2**53 - 2))
    assert layer.unit_positions(0).tolist() == [0, 1]
    assert store.add_units("m", acts, float(2**53 - 1)).unit_positions(0).tolist() == [0]
