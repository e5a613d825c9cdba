"""AUROC, Mann-Whitney p-value and AUPRC (issue 14 item 4) against scikit-learn, scipy and the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from sklearn.metrics import average_precision_score, roc_auc_score

import cxql
import reference as ref
from cxql import metrics
from cxql.errors import CxqlError
from cxql.ranking_metrics import Ranking, p_value

SHAPE = (6, 6)
NAMES = [f"c{i}" for i in range(7)]


def tied(rng: np.random.Generator, shape) -> np.ndarray:
    """ReLU-like values in quarters: many ties, a third exactly zero."""
    x = np.round(rng.gamma(2.0, 1.0, size=shape) * 4) / 4
    x[rng.random(shape) < 0.33] = 0
    return x


def scores_of(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    r = Ranking.of(values)
    rank2 = int(r.rank_sums(np.arange(len(values)), len(values))[labels].sum())
    p, n = int(labels.sum()), len(values)
    return {"auroc": float(metrics.AUROC(rank2, p, 0, n)), "p_value": p_value(rank2, p, n, r.tie_term),
            "auprc": r.average_precision(labels)}


@pytest.mark.parametrize("seed", range(12))
def test_against_sklearn_and_scipy_with_ties(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    values = tied(rng, n) if seed % 3 else rng.integers(0, 3, n).astype(float)  # heavy ties too
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    labels[:2] = [True, False]  # both classes present
    got = scores_of(values, labels)
    assert got["auroc"] == pytest.approx(roc_auc_score(labels, values), abs=1e-12)
    assert got["auroc"] == ref.auroc(labels, values)  # exactly: the same fraction
    want_p = mannwhitneyu(values[labels], values[~labels], alternative="greater", method="asymptotic").pvalue
    assert got["p_value"] == pytest.approx(want_p, rel=1e-9, abs=1e-15)
    assert got["auprc"] == pytest.approx(average_precision_score(labels, values), abs=1e-12)


def test_degenerate_formulas() -> None:
    values = np.array([0.0, 1.0, 1.0, 2.0])
    assert scores_of(values, np.zeros(4, bool)) == {"auroc": 0.0, "p_value": 1.0, "auprc": 0.0}
    assert scores_of(values, np.ones(4, bool))["auroc"] == 0.0
    assert scores_of(np.ones(4), np.array([True, False, True, False]))["p_value"] == 1.0


def random_layer(seed: int, raw=(3, 3), n_images: int = 20):
    """A vision store with a spatial layer of tied activations, and each position's upsampled value."""
    rng = np.random.default_rng(seed)
    concepts = rng.random((n_images * SHAPE[0] * SHAPE[1], len(NAMES))) < rng.uniform(0.1, 0.5, len(NAMES))
    store = cxql.ConceptStore.from_masks(concepts, NAMES, mask_shape=SHAPE)
    acts = tied(rng, (n_images, 3, *raw)).astype(np.float32)
    store.add_units("conv", acts)
    up = torch.nn.functional.interpolate(torch.from_numpy(acts), size=SHAPE, mode="bilinear", align_corners=False)
    values = up.numpy().transpose(0, 2, 3, 1).reshape(-1, 3)  # float32, as the masks compare them
    return store, concepts, values


@pytest.mark.parametrize("raw", [(3, 3), (6, 6)])
def test_eval_rows_carry_ranked_metrics(raw) -> None:
    store, concepts, values = random_layer(1, raw)
    rows = cxql.connect(store).execute("EVAL (c1 OR c2) AND NOT c3 ON unit *").rows
    f = (concepts[:, 1] | concepts[:, 2]) & ~concepts[:, 3]
    for row in rows:
        v = values[:, row["unit"]]
        assert row["auroc"] == ref.auroc(f, v)
        assert row["auroc"] == pytest.approx(roc_auc_score(f, v), abs=1e-12)
        assert row["auprc"] == pytest.approx(average_precision_score(f, v), abs=1e-12)
        v64 = v.astype(np.float64)  # scipy computes in its input's precision
        want = mannwhitneyu(v64[f], v64[~f], alternative="greater", method="asymptotic").pvalue
        assert row["p_value"] == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_sample_level_layers_spread_each_sample_value() -> None:
    rng = np.random.default_rng(2)
    concepts = rng.random((30 * 4, 4)) < 0.3
    store = cxql.ConceptStore.from_masks(concepts, NAMES[:4], mask_shape=(2, 2))
    acts = tied(rng, (30, 2))
    store.add_units("fc", acts)
    [row] = cxql.connect(store).execute("EVAL c0 ON unit 1").rows
    v = np.repeat(acts[:, 1], 4)
    assert row["auroc"] == pytest.approx(roc_auc_score(concepts[:, 0], v), abs=1e-12)


