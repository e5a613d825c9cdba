"""ABLATE: accuracy with units zeroed, checked against a direct torch computation with a forward hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
from cxql.ablate import SEEDS, control_units
from cxql.errors import CxqlError
from tests.test_model import tiny_store


def hooked_predictions(model: torch.nn.Module, x: np.ndarray, units: list[int]) -> np.ndarray:
    """The reference: the hidden module's output zeroed at ``units`` by a hook written here."""
    def hook(_m, _i, out):
        out = out.clone()
        out[:, units] = 0
        return out

    handle = model.hidden.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(torch.from_numpy(x)).argmax(1).numpy()
    finally:
        handle.remove()


def accuracy_by_class(preds: np.ndarray, targets: np.ndarray) -> list[float]:
    return [float(np.mean(preds[targets == c] == c)) for c in range(3)] + [float(np.mean(preds == targets))]


@pytest.mark.parametrize("query, units", [("ABLATE unit 1", [1]), ("ABLATE unit 0, 2..3", [0, 2, 3])])
def test_ablation_matches_a_direct_hook(query, units):
    store, model, x, targets = tiny_store()
    result = cxql.connect(store).execute(query)
    before = accuracy_by_class(hooked_predictions(model, x, []), targets)
    after = accuracy_by_class(hooked_predictions(model, x, units), targets)
    randoms = np.array([accuracy_by_class(hooked_predictions(model, x, control_units(4, units, seed)), targets)
                        for seed in range(SEEDS)])
    assert [r["class"] for r in result.rows] == ["a", "b", "c", "all"]
    assert any(r["after"] != r["before"] for r in result.rows)  # the hand-set model needs every unit
    for i, row in enumerate(result.rows):
        assert row["samples"] == (int((targets == i).sum()) if i < 3 else len(targets))
        assert (row["before"], row["after"]) == pytest.approx((before[i], after[i]))
        assert row["change"] == pytest.approx(after[i] - before[i])
        assert (row["random_after"], row["random_spread"]) == pytest.approx((randoms[:, i].mean(), randoms[:, i].std()))


def test_ablate_match_zeroes_the_match_top_units():
    store, model, x, targets = tiny_store()
    session = cxql.connect(store)
    top = [r["unit"] for r in session.execute("MATCH right TOP 2").rows]
    rows = session.execute("ABLATE MATCH right TOP 2").rows
    assert rows[-1]["after"] == pytest.approx(np.mean(hooked_predictions(model, x, top) == targets))


@pytest.mark.parametrize("n_units, chosen", [(10, [1, 2, 3]), (4, [0, 1, 2]), (3, [0, 1, 2])])
def test_control_units_are_distinct_layer_units(n_units, chosen):
    for seed in range(SEEDS):
        picked = control_units(n_units, chosen, seed)
        assert len(set(picked)) == len(chosen) and all(0 <= u < n_units for u in picked)
        if n_units - len(chosen) >= len(chosen):
            assert not set(picked) & set(chosen)


@pytest.mark.parametrize("query, message", [
    ("ABLATE unit 9", "unit 9 does not exist: layer 'hidden' has units 0..3"),
    ("ABLATE MATCH right TOP 5", "TOP 5 is more units than layer 'hidden' has \\(4\\)"),
    ("ABLATE MATCH nowhere TOP 1", "nowhere"),
])
def test_bad_ablations_are_named(query, message):
    store, *_ = tiny_store()
    with pytest.raises(CxqlError, match=message):
        cxql.connect(store).execute(query)


def test_a_store_without_a_model_says_how_to_attach_one():
    store = cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd"))
    store.add_unit_masks("layer", np.eye(4, dtype=bool))
    with pytest.raises(CxqlError, match="no attached model; attach one with `cxql model attach .* or cxql.model.attach"):
        cxql.connect(store).execute("ABLATE unit 0")


def test_ablate_parses_and_prints_back():
    from cxql.parser import parse

    for text in ("ABLATE unit 0, 2..3", "ABLATE MATCH (a OR b) TOP 3", "DESCRIBE unit 4",
                 "SUMMARY LAYER conv2 LENGTH 5", "SUMMARY LAYER \"layer4.1\""):
        assert str(parse(text)) == text and parse(str(parse(text))) == parse(text)
