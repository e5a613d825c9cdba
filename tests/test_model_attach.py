"""Attaching a model to a store already on disk (cxql.model.attach, ``cxql model attach``), then ABLATE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
import cxql.model as cm
from cxql.cli import main
from tests.test_ablate import accuracy_by_class, hooked_predictions
from tests.test_model import tiny

NETDEF = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.hidden(x))


def make():
    return Tiny()
'''


@pytest.fixture
def saved(tmp_path):
    """(store path, factory spec, trained model, inputs, targets): a saved store with a 'hidden' layer, no model."""
    (tmp_path / "netdef.py").write_text(NETDEF)
    model = tiny()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2)).astype(np.float32)
    with torch.no_grad():
        hidden = model.hidden(torch.from_numpy(x)).numpy()
        targets = model(torch.from_numpy(x)).argmax(1).numpy()
    targets = np.where(rng.random(50) < 0.3, rng.integers(0, 3, 50), targets)
    store = cxql.ConceptStore.from_masks(np.stack([x[:, 0] > 0, x[:, 1] > 0], 1), ["right", "up"])
    store.add_unit_masks("hidden", hidden > 0)
    path = store.save(tmp_path / "store").path
    return path, f"{tmp_path}/netdef.py:make", model, x, targets


def check_ablation(path, model, x, targets, units):
    result = cxql.connect(cxql.ConceptStore.open(path)).execute(f"ABLATE unit {', '.join(map(str, units))}")
    before = accuracy_by_class(hooked_predictions(model, x, []), targets)
    after = accuracy_by_class(hooked_predictions(model, x, units), targets)
    assert [r["class"] for r in result.rows] == ["a", "b", "c", "all"]
    for i, row in enumerate(result.rows):
        assert (row["before"], row["after"]) == pytest.approx((before[i], after[i]))


@pytest.mark.parametrize("units", [[1], [0, 2, 3]])
def test_attach_to_a_saved_store_then_ablate_matches_a_hook(saved, units):
    path, factory, model, x, targets = saved
    store = cxql.ConceptStore.open(path)
    cm.attach(store, factory, model, x, targets, ["a", "b", "c"], {"hidden": "hidden"}, output="out")
    assert cm.has_model(store)  # the open store sees its change
    reopened = cxql.ConceptStore.open(path)
    assert reopened.metadata[cm.KEY]["output"] == "out"
    for a, b in zip(model.state_dict().values(), cm.load(reopened).model.state_dict().values()):
        assert torch.equal(a, b)
    check_ablation(path, model, x, targets, units)


def test_reattaching_replaces_the_old_model(saved):
    path, factory, model, x, targets = saved
    store = cxql.ConceptStore.open(path)
    cm.attach(store, factory, torch.nn.Sequential(torch.nn.Linear(2, 3)), x, targets, ["a", "b", "c"], {})
    cm.attach(store, factory, model, x, targets, ["a", "b", "c"], {"hidden": "hidden"})
    reopened = cxql.ConceptStore.open(path)
    weights = sorted(k for k in reopened.arrays if k.startswith(cm.WEIGHT_PREFIX))
    assert weights == sorted(cm.WEIGHT_PREFIX + k for k in model.state_dict())
    check_ablation(path, model, x, targets, [2])


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_cli_model_attach(saved, tmp_path, suffix, capsys):
    path, factory, model, x, targets = saved
    weights = tmp_path / f"w{suffix}"
    state = model.state_dict()
    if suffix == ".npz":
        np.savez(weights, **{k: v.numpy() for k, v in state.items()})
    else:
        torch.save(state, weights)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", targets)
    code = main(["model", "attach", str(path), "--model", factory, "--weights", str(weights), "--inputs",
                 str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--classes", "a,b,c"])
    assert code == 0, capsys.readouterr().err
    assert "hidden=hidden" in capsys.readouterr().err  # the layer found by name
    check_ablation(path, model, x, targets, [0, 3])


@pytest.mark.parametrize("change, code, message", [
    ({"--model": "netdef.py:nope"}, 2, "has no callable 'nope'"),
    ({"--model": "no_such_module_cxql:make"}, 2, "cannot import no_such_module_cxql"),
    ({"weights": {"hidden.0.weight": np.zeros((5, 2), np.float32)}}, 1, "do not fit the model"),
    ({"--layer": "hidden=nowhere"}, 1, "names module 'nowhere'"),
    ({"--classes": "a,b"}, 1, "targets must lie in 0..1"),
])
def test_cli_model_attach_errors_leave_the_store_unchanged(saved, tmp_path, capsys, change, code, message):
    path, factory, model, x, targets = saved
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(tmp_path / "w.npz", **{**state, **change.get("weights", {})})
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", targets)
    options = {"--model": factory, "--weights": str(tmp_path / "w.npz"), "--inputs": str(tmp_path / "x.npy"),
               "--targets": str(tmp_path / "y.npy"), "--classes": "a,b,c",
               **{k: v for k, v in change.items() if k.startswith("--")}}
    if options["--model"].startswith("netdef.py"):
        options["--model"] = f"{tmp_path}/{options['--model']}"
    assert main(["model", "attach", str(path), *[s for kv in options.items() for s in kv]]) == code
    assert message in capsys.readouterr().err
    assert not cm.has_model(cxql.ConceptStore.open(path))