@pytest.mark.parametrize("engine", ["plain", "batched"])
@pytest.mark.parametrize("seed", range(3))
def test_search_under_auroc_matches_the_reference(engine, seed) -> None:
    store, concepts, values = random_layer(seed)
    session = cxql.connect(store)
    session.execute(f"SET metric = 'auroc'; SET engine = '{engine}'")
    result = session.execute("SEARCH unit * LENGTH 3 BEAM 4")
    assert result.columns[:3] == ["unit", "formula", "auroc"] and "p_value" in result.columns
    for row in result.rows:
        v = values[:, row["unit"]]
        want = ref.search(concepts, NAMES, v, 3, 4, metric=ref.auroc)
        assert (row["formula"], row["auroc"]) == (want.formula, want.iou)
        f = ref.evaluate(row["formula"], concepts, NAMES)
        unit_mask = np.zeros(len(f), bool)
        unit_mask[store.layers["conv"].unit_positions(row["unit"])] = True
        assert row["iou"] == ref.iou(f, unit_mask) and row["mask_size"] == int(unit_mask.sum())
        by_length = {x["length"]: (x["formula"], x["auroc"]) for x in row["by_length"]}
        assert by_length == want.by_length


def test_match_ranks_units_by_auroc() -> None:
    store, concepts, values = random_layer(4)
    session = cxql.connect(store)
    session.execute("SET metric = 'auroc'")
    rows = session.execute("MATCH c2 TOP 3").rows
    want = sorted(range(3), key=lambda u: (-ref.auroc(concepts[:, 2], values[:, u]), u))
    assert [r["unit"] for r in rows] == want


def test_exact_refuses_auroc() -> None:
    store, *_ = random_layer(0)
    session = cxql.connect(store)
    session.execute("SET metric = 'auroc'")
    with pytest.raises(CxqlError, match="no bound for 'auroc'"):
        session.execute("SEARCH unit 0 LENGTH 2 EXACT")


def test_masks_only_layers_say_how_to_add_activations() -> None:
    rng = np.random.default_rng(0)
    store = cxql.ConceptStore.from_masks(rng.random((200, 3)) < 0.3, NAMES[:3])
    store.add_unit_masks("m", rng.random((200, 2)) < 0.2)
    session = cxql.connect(store)
    assert "auroc" not in session.execute("EVAL c0 ON unit 0").columns
    session.execute("SET metric = 'auroc'")
    for query in ("SEARCH unit 0", "EVAL c0 ON unit 0", "MATCH c1"):
        with pytest.raises(CxqlError, match="keeps only masks") as info:
            session.execute(query)
        assert "cxql units add STORE m ACTIVATIONS.npy --replace" in str(info.value.hint)


def test_eval_leaves_ranked_columns_out_beyond_its_budget(monkeypatch) -> None:
    from cxql import statements

    store, *_ = random_layer(0)
    session = cxql.connect(store)
    monkeypatch.setattr(statements, "RANK_BUDGET", store.n_positions * 2)
    assert "auroc" in session.execute("EVAL c1 ON unit 0..1").columns
    result = session.execute("EVAL c1 ON unit *")
    assert "auroc" not in result.columns and "SET metric = 'auroc'" in result.message
    session.execute("SET metric = 'auroc'")
    assert "auroc" in session.execute("EVAL c1 ON unit *").columns


def test_stores_beyond_exact_rank_sums_are_refused() -> None:
    from types import SimpleNamespace

    from cxql.activation_source import ActivationSource

    layer = SimpleNamespace(name="conv", activations=np.zeros((1, 1)))
    ActivationSource(SimpleNamespace(n_positions=94_906_265), layer)
    with pytest.raises(CxqlError, match="beyond exact float64 rank sums"):
        ActivationSource(SimpleNamespace(n_positions=94_906_266), layer)


def test_sample_auroc_ranks_samples_by_their_peak() -> None:
    store, concepts, values = random_layer(5)
    rows = cxql.connect(store).execute("EVAL c4 AND c5 ON unit *").rows
    f = (concepts[:, 4] & concepts[:, 5]).reshape(store.n_samples, -1).any(axis=1)
    for row in rows:
        peaks = values[:, row["unit"]].reshape(store.n_samples, -1).max(axis=1)
        assert row["sample_auroc"] == pytest.approx(roc_auc_score(f, peaks), abs=1e-12)
        assert row["sample_auroc"] == ref.auroc(f, peaks)


def test_ranking_respects_the_memory_limit() -> None:
    store, *_ = random_layer(0)
    session = cxql.connect(store)
    session.execute("SET memory_limit = '10KB'")
    result = session.execute("EVAL c1 ON unit 0")  # the count metrics still come
    assert "auroc" not in result.columns and "memory_limit" in result.message
    session.execute("SET metric = 'auroc'")
    with pytest.raises(CxqlError, match="ranking a unit's activations"):
        session.execute("EVAL c1 ON unit 0")
