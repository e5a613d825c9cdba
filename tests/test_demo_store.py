"""The bundled demo store (stores/digits) and the concept functions that build it.

The store is what ``cxql`` opens with no arguments, so it must open, hold the
concepts the README talks about, and answer SEARCH/EVAL consistently. The
concept functions of examples/build_demo_store.py are checked on tiny
hand-drawn images whose answers can be read off the drawing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cxql
from cxql.resources import demo_store_path
from cxql.store import signatures as sig

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "build_demo_store.py"
README = REPO / "README.md"
CATEGORIES = {"pixel", "region", "stroke", "edge", "label", "pred", "outcome"}
LAYERS = {"conv1": 8, "conv2": 16, "fc": 32}


@pytest.fixture(scope="module")
def store() -> cxql.ConceptStore:
    return cxql.ConceptStore.open(demo_store_path())


@pytest.fixture(scope="module")
def builder():
    """examples/build_demo_store.py as a module (needs scipy, the ``demo`` extra)."""
    pytest.importorskip("scipy")
    spec = importlib.util.spec_from_file_location("build_demo_store", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def concept_mask(store: cxql.ConceptStore, qualified: str) -> np.ndarray:
    """bool [N]: the positions a concept covers, read from the store's signature table."""
    [info] = [c for c in store.concepts if c.qualified == qualified]
    column = sig.concept_column(np.asarray(store.signature_bits), info.index)
    return column[np.asarray(store.position_signatures, dtype=np.int64)]


def per_image(store: cxql.ConceptStore, qualified: str) -> np.ndarray:
    """bool [samples, H*W] view of a concept's mask."""
    return concept_mask(store, qualified).reshape(store.n_samples, -1)


def draw(picture: str) -> np.ndarray:
    """A bool image from rows of '#' (set) and '.' (clear)."""
    return np.array([[ch == "#" for ch in row] for row in picture.split()])


# ------------------------------------------------------------------ the committed store


def test_store_opens_with_its_shape(store):
    assert store.kind == "vision"
    assert store.n_samples == 1797
    assert store.mask_shape == (16, 16)
    assert store.n_positions == 1797 * 256
    assert {c.category for c in store.concepts} == CATEGORIES
    assert {n: layer.n_units for n, layer in store.layers.items()} == LAYERS
    assert list(store.layers) == list(LAYERS)  # conv1 first: the default layer
    meta = store.metadata
    assert meta["accuracy"]["test"] > 0.9
    assert {"seed", "versions", "concepts"} <= set(meta)


def test_label_and_pred_are_image_level_partitions(store):
    for category in ("label", "pred"):
        names = [f"{category}:{d}" for d in range(10)]
        assert {c.qualified for c in store.concepts if c.category == category} == set(names)
        stacked = np.stack([per_image(store, q) for q in names])          # [10, samples, pixels]
        assert (stacked.all(axis=2) | ~stacked.any(axis=2)).all()        # whole images only
        assert (stacked[:, :, 0].sum(axis=0) == 1).all()                 # one digit per image
    correct = per_image(store, "outcome:correct")[:, 0]
    labels = np.argmax([per_image(store, f"label:{d}")[:, 0] for d in range(10)], axis=0)
    preds = np.argmax([per_image(store, f"pred:{d}")[:, 0] for d in range(10)], axis=0)
    assert np.array_equal(correct, labels == preds)
    assert np.array_equal(per_image(store, "outcome:wrong")[:, 0], ~correct)


def test_labels_match_sklearn_targets(store):
    datasets = pytest.importorskip("sklearn.datasets")
    targets = datasets.load_digits().target
    for d in range(10):
        expected = np.repeat(targets == d, 256)
        assert np.array_equal(concept_mask(store, f"label:{d}"), expected), d


def test_pixel_concepts_are_consistent(store):
    ink = concept_mask(store, "pixel:ink")
    assert np.array_equal(concept_mask(store, "pixel:background"), ~ink)
    for name in ("loop", "endpoint", "junction", "horizontal", "vertical"):
        assert not (concept_mask(store, f"stroke:{name}") & ~ink).any(), name
    assert not (concept_mask(store, "stroke:hole") & ink).any()
    for c in store.concepts:
        assert 0 < c.count < store.n_positions, c.qualified


def test_search_then_eval_gives_the_same_iou(store):
    session = cxql.connect(store)
    for layer in LAYERS:
        session.execute(f"SET layer = '{layer}'")
        rows = session.execute("SEARCH unit 0..3 LENGTH 3 BEAM 5").rows
        assert [r["unit"] for r in rows] == [0, 1, 2, 3]
        for row in rows:
            if row["formula"] == "NONE":
                continue
            [again] = session.execute(f"EVAL {row['formula']} ON unit {row['unit']}").rows
            assert again["iou"] == row["iou"] > 0


def test_fc_keeps_activations_for_set_threshold(store):
    session = cxql.connect(store)
    session.execute("SET layer = 'fc'")
    base = session.execute("EVAL label:1 ON unit 0").rows[0]["mask_size"]
    session.execute("SET threshold = 'quantile:0.995'")
    tight = session.execute("EVAL label:1 ON unit 0").rows[0]["mask_size"]
    assert 0 < tight < base


