"""Bands, clusters and per-unit thresholds (issue 14 items 2 and 3): masks against direct numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
from cxql.errors import CxqlError, DataError
from cxql.store import bands
from cxql.store.units import Threshold

SHAPE = (6, 6)


def vision_store(n_images: int = 24, seed: int = 0) -> cxql.ConceptStore:
    rng = np.random.default_rng(seed)
    return cxql.ConceptStore.from_masks(rng.random((n_images * SHAPE[0] * SHAPE[1], 5)) < 0.3,
                                        [f"c{i}" for i in range(5)], mask_shape=SHAPE)


def tied_acts(n_images: int = 24, units: int = 4, raw=(3, 3), seed: int = 1) -> np.ndarray:
    """ReLU-like activations with many ties (rounded to quarters, a third of them zero)."""
    rng = np.random.default_rng(seed)
    acts = np.round(rng.gamma(2.0, 1.0, size=(n_images, units, *raw)) * 4) / 4
    acts[rng.random(acts.shape) < 0.33] = 0
    return acts.astype(np.float32)


def upsampled(acts: np.ndarray) -> np.ndarray:
    """float64 [N, U]: each position's value, as the masks compare it (bilinear, align_corners=False)."""
    up = torch.nn.functional.interpolate(torch.from_numpy(acts), size=SHAPE, mode="bilinear",
                                         align_corners=False).numpy().astype(np.float64)
    return up.transpose(0, 2, 3, 1).reshape(-1, acts.shape[1])


def raw_rows(acts: np.ndarray) -> np.ndarray:
    return acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1).astype(np.float64)


def reference_clusters(values: np.ndarray, n: int) -> np.ndarray:
    """Plain Lloyd's k-means on the unsorted values (init at quantiles (i+.5)/n), nearest centre, ties lower."""
    x = values[values > 0]
    centres = np.quantile(x, (np.arange(n) + 0.5) / n)
    labels = None
    for _ in range(1000):
        dist = np.abs(x[:, None] - centres[None, :])
        new = np.argmin(dist, axis=1)  # the first (lowest) centre on a tie
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        centres = np.sort(np.array([x[labels == i].mean() if (labels == i).any() else centres[i]
                                    for i in range(n)]))
    return centres


