"""The Broden-layout builder: every concept mask against a direct dense computation.

Datasets are written here, pixel by pixel, with the awkward cases built in:
several PNGs in one cell, empty cells, image-level labels, a label used in
two categories, a segmentation at another size than the masks, a label that
never occurs. The dense reference decodes the PNGs on its own and shares no
code with the builder.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxql
from cxql.cli import main
from cxql.errors import DataError
from cxql.store import broden as br
from cxql.store import signatures as sig

from reference import search as ref_search

CATEGORIES = ["color", "object", "part", "material", "scene", "texture"]
PIXEL = {"color", "object", "part", "material"}
LABELS = [  # number, name, category counts
    (1, "blue-c", "color(3)"), (2, "red-c", "color(2)"), (3, "sky", "object(3)"), (4, "tree", "object(2);part(1)"),
    (5, "leaf", "part(2)"), (6, "wood", "material(1)"), (7, "street-s", "scene(2)"), (8, "banded", "texture(1)"),
    (9, "unused", "object(0)"), (10, "car", "object(1)"), (11, "blue", "object(1)"),
]


def write_png(path: Path, labels: np.ndarray) -> None:
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = labels % 256, labels // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path)


def write_broden(root: Path, images: list[dict], labels=LABELS) -> Path:
    """images: dicts with 'name', 'size' (sh, sw) and per category label arrays or label numbers."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        w.writerow([0, "-", "", 0, 0, ""])
        for number, name, cat in labels:
            w.writerow([number, name, cat, 1, 1.0, ""])
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES])
        for img in images:
            sh, sw = img["size"]
            cells = []
            for cat in CATEGORIES:
                parts = []
                for j, item in enumerate(img.get(cat, [])):
                    if isinstance(item, int):
                        parts.append(str(item))
                    else:
                        rel = f"{img['name']}_{cat}_{j}.png"
                        write_png(root / "images" / rel, item)
                        parts.append(rel)
                cells.append(";".join(parts))
            w.writerow([f"{img['name']}.jpg", img.get("split", "train"), sh * 2, sw * 2, sh, sw, *cells])
    with open(root / "category.csv", "w", newline="") as f:
        csv.writer(f).writerows([["name", "first", "last", "count", "frequency"]] +
                                [[c, 1, 11, 1, 1] for c in CATEGORIES])
    return root


def random_images(rng: np.random.Generator, n: int, size=(8, 8)) -> list[dict]:
    pixel_labels = {"color": [1, 2], "object": [3, 4, 10, 11], "part": [4, 5], "material": [6]}
    images = []
    for i in range(n):
        img = {"name": f"ade20k/img{i}", "size": size}
        for cat, pool in pixel_labels.items():
            for _ in range(rng.integers(0, 3)):  # 0, 1 or 2 PNGs in the cell
                img.setdefault(cat, []).append(rng.choice([0, *pool], size=size).astype(np.int64))
        if rng.random() < 0.7:
            img["scene"] = [7]
        if rng.random() < 0.3:
            img["texture"] = [8]
        images.append(img)
    return images


def dense_masks(images: list[dict], numbers: list[int], shape=None, categories=CATEGORIES) -> np.ndarray:
    """Bool [N, K] straight from the label arrays (resized by the pixel-centre rule when needed)."""
    blocks = []
    for img in images:
        h, w = shape or img["size"]
        block = np.zeros((h * w, len(numbers)), dtype=bool)
        for cat in categories:
            for item in img.get(cat, []):
                if isinstance(item, int):
                    block[:, [k for k, n in enumerate(numbers) if n == item]] = True
                    continue
                sh, sw = item.shape
                rows = [int((i + 0.5) * sh / h) for i in range(h)]
                cols = [int((j + 0.5) * sw / w) for j in range(w)]
                flat = item[np.ix_(rows, cols)].ravel()
                for k, number in enumerate(numbers):
                    block[:, k] |= flat == number
        blocks.append(block)
    return np.concatenate(blocks)


def store_masks(store: cxql.ConceptStore) -> np.ndarray:
    table = sig.unpack_rows(np.asarray(store.signature_bits), len(store.concepts))
    return table[np.asarray(store.position_signatures, dtype=np.int64)]


