"""Copy-paste examples: pasted inputs and predictions checked against a direct computation on the demo store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cxql
import cxql.model as cm
from cxql import copy_paste as cp
from cxql.errors import DataError, QueryError
from cxql.resources import demo_store_path
from tests.test_demo_store import per_image
from tests.test_model import tiny_store


@pytest.fixture(scope="module")
def demo() -> cxql.ConceptStore:
    return cxql.ConceptStore.open(demo_store_path())


@pytest.mark.parametrize("concept, target", [("hole", 1), ("vertical", 2)])
def test_pasted_inputs_and_predictions(demo, concept, target):
    p = cp.paste(demo, concept, target, n=20, seed=3)
    attached = cm.load(demo)
    x = attached.inputs
    masks = per_image(demo, f"stroke:{concept}").reshape(-1, 1, 16, 16).astype(np.float32)
    expected = x[p.victims] * (1 - masks[p.donors]) + x[p.donors] * masks[p.donors]
    assert np.array_equal(p.inputs, expected)
    assert (attached.targets[p.victims] == target).all() and (attached.targets[p.donors] != target).all()
    assert masks[p.donors].any(axis=(1, 2, 3)).all()
    with torch.no_grad():
        assert np.array_equal(p.after, attached.model(torch.from_numpy(expected)).argmax(1).numpy())
    assert (p.before == target).all()
    row = cp.summary_row(p, concept, target, source=0)
    assert row["flip_rate"] == np.mean(p.after != target) and row["victims"] == 20


def test_grid_png(demo, tmp_path):
    p = cp.paste(demo, "hole", 7, n=4)
    with Image.open(cp.grid_png(demo, p, tmp_path / "g.png", [str(d) for d in range(10)])) as img:
        assert img.format == "PNG" and img.size[1] > 4 * 64


def test_unknown_concept_and_non_image_inputs_are_named(demo):
    with pytest.raises(QueryError, match="'nowhere' names no concept"):
        cp.paste(demo, "nowhere", 1)
    store, *_ = tiny_store()
    with pytest.raises(DataError, match="image inputs"):
        cp.paste(store, "right", 0)