def band_masks(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return (values > low[None, :]) & (values <= high[None, :])


def layer_masks(layer, n_units: int) -> list[np.ndarray]:
    return [layer.unit_positions(u) for u in range(n_units)]


@pytest.mark.parametrize("a,b", [(0.9, 0.99), (0.5, 0.8), (0.0, 0.4), (0.7, 1.0)])
def test_quantile_band_is_numpy_quantiles_then_the_band(a, b) -> None:
    store, acts = vision_store(), tied_acts()
    layer = store.add_units("band", acts, threshold=f"quantile:{a}..{b}")
    rows = raw_rows(acts)
    low = np.quantile(rows, a, axis=1) if a > 0 else np.full(4, -np.inf)
    high = np.quantile(rows, b, axis=1) if b < 1 else np.full(4, np.inf)
    want = band_masks(upsampled(acts), low, high)
    for u, got in enumerate(layer_masks(layer, 4)):
        np.testing.assert_array_equal(got, np.flatnonzero(want[:, u]))
    assert str(layer.threshold) == f"quantile:{a:g}..{b:g}"


def test_the_top_band_is_the_default_mask() -> None:
    store, acts = vision_store(), np.random.default_rng(3).normal(size=(24, 4, 3, 3)).astype(np.float32)
    top, default = store.add_units("top", acts, threshold="quantile:0.995..1"), store.add_units("d", acts)
    for u in range(4):
        np.testing.assert_array_equal(top.unit_positions(u), default.unit_positions(u))


def test_value_band() -> None:
    store, acts = vision_store(), tied_acts()
    layer = store.add_units("v", acts, threshold="value:0.5..2.0")
    want = band_masks(upsampled(acts), np.full(4, 0.5), np.full(4, 2.0))
    for u, got in enumerate(layer_masks(layer, 4)):
        np.testing.assert_array_equal(got, np.flatnonzero(want[:, u]))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_clusters_partition_the_positive_activations(n) -> None:
    store, acts = vision_store(), tied_acts()
    rows = raw_rows(acts)
    values = upsampled(acts)
    covered = np.zeros_like(values, dtype=int)
    for k in range(1, n + 1):
        layer = store.add_units(f"k{k}", acts, threshold=f"cluster:{k}/{n}")
        low, high = np.empty(4), np.empty(4)
        for u in range(4):
            centres = reference_clusters(rows[u], n)
            edges = np.concatenate([[0.0], (centres[:-1] + centres[1:]) / 2, [np.inf]])
            low[u], high[u] = edges[k - 1], edges[k]
        want = band_masks(values, low, high)
        covered += want
        for u, got in enumerate(layer_masks(layer, 4)):
            np.testing.assert_array_equal(got, np.flatnonzero(want[:, u]))
    np.testing.assert_array_equal(covered, (values > 0).astype(int))  # n clusters: every positive value once


def test_kmeans_is_deterministic_and_ascending() -> None:
    x = np.random.default_rng(5).gamma(2.0, size=1000)
    c = bands.kmeans_1d(x, 4)
    assert np.all(np.diff(c) > 0)
    np.testing.assert_array_equal(c, bands.kmeans_1d(x[::-1].copy(), 4))
    np.testing.assert_allclose(c, reference_clusters(x, 4))


def test_search_eval_match_follow_set_threshold_bands() -> None:
    """SET threshold to a band: the same rows as a layer of the band's masks given directly."""
    store, acts = vision_store(), tied_acts()
    direct = store.add_units("direct", acts, threshold="cluster:2/3")
    masks = np.zeros((store.n_positions, 4), dtype=bool)
    for u in range(4):
        masks[direct.unit_positions(u), u] = True
    store.add_unit_masks("given", masks)
    store.add_units("live", acts)
    session = cxql.connect(store)
    session.execute("SET layer = 'given'")
    queries = ("SEARCH unit * LENGTH 2", "SEARCH unit * LENGTH 2 EXACT", "EVAL c1 OR c2 ON unit *", "MATCH c3")
    want = [session.execute(q).rows for q in queries]
    session.execute("SET layer = 'live'; SET threshold = 'cluster:2/3'")
    got = [session.execute(q).rows for q in queries]
    ranked = ("auroc", "p_value", "auprc", "sample_auroc")  # only the layer with activations has these (threshold-free) columns
    assert [[{k: v for k, v in row.items() if k not in ranked} for row in rows] for rows in got] == want
    assert session.execute("EVAL c1 ON unit 0").context["threshold"] == "cluster:2/3"


@pytest.mark.parametrize("spec,needle", [
    ("quantile:0.99..0.9", "lower end 0.99 must be below its upper end 0.9"),
    ("value:2..1", "lower end 2 must be below"),
    ("quantile:0.5..1.5", "within 0..1"),
    ("cluster:0/3", "cluster index 0 is out of range; clusters are numbered 1..3"),
    ("cluster:4/3", "cluster index 4 is out of range"),
    ("cluster:two/3", "cluster:K/N"),
    ("value:1..nan", "NaN"),
    ("cluster:1/99999999", "the number of clusters must be 1..1000"),  # was a hang on a huge allocation
])
def test_bad_bands_are_refused(spec, needle) -> None:
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        Threshold.parse(spec, Threshold("absolute"))
    session = cxql.connect(vision_store())
    with pytest.raises(CxqlError, match="cluster|band|NaN|within"):
        session.execute(f"SET threshold = '{spec}'")


def test_per_unit_thresholds_as_data() -> None:
    store, acts = vision_store(), tied_acts()
    t = np.array([0.25, 1.0, 2.5, 0.0])
    layer = store.add_units("given", acts, threshold=t)
    want = upsampled(acts) > t[None, :]
    for u, got in enumerate(layer_masks(layer, 4)):
        np.testing.assert_array_equal(got, np.flatnonzero(want[:, u]))
    np.testing.assert_array_equal(layer.thresholds, t)
    assert str(layer.threshold) == "per-unit thresholds"


@pytest.mark.parametrize("bad,needle", [
    (np.zeros(3), r"one threshold per unit, shape \[4\], got \[3\]"),
    (np.zeros((4, 1)), r"got \[4, 1\]"),
    (np.array(["a", "b", "c", "d"]), "must be integer or float numbers"),
    (np.array([0.0, np.nan, 0.0, 0.0]), "threshold of unit 1 is nan"),
    (np.array([0.0, 0.0, np.inf, 0.0]), "threshold of unit 2 is inf"),
])
def test_bad_per_unit_thresholds(bad, needle) -> None:
    with pytest.raises(DataError, match=needle):
        vision_store().add_units("x", tied_acts(), threshold=bad)


def test_band_layers_survive_save_and_open(tmp_path) -> None:
    store, acts = vision_store(), tied_acts()
    store.add_units("b", acts, threshold="quantile:0.5..0.9")
    store.add_units("k", acts, threshold="cluster:1/2")
    store.add_units("t", acts, threshold=np.ones(4))
    store.save(tmp_path / "s")
    opened = cxql.ConceptStore.open(tmp_path / "s")
    assert [str(opened.layers[n].threshold) for n in "bkt"] == ["quantile:0.5..0.9", "cluster:1/2",
                                                                "per-unit thresholds"]


def cli(capsys, *argv) -> tuple[int, str]:
    from cxql.cli import main

    code = main(list(map(str, argv)))
    return code, capsys.readouterr().err


@pytest.fixture
def saved(tmp_path):
    vision_store().save(tmp_path / "s")
    np.save(tmp_path / "acts.npy", tied_acts())
    return tmp_path


def test_cli_thresholds_file_and_masks_only(saved, capsys) -> None:
    t = np.array([0.25, 1.0, 2.5, 0.0])
    np.save(saved / "t.npy", t)
    code, _ = cli(capsys, "units", "add", saved / "s", "given", saved / "acts.npy", "--thresholds", saved / "t.npy")
    assert code == 0
    assert cli(capsys, "units", "add", saved / "s", "bare", saved / "acts.npy", "--masks-only")[0] == 0
    store = cxql.ConceptStore.open(saved / "s")
    want = upsampled(tied_acts()) > t[None, :]
    for u in range(4):
        np.testing.assert_array_equal(store.layers["given"].unit_positions(u), np.flatnonzero(want[:, u]))
    assert store.layers["given"].activations is not None and store.layers["bare"].activations is None


@pytest.mark.parametrize("array,needle", [
    (np.zeros(5), r"t.npy: expected one threshold per unit, shape \[4\], got \[5\]"),
    (np.array([1, 2, 3, 4], dtype="U1"), "t.npy: thresholds must be integer or float numbers"),
    (np.array([0.0, 0.0, 0.0, np.nan]), "t.npy: threshold of unit 3 is nan"),
])
def test_cli_bad_thresholds_file(saved, capsys, array, needle) -> None:
    np.save(saved / "t.npy", array)
    code, err = cli(capsys, "units", "add", saved / "s", "x", saved / "acts.npy", "--thresholds", saved / "t.npy")
    assert code == 1 and "Traceback" not in err
    assert __import__("re").search(needle, err), err
    assert "x" not in cxql.ConceptStore.open(saved / "s").layers


def test_cli_threshold_and_thresholds_do_not_combine(saved, capsys) -> None:
    np.save(saved / "t.npy", np.zeros(4))
    code, err = cli(capsys, "units", "add", saved / "s", "x", saved / "acts.npy", "--threshold", "0.5",
                    "--thresholds", saved / "t.npy")
    assert code == 2 and "do not combine" in err


@pytest.mark.parametrize("kind", ["given", "masks"])
def test_rules_that_compute_nothing_are_refused(kind) -> None:
    with pytest.raises(DataError, match="not a rule to compute thresholds from"):
        vision_store().add_units("x", tied_acts(), threshold=Threshold(kind))


@pytest.mark.parametrize("spec", ["cluster:1/2", "quantile:0.2..0.6"])
def test_nan_activations_are_refused_naming_unit_and_sample(spec) -> None:
    acts = tied_acts()
    acts[3, 2, 1, 1] = np.nan
    with pytest.raises(DataError, match="activations of sample 3, unit 2 contain NaN"):
        vision_store().add_units("x", acts, threshold=spec)


@pytest.mark.parametrize("spec", ["value:0.5..2", "cluster:2/2", "quantile:0.3..0.7"])
def test_bands_on_samples_of_different_sizes(spec) -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 5, 30)
    sample_of = np.repeat(np.arange(30), sizes)
    store = cxql.ConceptStore.from_masks(rng.random((len(sample_of), 3)) < 0.4, ["a", "b", "c"],
                                         sample_ids=sample_of)
    acts = tied_acts(30, 2, raw=(1, 1))[:, :, 0, 0].astype(np.float64)
    layer = store.add_units("fc", acts, threshold=spec)
    rule = Threshold.parse(spec, Threshold("absolute"))
    from cxql.store.units import unit_bands

    low, high = unit_bands(acts, rule)
    for u in range(2):
        active = (acts[:, u] > low[u]) & (acts[:, u] <= high[u])
        np.testing.assert_array_equal(layer.unit_positions(u), np.flatnonzero(active[sample_of]))
