"""The attached model (cxql/model.py): a store rebuilds its model and re-runs it with units zeroed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cxql
import cxql.model as cm
from cxql.errors import DataError, QueryError
from cxql.resources import demo_store_path


class Tiny(nn.Module):
    """2 inputs -> hidden (4 units, ReLU) -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


def tiny() -> Tiny:
    """Hand-set weights, so that every hidden unit matters: x+, x-, y+, y- -> a (x+), b (y+), c (x- and y-)."""
    model = Tiny()
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
        model.hidden[0].bias.zero_()
        model.out.weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 0, 2, 0], [0, 1, 0, 1]]))
        model.out.bias.copy_(torch.tensor([0.0, 0.1, 0.2]))
    return model.eval()


def tiny_store(n: int = 60, seed: int = 0) -> tuple[cxql.ConceptStore, Tiny, np.ndarray, np.ndarray]:
    """An in-memory store of n one-position samples, a 4-unit layer, and the trained-ish Tiny attached."""
    model = tiny()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    with torch.no_grad():
        hidden = model.hidden(torch.from_numpy(x)).numpy()
        targets = model(torch.from_numpy(x)).argmax(1).numpy()
    targets = np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), targets)  # every class, some mistakes
    concepts = np.stack([x[:, 0] > 0, x[:, 1] > 0, targets == 0], axis=1)
    store = cxql.ConceptStore.from_masks(concepts, ["right", "up", "zero"], ["side", "side", "label"])
    store.add_unit_masks("hidden", hidden > 0)
    cm.attach(store, "tests.test_model:tiny", model, x, targets, ["a", "b", "c"], {"hidden": "hidden"})
    return store, model, x, targets


def direct(model: Tiny, x: np.ndarray, units: list[int]) -> np.ndarray:
    """Predictions with ``units`` zeroed, computed by hand (no hook)."""
    with torch.no_grad():
        h = model.hidden(torch.from_numpy(x))
        h[:, units] = 0
        return model.out(h).argmax(1).numpy()


@pytest.mark.parametrize("units", [[], [0], [1, 3], [0, 1, 2, 3]])
def test_store_round_trip_rebuilds_the_model_and_zeroes_units(tmp_path, units):
    store, model, x, _ = tiny_store()
    opened = cxql.ConceptStore.open(store.save(tmp_path / "s").path)
    attached = cm.load(opened)
    for a, b in zip(model.state_dict().values(), attached.model.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(cm.predict(attached, "hidden", units), direct(model, x, units))


def test_no_attached_model_says_how_to_attach():
    store = cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd"))
    with pytest.raises(QueryError, match="no attached model; attach one .*cxql.model.attach"):
        cm.load(store)


def test_outputs_that_do_not_match_the_classes_are_refused():
    store, model, x, targets = tiny_store()
    with pytest.raises(DataError, match=r"outputs of shape \(60, 3\).*names 2 classes"):
        cm.attach(store, "tests.test_model:tiny", model, x, targets % 2, ["a", "b"], {"hidden": "hidden"})
        cm.predict(cm.load(store))


@pytest.mark.parametrize("bad, message", [
    (dict(modules={"hidden": "nowhere"}), "names module 'nowhere'"),
    (dict(targets=np.zeros(3)), "60 inputs and 3 targets"),
    (dict(targets=np.full(60, 7)), r"targets must lie in 0..2"),
])
def test_attach_refuses_what_does_not_fit(bad, message):
    store, model, x, targets = tiny_store()
    args = dict(targets=targets, modules={"hidden": "hidden"}) | bad
    with pytest.raises(DataError, match=message):
        cm.attach(store, "tests.test_model:tiny", model, x, args["targets"], ["a", "b", "c"], args["modules"])


def test_demo_store_model_predicts_its_pred_concepts():
    """The demo store's model rebuilds from the package alone and agrees with the store's ``pred`` concepts."""
    store = cxql.ConceptStore.open(demo_store_path())
    attached = cm.load(store)
    assert attached.factory == "cxql.models.digits:untrained"
    preds = cm.predict(attached)
    agree = 0
    from tests.test_demo_store import per_image  # pred:d covers every pixel of the images predicted d
    for d in range(10):
        agree += int(np.sum(per_image(store, f"pred:{d}").all(axis=1) == (preds == d)))
    assert agree >= 10 * store.n_samples - 4  # float32 here vs float64 at build: at most a couple differ