def handmade(tmp_path: Path) -> tuple[Path, list[dict]]:
    a = np.zeros((4, 4), np.int64)
    a[:2] = 3                       # sky on top
    b = np.zeros((4, 4), np.int64)
    b[2:, :2] = 4                   # tree bottom-left, in a second object PNG
    part = np.zeros((4, 4), np.int64)
    part[0, 3] = 4                  # tree also as a part, on the sky
    color = np.full((4, 4), 1, np.int64)
    color[:, 3] = 2
    big = np.zeros((8, 8), np.int64)
    big[:4, :4] = 10                # an 8x8 segmentation resized to 4x4
    images = [
        {"name": "ade20k/a", "size": (4, 4), "object": [a, b], "part": [part], "color": [color], "scene": [7]},
        {"name": "ade20k/b", "size": (4, 4)},                                     # every cell empty
        {"name": "dtd/c", "size": (4, 4), "texture": [8], "color": [np.full((4, 4), 2, np.int64)]},
        {"name": "ade20k/d", "size": (8, 8), "object": [big], "scene": [7]},
    ]
    return write_broden(tmp_path / "broden", images), images


def test_handmade_dataset_masks_names_and_counts(tmp_path):
    root, images = handmade(tmp_path)
    store = br.build_broden(root, tmp_path / "store", resolution=(4, 4))
    numbers = [c["label"] for c in store.manifest["concepts"]]
    assert numbers == [1, 2, 3, 4, 7, 8, 10]                     # leaf, wood, unused, blue dropped
    assert [(c.name, c.category) for c in store.concepts] == [
        ("blue", "color"), ("red", "color"), ("sky", "object"), ("tree", "object"), ("street", "scene"),
        ("banded", "texture"), ("car", "object")]
    np.testing.assert_array_equal(store_masks(store), dense_masks(images, numbers, (4, 4)))
    assert store.n_samples == 4 and store.mask_shape == (4, 4)
    assert store.sample_names[0] == "ade20k/a.jpg"
    assert [c["images"] for c in store.manifest["concepts"]] == [1, 2, 1, 1, 2, 1, 1]
    assert store.concepts[store_index(store, "car")].count == 4   # the 8x8 quadrant became 2x2
    assert store.metadata["image_root"] == str((root / "images").resolve())
    session = cxql.connect(store)
    assert session.execute("color:blue").rows[0]["positions"] == 12
    assert session.execute("blue").rows[0]["positions"] == 12     # 'blue' (object) never occurs
    assert session.execute("street").rows[0]["samples"] == 2


