"""Sanity checks of explanations (issue 14 item 5): controls computed again with plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
import reference as ref
from cxql import sanity
from cxql.parser import parse_formula

SHAPE = (4, 4)
NAMES = ["a", "b", "c", "everywhere"]


def layer_store(seed: int = 0):
    """Unit 0 is concept a exactly; unit 1 is noise; concept 'everywhere' covers 95 % of positions."""
    rng = np.random.default_rng(seed)
    n_images = 40
    n = n_images * SHAPE[0] * SHAPE[1]
    concepts = rng.random((n, 4)) < [0.2, 0.3, 0.3, 0.95]
    store = cxql.ConceptStore.from_masks(concepts, NAMES, mask_shape=SHAPE)
    acts = rng.normal(size=(n_images, 3, *SHAPE)).astype(np.float32)
    image_a = concepts[:, 0].reshape(n_images, *SHAPE)
    acts[:, 0] = np.where(image_a, 5.0 + rng.random(image_a.shape), rng.random(image_a.shape))
    store.add_units("conv", acts, threshold=4.0)
    return store, concepts, acts


def control_scores(store, concepts, unit_masks, unit: int, f: np.ndarray, metric) -> tuple[int, float, float]:
    rng = np.random.default_rng([sanity.SEED, unit])
    others = [v for v in range(unit_masks.shape[1]) if v != unit]
    other = int(rng.choice(others))
    shuffled = f.reshape(store.n_samples, -1)[rng.permutation(store.n_samples)].reshape(-1)
    return other, metric(f, unit_masks[:, other]), metric(shuffled, unit_masks[:, unit])


@pytest.mark.parametrize("metric", ["iou", "recall", "f1"])
@pytest.mark.parametrize("unit,text", [(0, "a"), (1, "b OR c"), (2, "everywhere")])
def test_controls_match_numpy(metric, unit, text) -> None:
    store, concepts, _ = layer_store()
    masks = np.zeros((store.n_positions, 3), bool)
    for u in range(3):
        masks[store.layers["conv"].unit_positions(u), u] = True
    session = cxql.connect(store)
    session.execute(f"SET metric = '{metric}'")
    f = ref.evaluate(text, concepts, NAMES)
    got = sanity.check(session, unit, parse_formula(text))
    other, random_score, shuffled_score = control_scores(store, concepts, masks, unit, f, ref.METRICS[metric])
    assert (got.score, got.random_unit, got.random_unit_score, got.shuffled_score) == \
        (ref.METRICS[metric](f, masks[:, unit]), other, random_score, shuffled_score)


def test_a_true_explanation_passes_and_a_trivial_one_fails() -> None:
    store, *_ = layer_store()
    session = cxql.connect(store)
    assert sanity.check(session, 0, parse_formula("a")).passes
    session.execute("SET metric = 'recall'")
    trivial = sanity.check(session, 0, parse_formula("everywhere"))  # recall near 1 for any unit
    assert not trivial.passes and trivial.verdict().startswith("fails: ")


def test_auroc_controls_match_the_reference() -> None:
    store, concepts, acts = layer_store()
    values = acts.transpose(0, 2, 3, 1).reshape(-1, 3)  # the maps are at mask resolution already
    session = cxql.connect(store)
    session.execute("SET metric = 'auroc'")
    f = concepts[:, 0]
    got = sanity.check(session, 0, parse_formula("a"))
    rng = np.random.default_rng([sanity.SEED, 0])
    other = int(rng.choice([1, 2]))
    shuffled = f.reshape(store.n_samples, -1)[rng.permutation(store.n_samples)].reshape(-1)
    assert got.score == ref.auroc(f, values[:, 0]) == 1.0
    assert got.random_unit_score == ref.auroc(f, values[:, other])
    assert got.shuffled_score == ref.auroc(shuffled, values[:, 0])
    assert got.passes


def test_show_unit_has_a_sanity_section() -> None:
    store, *_ = layer_store()
    result = cxql.connect(store).execute("SHOW unit 0")
    assert result.columns[-3:] == ["vs_random_unit", "vs_shuffled_concept", "sanity"]
    assert result.rows[0]["formula"] == "a" and result.rows[0]["sanity"] == "passes"
    assert "random-unit control: unit" in result.message


def test_irregular_samples_permute_positions() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random(10) < 0.5
    out = sanity.shuffle_samples(mask, np.array([0, 3, 10]), np.random.default_rng(1))
    assert sorted(out) == sorted(mask) and len(out) == 10


def test_the_report_flags_explanations_that_fail() -> None:
    from cxql import report

    store, *_ = layer_store()
    session = cxql.connect(store)
    session.execute("SET metric = 'recall'")
    rows = [dict(session.execute(f"EVAL {text} ON unit 0").rows[0], unit=0) for text in ("a", "everywhere")]
    reports = report.unit_reports(session, "conv", rows=rows, top=2)
    assert [r.sanity == "passes" for r in reports] == [True, False]
    page = report.html_page("s", "conv", reports, "conv", None)
    assert page.count("sanity check fails") == 1 and "everywhere" in page