def test_runtime_cxql_does_not_import_build_time_packages():
    code = ("import sys, cxql; s = cxql.connect(cxql.resources.demo_store_path()); "
            "s.execute('SEARCH unit 0 LENGTH 2'); "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def readme_search_table() -> list[dict]:
    """The rows of the README's demo table: | layer | unit | `formula` | IoU [(note)] |."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The demo store"):text.index("## A tour of the language")]
    rows = re.findall(r"^\| (conv1|conv2|fc) \| (\d+) \| `([^`]+)` \| ([0-9.]+)(.*)\|$", section, re.M)
    return [{"layer": layer, "unit": int(unit), "formula": formula, "iou": iou, "note": note}
            for layer, unit, formula, iou, note in rows]


def test_readme_search_table_is_what_the_shipped_store_answers(store):
    """Every row of the README's table comes from ``SEARCH unit * LENGTH 3 BEAM 10`` on stores/digits."""
    table = readme_search_table()
    assert len(table) >= 5
    session = cxql.connect(store)
    answers = {}
    for layer in LAYERS:
        session.execute(f"SET layer = '{layer}'")
        answers |= {(layer, r["unit"]): r for r in session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows}
    for row in table:
        live = answers[row["layer"], row["unit"]]
        assert (row["formula"], row["iou"]) == (live["formula"], f"{live['iou']:.3f}"), row
        for metric, value in re.findall(r"(precision|recall) ([0-9.]+)", row["note"]):
            assert value == f"{live[metric]:.2f}", (row, metric)


def test_readme_store_figures_are_the_shipped_stores(store):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The demo store"):text.index("## A tour of the language")]
    figures = re.search(r"holds ([\d,]+) positions .*?(\d+)\s+concepts in ([\d,]+) signatures.*?test accuracy\s+"
                        r"([0-9.]+)\).*?; ([0-9.]+) MB on disk", section, re.S)
    positions, concepts, signatures, test_accuracy, megabytes = figures.groups()
    assert int(positions.replace(",", "")) == store.n_positions
    assert int(concepts) == len(store.concepts)
    assert int(signatures.replace(",", "")) == store.n_signatures
    assert test_accuracy == f"{store.metadata['accuracy']['test']:.2f}"
    on_disk = sum(f.stat().st_size for f in Path(store.path).rglob("*") if f.is_file())
    assert abs(float(megabytes) - on_disk / 1e6) <= 0.1  # rounded; a re-save in a newer format may shift it
    assert "Unit 3 of conv1 answers `NONE`" in section and store.layers["conv1"].unit_positions(3).size == 0


def test_shipped_weights_rebuild_the_shipped_store_exactly(builder, store, tmp_path):
    """The build is reproducible: from the shipped weights it writes the shipped arrays, byte for byte.

    Only the manifest's ``versions`` (of the libraries that built it) may differ.
    """
    rebuilt = builder.build().save(tmp_path / "digits")
    ours = sorted(p.relative_to(rebuilt.path) for p in Path(rebuilt.path).rglob("*.npy"))
    shipped = sorted(p.relative_to(store.path) for p in Path(store.path).rglob("*.npy"))
    assert ours == shipped
    for rel in ours:
        assert (Path(rebuilt.path) / rel).read_bytes() == (Path(store.path) / rel).read_bytes(), rel
    manifests = [json.loads((Path(s.path) / "manifest.json").read_text()) for s in (rebuilt, store)]
    for m in manifests:
        m["metadata"].pop("versions")
        m.pop("version")  # the lead may re-save the store in a newer format version
    assert manifests[0] == manifests[1]


def test_build_without_weights_says_how_to_train(builder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        builder.main(["--out", str(tmp_path / "digits"), "--weights", str(tmp_path / "none.npz")])
    assert exit_.value.code == 2
    assert "none.npz: no such weights file; pass --train" in capsys.readouterr().err
    assert not (tmp_path / "digits").exists()


def test_weights_round_trip_through_npz(builder, tmp_path):
    """save_weights writes a plain .npz (no pickle) that load_model reads back exactly."""
    torch.manual_seed(1)
    model = builder.DigitsCNN()
    builder.save_weights(model, tmp_path / "w.npz")
    again = builder.load_model(tmp_path / "w.npz")
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(model.state_dict())


def test_shipped_weights_load_through_the_model_factory(store):
    """``examples/digits_model.py:load_model`` is a factory ``cxql units record --model`` accepts."""
    from cxql.record import load_factory

    model = load_factory(str(REPO / store.metadata["model_factory"]))
    assert not model.training
    assert [name for name, _ in model.named_children()] == ["conv1", "conv2", "fc", "out"]
    with torch.no_grad():
        logits = model(torch.zeros(2, 1, 16, 16))
    assert tuple(logits.shape) == (2, 10)
    digest = hashlib.sha256((REPO / store.metadata["weights"]["file"]).read_bytes()).hexdigest()
    assert digest == store.metadata["weights"]["sha256"]


def test_store_carries_its_digit_pictures(store):
    """``images.npy``: one uint8 16x16 picture a sample, dark ink on white, drawn by ``cxql report``."""
    from cxql.report import sample_image

    pictures = store.arrays["images"]
    assert pictures.shape == (store.n_samples, 16, 16) and pictures.dtype == np.uint8
    ink = per_image(store, "pixel:ink")                                  # [samples, 256]
    flat = pictures.reshape(store.n_samples, -1)
    assert flat[ink].max() < flat[~ink].min()                            # ink is darker than paper
    assert np.array_equal(np.asarray(sample_image(store, 5)), pictures[5])


# ------------------------------------------------------------------ concept functions

RING = draw("""
.......
.#####.
.#...#.
.#...#.
.#####.
.......
""")

T_SHAPE = draw("""
.........
.#######.
....#....
....#....
....#....
.........
""")

PLUS = draw("""
.......
...#...
...#...
.#####.
...#...
...#...
.......
""")

BAR = draw("""
..........
.########.
.########.
.########.
..........
""")


def test_holes_and_loops(builder):
    hole = builder.holes(RING)
    assert hole.sum() == 6 and not (hole & RING).any() and hole[2:4, 2:5].all()
    assert np.array_equal(builder.loops(RING), RING)
    assert not builder.holes(T_SHAPE).any()
    open_c = draw(".#####. .#..... .#..... .#####.")
    assert not builder.holes(open_c).any()       # background reaching the frame is no hole


def test_holes_never_leak_between_images(builder):
    batch = np.stack([RING, np.zeros_like(RING), RING])
    assert builder.holes(batch).sum(axis=(1, 2)).tolist() == [6, 0, 6]


def test_skeleton_keeps_thin_lines_and_thins_bars(builder):
    assert np.array_equal(builder.skeleton(T_SHAPE), T_SHAPE)
    thin = builder.skeleton(BAR)
    assert thin.sum() < BAR.sum() and (thin.sum(axis=0) <= 1).all() and not (thin & ~BAR).any()


def test_endpoints_and_junctions(builder):
    ends = builder.endpoints(T_SHAPE, reach=0)
    assert sorted(zip(*np.nonzero(ends))) == [(1, 1), (1, 7), (4, 4)]
    assert sorted(zip(*np.nonzero(builder.junctions(T_SHAPE, reach=0)))) == [(1, 4)]
    assert sorted(zip(*np.nonzero(builder.junctions(PLUS, reach=0)))) == [(3, 3)]
    assert builder.endpoints(PLUS, reach=0).sum() == 4
    assert not builder.endpoints(RING).any() and not builder.junctions(RING).any()
    assert builder.endpoints(T_SHAPE, reach=1).sum() > ends.sum()   # reach widens onto the ink
    assert not (builder.endpoints(T_SHAPE, reach=1) & ~T_SHAPE).any()


def test_horizontal_and_vertical_strokes(builder):
    assert np.array_equal(builder.horizontal(T_SHAPE, length=5), T_SHAPE & (np.arange(6) == 1)[:, None])
    assert not builder.vertical(T_SHAPE, length=5).any()               # the stem is only 4 long
    stem = T_SHAPE & (np.arange(6) >= 2)[:, None]                       # the crossing pixel lies on
    assert np.array_equal(builder.vertical(T_SHAPE, length=4), stem)   # both runs, so it is neither
    assert np.array_equal(builder.horizontal(BAR, length=7), BAR)
    assert not builder.horizontal(BAR, length=3).any()                 # as tall as wide: neither


def test_edges_and_regions(builder):
    square = draw(".... .##. .##. ....")
    rims = builder.edges(square)
    assert rims["top-edge"][1, 1:3].all() and rims["top-edge"].sum() == 2
    assert rims["bottom-edge"][2, 1:3].all() and rims["left-edge"][1:3, 1].all()
    assert rims["right-edge"][1:3, 2].all()
    parts = builder.regions((6, 6))
    assert parts["upper"][:2].all() and not parts["upper"][2:].any()
    assert parts["right"][:, 4:].all() and not parts["right"][:, :4].any()
    assert np.array_equal(np.argwhere(parts["centre"]), [[2, 2], [2, 3], [3, 2], [3, 3]])


def test_ink_and_broadcast(builder):
    images = np.array([[[0.0, 0.5], [0.9, 0.2]]])
    assert builder.ink(images, level=0.4).tolist() == [[[False, True], [True, False]]]
    wide = builder.broadcast(np.array([True, False]), (2, 3))
    assert wide.shape == (2, 2, 3) and wide[0].all() and not wide[1].any()


def test_training_is_deterministic(builder):
    rng = np.random.default_rng(0)
    pixels = builder.upsample(rng.random((64, 8, 8), dtype=np.float32))
    targets = rng.integers(0, 10, 64)
    first = builder.train(pixels, targets, epochs=1)
    second = builder.train(pixels, targets, epochs=1)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), name