def store_index(store, name):
    return next(c.index for c in store.concepts if c.name == name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_datasets_match_dense_masks(tmp_path, seed):
    rng = np.random.default_rng(seed)
    images = random_images(rng, 12)
    root = write_broden(tmp_path / "broden", images)
    store = br.build_broden(root, tmp_path / "store")
    numbers = [c["label"] for c in store.manifest["concepts"]]
    dense = dense_masks(images, numbers)
    np.testing.assert_array_equal(store_masks(store), dense)
    assert [c.count for c in store.concepts] == dense.sum(0).tolist()
    every = dense_masks(images, [n for n, _, _ in LABELS])
    assert sorted(numbers) == [n for n, _, _ in LABELS if every[:, [n for n, _, _ in LABELS].index(n)].any()]


def test_search_equals_search_on_dense_masks(tmp_path):
    rng = np.random.default_rng(7)
    images = random_images(rng, 16)
    root = write_broden(tmp_path / "broden", images)
    built = br.build_broden(root, tmp_path / "store")
    numbers = [c["label"] for c in built.manifest["concepts"]]
    dense = dense_masks(images, numbers)
    names = [c.name for c in built.concepts]
    cats = [c.category for c in built.concepts]
    units = np.stack([dense[:, 2] | dense[:, 0], dense[:, 3] & ~dense[:, 1], rng.random(len(dense)) < 0.1,
                      dense[:, -1]], axis=1)
    plain = cxql.ConceptStore.from_masks(dense, names, cats, mask_shape=(8, 8))
    for store in (built, plain):
        store.add_unit_masks("l", units)
    query = "SEARCH unit * LENGTH 3 BEAM 5"
    a = [(r["formula"], r["iou"]) for r in cxql.connect(built).execute(query).rows]
    b = [(r["formula"], r["iou"]) for r in cxql.connect(plain).execute(query).rows]
    assert a == b
    qualified = [f"{c}:{n}" for n, c in zip(names, cats)]
    for u in range(units.shape[1]):
        assert a[u][1] == ref_search(dense, qualified, units[:, u], 3, 5).iou


def test_row_and_category_selection(tmp_path):
    root, images = handmade(tmp_path)
    store = br.build_broden(root, tmp_path / "s1", prefixes=["ade20k/"], limit=2, categories=["object", "scene"])
    assert store.sample_names == ["ade20k/a.jpg", "ade20k/b.jpg"]
    assert [c.name for c in store.concepts] == ["sky", "tree", "street"]
    tree = dense_masks(images[:2], [4], categories=["object"])[:, 0]   # both object PNGs, not the part
    np.testing.assert_array_equal(store_masks(store)[:, 1], tree)
    assert tree.sum() == 4 and dense_masks(images[:2], [4])[:, 0].sum() == 5
    assert store.metadata["categories"] == ["object", "scene"]
    assert br.build_broden(root, tmp_path / "s2", split="train").n_samples == 4


def test_primary_category_is_the_most_counted_seen_one(tmp_path):
    root, _ = handmade(tmp_path)
    store = br.build_broden(root, tmp_path / "s", categories=["part"])
    assert [(c.name, c.category) for c in store.concepts] == [("tree", "part")]


def test_cli_builds_and_reports(tmp_path, capsys):
    root, _ = handmade(tmp_path)
    code = main(["store", "build", "broden", str(root), "--out", str(tmp_path / "s"), "--resolution", "4"])
    assert code == 0
    err = capsys.readouterr().err
    assert "4 images" in err and "bytes/position" in err
    assert cxql.ConceptStore.open(tmp_path / "s").n_positions == 64


# ------------------------------------------------------------------ bad input


def expect_error(root: Path, out: Path, *needles: str, **kwargs) -> None:
    with pytest.raises(DataError) as info:
        br.build_broden(root, out, **kwargs)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_missing_and_malformed_csv(tmp_path):
    root, _ = handmade(tmp_path)
    out = tmp_path / "out"
    (root / "label.csv").rename(root / "label.bak")
    expect_error(root, out, "label.csv", "missing")
    lines = (root / "label.bak").read_text().splitlines()
    (root / "label.csv").write_text("\n".join(lines[:3] + ["3,sky,object120,1,1,"] + lines[4:]) + "\n")
    expect_error(root, out, "label.csv, row 4", "object120")
    (root / "label.csv").write_text("\n".join(lines[:3] + ["x,sky,object(1),1,1,"] + lines[4:]) + "\n")
    expect_error(root, out, "label.csv, row 4", "number")
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    index = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join(index[:2] + ["ade20k/b.jpg,train,8,8,4"]) + "\n")
    expect_error(root, out, "index.csv, row 3", "columns")
    (root / "index.csv").write_text("\n".join(index[:2] + [index[2].replace(",4,4,", ",four,4,")]) + "\n")
    expect_error(root, out, "index.csv, row 3", "sh")
    (root / "index.csv").write_text("picture,sh,sw\n")
    expect_error(root, out, "index.csv, row 1", "image")
    with pytest.raises(DataError, match="no category column"):
        br.build_broden(handmade(tmp_path / "again")[0], out, categories=["smell"])


def test_unknown_labels_name_the_file_and_row(tmp_path):
    bad = np.zeros((4, 4), np.int64)
    bad[1, 1] = 42
    images = [{"name": "x", "size": (4, 4)}, {"name": "y", "size": (4, 4), "object": [bad]}]
    root = write_broden(tmp_path / "b1", images)
    expect_error(root, tmp_path / "out", "y_object_0.png", "index.csv, row 3", "label 42 has no row in label.csv")
    root = write_broden(tmp_path / "b2", [{"name": "x", "size": (4, 4), "scene": [99]}])
    expect_error(root, tmp_path / "out", "index.csv, row 2", "column scene", "label 99")


