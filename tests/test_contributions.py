"""Class contributions: checked against the output layer's weights and plain numpy accuracies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
import cxql.model as cm
from cxql.contributions import contributions
from cxql.errors import QueryError
from tests.test_model import tiny_store


def attached_tiny(output: str | None = "out"):
    store, model, x, targets = tiny_store()
    cm.attach(store, "tests.test_model:tiny", model, x, targets, ["a", "b", "c"], {"hidden": "hidden"},
              output=output)
    return store, model, x, targets


@pytest.mark.parametrize("top", [1, 2, 4])
def test_class_rows_are_the_largest_weights(top):
    store, model, x, targets = attached_tiny()
    formulas = {0: "right", 2: "up"}
    per_class, per_unit = contributions(store, "hidden", formulas, top=top)
    w = model.out.weight.detach().numpy()
    for c, name in enumerate("abc"):
        rows = [r for r in per_class.rows if r["class"] == name]
        assert [r["unit"] for r in rows] == list(np.argsort(-w[c], kind="stable")[:top])
        assert [r["weight"] for r in rows] == pytest.approx(sorted(w[c], reverse=True)[:top])
        assert all(r["formula"] == formulas.get(r["unit"]) for r in rows)
    with torch.no_grad():
        hidden = model.hidden(torch.from_numpy(x)).numpy() > 0
        correct = model(torch.from_numpy(x)).argmax(1).numpy() == targets
    for row in per_unit.rows:
        u = row["unit"]
        assert row["favours"] == "abc"[int(np.argmax(w[:, u]))]
        assert row["fires_in"] == int(hidden[:, u].sum())
        expected = correct[hidden[:, u]].mean() if hidden[:, u].any() else None
        assert row["accuracy_firing"] == pytest.approx(expected)
        assert row["accuracy_silent"] == pytest.approx(correct[~hidden[:, u]].mean())


def test_a_layer_that_does_not_feed_the_output_is_refused():
    store, *_ = attached_tiny(output="hidden.0")  # Linear(2, 4): 4 outputs, not 3 classes
    with pytest.raises(QueryError, match="does not feed the output module 'hidden.0'"):
        contributions(store, "hidden")


def test_no_output_module_says_how_to_name_one():
    store, *_ = attached_tiny(output=None)
    with pytest.raises(QueryError, match="names no output module; pass output="):
        contributions(store, "hidden")
