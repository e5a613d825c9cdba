"""Recording a torch model's layer over a store's images, and importing saved activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cxql
from cxql.cli import main
from cxql.errors import DataError
from cxql.record import default_transform, find_module, record
from cxql.store.broden import build_broden

from test_broden import random_images, write_broden

MODEL_SOURCE = '''
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(5, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 2))
'''


def make_model() -> torch.nn.Module:
    scope: dict = {}
    exec(MODEL_SOURCE, scope)  # noqa: S102 - the same source the CLI test imports from a file
    return scope["make"]()


@pytest.fixture
def broden_store(tmp_path):
    rng = np.random.default_rng(0)
    images = random_images(rng, 7)
    root = write_broden(tmp_path / "broden", images)
    for img in images:
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{img['name']}.jpg", quality=95)
    return build_broden(root, tmp_path / "store")


def manual_activations(store, model) -> np.ndarray:
    """Layer '2' by hand: decode each image, run the first three modules, stack."""
    transform = default_transform(store)
    root = store.metadata["image_root"]
    with torch.no_grad():
        xs = torch.stack([transform(Image.open(f"{root}/{name}")) for name in store.sample_names])
        return model[:3](xs).numpy()


def unit_masks(layer) -> list[list[int]]:
    return [layer.unit_positions(u).tolist() for u in range(layer.n_units)]


def test_record_matches_activations_computed_by_hand(broden_store, tmp_path):
    model = make_model()
    seen = []
    layer = record(model, "2", broden_store, batch_size=3, device="cpu", progress=seen.append)
    assert seen == [3, 3, 1]
    assert layer.name == "2" and layer.n_units == 6
    acts = manual_activations(broden_store, model)
    assert acts.shape == (7, 6, 4, 4)
    np.testing.assert_allclose(np.asarray(layer.activations), acts, rtol=1e-5, atol=1e-6)
    again = cxql.ConceptStore.open(broden_store.path)      # written to disk, and equal to add_units by hand
    plain = cxql.ConceptStore.open(broden_store.path)
    manual = plain.add_units("manual", np.asarray(layer.activations))
    assert unit_masks(again.layers["2"]) == unit_masks(manual)
    np.testing.assert_array_equal(again.layers["2"].thresholds, manual.thresholds)
    assert not list(broden_store.path.glob(".activations-*"))   # the scratch file is gone
    rows = cxql.connect(again).execute("SEARCH unit 0..2 LENGTH 2").rows
    assert len(rows) == 3


def test_record_stopped_attaches_nothing_and_leaves_no_scratch_file(broden_store):
    from cxql.errors import Cancelled

    batches = []
    with pytest.raises(Cancelled):
        record(make_model(), "2", broden_store, batch_size=3, device="cpu", progress=batches.append,
               should_stop=lambda: len(batches) >= 1)
    assert batches == [3]                                          # stopped after the first batch
    assert "2" not in cxql.ConceptStore.open(broden_store.path).layers
    assert not list(broden_store.path.glob(".activations-*"))


def test_record_from_arrays_thresholds_and_out(tmp_path):
    model = make_model()
    images = torch.randn(10, 3, 8, 8)
    acts = record(model, "0", images, batch_size=4, out=tmp_path / "acts.npy")
    assert acts.shape == (10, 5, 4, 4) and (tmp_path / "acts.npy").exists()
    np.testing.assert_allclose(np.load(tmp_path / "acts.npy"), model[:1](images).detach().numpy(), atol=1e-6)
    masks = np.zeros((10 * 16, 2), dtype=bool)
    store = cxql.ConceptStore.from_masks(masks | (np.arange(160) % 3 == 0)[:, None], ["a", "b"],
                                         mask_shape=(4, 4))
    layer = record(model, "2", images.numpy(), store, name="conv2", threshold="quantile:0.9", batch_size=4)
    assert store.layers["conv2"] is layer and str(layer.threshold) == "quantile:0.9"
    absolute = record(model, "2", [images[:6], images[6:]], store, name="abs", threshold=0.05)
    assert np.all(np.asarray(absolute.thresholds) == 0.05)


def test_record_errors(broden_store):
    model = make_model()
    with pytest.raises(DataError, match="no module 'conv9'"):
        record(model, "conv9", broden_store)
    with pytest.raises(DataError, match="9 images but the store has 7 samples"):
        record(model, "2", torch.zeros(9, 3, 16, 16), broden_store)
    plain = cxql.ConceptStore.from_masks(np.ones((4, 1), bool), ["a"])
    with pytest.raises(DataError, match="records no probe images"):
        record(model, "2", plain)
    (broden_store.path.parent / "broden" / "images" / "ade20k" / "img3.jpg").unlink()
    with pytest.raises(DataError, match="img3.jpg: missing probe image"):
        record(model, "2", broden_store)
    assert "2" not in cxql.ConceptStore.open(broden_store.path).layers
    assert find_module(model, "0") is model[0]


def test_cli_units_record_and_add(broden_store, tmp_path, capsys):
    (tmp_path / "netdef.py").write_text(MODEL_SOURCE)
    store = str(broden_store.path)
    code = main(["units", "record", store, "2", "--model", f"{tmp_path}/netdef.py:make", "--batch-size", "2",
                 "--device", "cpu", "--save", str(tmp_path / "acts.npy")])
    assert code == 0, capsys.readouterr().err
    opened = cxql.ConceptStore.open(store)
    assert opened.layers["2"].n_units == 6
    acts = np.load(tmp_path / "acts.npy")
    torch.save(torch.from_numpy(acts), tmp_path / "acts.pt")       # .pt imports too, memory-mapped
    assert main(["units", "add", store, "frompt", str(tmp_path / "acts.pt")]) == 0
    opened = cxql.ConceptStore.open(store)
    assert unit_masks(opened.layers["frompt"]) == unit_masks(opened.layers["2"])
    np.save(tmp_path / "short.npy", acts[:5])
    assert main(["units", "add", store, "short", str(tmp_path / "short.npy")]) == 1
    err = capsys.readouterr().err
    assert "short.npy" in err and "5 samples but the store has 7" in err
    assert main(["units", "record", store, "2", "--model", "nosuchmodule:make"]) == 2
    assert "cannot import nosuchmodule" in capsys.readouterr().err