def test_bad_pngs(tmp_path):
    root, _ = handmade(tmp_path)
    png = root / "images" / "ade20k" / "a_object_1.png"
    png.write_bytes(b"not a png at all")
    expect_error(root, tmp_path / "out", str(png), "cannot decode", "row 2")
    write_png(png, np.zeros((5, 4), np.int64))
    expect_error(root, tmp_path / "out", str(png), "5x4", "4x4")
    png.unlink()
    expect_error(root, tmp_path / "out", str(png), "missing")


def test_failed_or_interrupted_build_keeps_the_old_store(tmp_path):
    root, _ = handmade(tmp_path)
    out = tmp_path / "store"
    br.build_broden(root, out, limit=1)
    before = (out / "manifest.json").read_text()

    def interrupt(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        br.build_broden(root, out, progress=interrupt)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broden", "store"]
    assert cxql.ConceptStore.open(out).n_samples == 1


def test_a_killed_build_is_cleaned_up_next_time(tmp_path):
    root, _ = handmade(tmp_path)
    stale = tmp_path / ".store.build-999999999-abc"
    stale.mkdir()
    (stale / "position_sig.npy").write_bytes(b"half")
    alive = tmp_path / f".store.build-{os.getppid()}-abc"
    alive.mkdir()
    br.build_broden(root, tmp_path / "store")
    assert not stale.exists() and alive.exists()


def test_distinct_tuples_and_resize_are_exact():
    rng = np.random.default_rng(3)
    layers = [rng.integers(0, 65536, 500) for _ in range(7)]
    first, inverse = br.distinct_tuples(layers, 500)
    stacked = np.stack(layers, 1)
    np.testing.assert_array_equal(stacked[first][inverse], stacked)
    assert len(first) == len(np.unique(stacked, axis=0))
    img = np.arange(12 * 9).reshape(12, 9)
    out = br.resize_nearest(img, (5, 4))
    assert out.tolist() == [[img[int((i + .5) * 12 / 5), int((j + .5) * 9 / 4)] for j in range(4)] for i in range(5)]


def test_two_labels_with_one_name_in_one_category_are_refused(tmp_path) -> None:
    """Repeated names are never merged: label.csv is named (issue 10 H; this builder refused them already)."""
    labels = [*LABELS[:-1], (11, "sky", "object(1)")]   # label 11 named like label 3, both objects
    images = [{"name": "a", "size": (4, 4), "object": [np.array([[3, 11] * 2] * 4)]}]
    with pytest.raises(DataError, match="label.csv: two labels are named 'sky' in category object"):
        br.build_broden(write_broden(tmp_path / "d", images, labels), tmp_path / "s")


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("file, old, new, message", [
    ("label.csv", "\n10,car", "\n1000000000000,car", "column number: 1000000000000 is out of range"),  # was 931 GiB
    ("label.csv", "\n10,car", "\n70000,car", "column number: 70000 is out of range 0..65535"),
    ("label.csv", "\n10,car", "\n-3,car", "column number: -3 is out of range"),
    ("label.csv", "object(1)", "object(" + "1" * 5000 + ")", "column category must be an integer, got '1111"),
    ("index.csv", ",7,", "," + "7" * 5000 + ",", "column scene must be an integer"),
    ("index.csv", ",7,", ",100000000000000000000,", "column scene must be an integer"),
    ("index.csv", ",7,", ",99999,", "column scene: 99999 is out of range 0..65535"),
    ("index.csv", ",8,8,", ",8" + "0" * 5000 + ",8,", "column sh must be an integer, got '8000"),
])
def test_out_of_range_numbers_in_the_csv_files_are_refused_by_row(tmp_path, file, old, new, message) -> None:
    images = random_images(np.random.default_rng(0), 2)
    images[0]["scene"] = [7]
    root = write_broden(tmp_path / "d", images)
    replace_once(root / file, old, new)
    with pytest.raises(DataError, match=f"{file}, row \\d+: {re.escape(message)}"):
        br.build_broden(root, tmp_path / "s")
