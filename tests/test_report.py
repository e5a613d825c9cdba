"""Unit reports: the numbers they show, the masks they draw, and the files they write."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

import cxql
from cxql.cli import main
from cxql.report import draw_tile, image_masks, outline, unit_reports, write_report

from test_record import broden_store, make_model  # noqa: F401 - the fixture


@pytest.fixture
def recorded(broden_store):  # noqa: F811
    cxql.record(make_model(), "2", broden_store, device="cpu")
    return broden_store


def test_reports_agree_with_search_and_rank_images_by_max_activation(recorded):
    session = cxql.connect(recorded)
    reports = unit_reports(session, "2", "0..5", length=2, beam=3, top=4)
    rows = cxql.connect(recorded).execute("SEARCH unit 0..5 LENGTH 2 BEAM 3").rows
    assert [(r.unit, r.formula, r.iou) for r in reports] == [(r["unit"], r["formula"], r["iou"]) for r in rows]
    acts = np.asarray(recorded.layers["2"].activations)
    for r in reports:
        maxima = acts[:, r.unit].reshape(len(acts), -1).max(1)
        assert [s for s, _ in r.top] == sorted(range(len(acts)), key=lambda s: (-maxima[s], s))[:4]
        assert [v for _, v in r.top] == pytest.approx(sorted(maxima, reverse=True)[:4])


def test_reports_carry_and_show_the_search_metric(recorded):
    from cxql.report import html_page

    session = cxql.connect(recorded)
    session.execute("SET metric = 'f1'")
    reports = unit_reports(session, "2", "0..5", length=2, beam=3, top=2)
    again = cxql.connect(recorded)
    again.execute("SET metric = 'f1'")
    rows = again.execute("SEARCH unit 0..5 LENGTH 2 BEAM 3").rows
    assert [(r.formula, r.metric, r.score) for r in reports] == [(r["formula"], "f1", r["f1"]) for r in rows]
    page = html_page("store", "2", reports, "2", None)
    best = max(reports, key=lambda r: (r.score, -r.unit))
    assert page.index(f'id="unit{best.unit}"') < min(page.index(f'id="unit{r.unit}"') for r in reports if r is not best)
    assert f"F1 {best.score:.4f} &middot; IoU {best.iou:.4f}" in page


def test_image_masks_are_the_unit_and_formula_masks_of_that_image(recorded):
    session = cxql.connect(recorded)
    layer = recorded.layers["2"]
    unit_positions = set(layer.unit_positions(1).tolist())
    per = 64
    for sample in range(recorded.n_samples):
        unit, formula = image_masks(session, "2", 1, "(sky OR leaf)", sample)
        expect_unit = [sample * per + p in unit_positions for p in range(per)]
        assert unit.shape == (8, 8) and unit.ravel().tolist() == expect_unit
        table = cxql.store.signatures.unpack_rows(np.asarray(recorded.signature_bits), len(recorded.concepts))
        ids = np.asarray(recorded.position_signatures[sample * per:(sample + 1) * per], dtype=np.int64)
        names = [c.name for c in recorded.concepts]
        dense = table[ids]
        assert formula.ravel().tolist() == (dense[:, names.index("sky")] | dense[:, names.index("leaf")]).tolist()
    _, none = image_masks(session, "2", 1, "NONE", 0)
    assert not none.any()


def test_draw_tile_tints_the_formula_and_outlines_the_unit():
    unit = np.zeros((4, 4), bool)
    unit[:2, :2] = True
    formula = np.zeros((4, 4), bool)
    formula[3, 3] = True
    image = Image.new("RGB", (4, 4), (0, 0, 0))
    tile = np.asarray(draw_tile(image, unit, formula, size=8))
    assert tile.shape == (8, 8, 3)
    assert tuple(tile[0, 0]) == (255, 221, 0)                # unit edge in yellow
    assert tile[7, 7, 2] > 100 and tile[7, 7, 0] == 0        # formula tinted cyan
    assert tuple(tile[5, 0]) == (0, 0, 0)                    # untouched elsewhere
    ring = outline(np.ones((3, 3), bool))
    assert ring.sum() == 8 and not ring[1, 1]


def test_write_report_files(recorded, tmp_path):
    page = write_report(recorded, "2", tmp_path / "rep", units="0..2", top=3, tile=16)
    text = page.read_text()
    assert page.name == "2.html" and text.startswith("<!DOCTYPE html>")
    pngs = re.findall(r'src="([^"]+)"', text)
    assert sorted(pngs) == ["2/unit_0000.png", "2/unit_0001.png", "2/unit_0002.png", "2_summary.png"]
    for src in pngs[:3]:
        with Image.open(page.parent / src) as img:
            assert img.size == (3 * 16 + 2 * 4, 16)
    data = json.loads((tmp_path / "rep" / "2.json").read_text())
    assert [d["unit"] for d in data] == [0, 1, 2] and all(len(d["top"]) == 3 for d in data)
    assert "ade20k/img" in text                           # image names are captioned


def test_report_without_images_or_activations(tmp_path):
    rng = np.random.default_rng(1)
    concepts = rng.random((5 * 16, 3)) < 0.3
    store = cxql.ConceptStore.from_masks(concepts, ["a", "b", "c"], mask_shape=(4, 4))
    store.add_unit_masks("masks", np.stack([concepts[:, 0], concepts[:, 1] & concepts[:, 2]], 1))
    page = write_report(store, "masks", tmp_path / "r", top=2)
    assert (tmp_path / "r" / "masks" / "unit_0001.png").exists() and page.exists()
    data = json.loads((tmp_path / "r" / "masks.json").read_text())
    counts = concepts[:, 0].reshape(5, 16).sum(1)
    assert data[0]["formula"] == "a" and data[0]["iou"] == 1.0
    assert [s for s, _ in data[0]["top"]] == sorted(range(5), key=lambda s: (-counts[s], s))[:2]


def test_cli_report(recorded, tmp_path, capsys):
    code = main(["report", str(recorded.path), "2", "--out", str(tmp_path / "out"), "--units", "0..1", "--top", "2"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "2.html").exists()
    assert main(["report", str(recorded.path), "nope", "--out", str(tmp_path / "x")]) == 1
    assert "no layer 'nope'" in capsys.readouterr().err


def picture_store(tmp_path, *, pictures: np.ndarray | None = None, image_root: str | None = None):
    """A saved 2-sample store of 4x4 masks, one unit covering the first row of each sample."""
    concepts = np.zeros((32, 1), bool)
    concepts[::5] = True
    metadata = {"image_root": image_root} if image_root else {}
    store = cxql.ConceptStore.from_masks(concepts, ["dot"], ["c"], sample_ids=["a.png", "b.png"],
                                         mask_shape=(4, 4), metadata=metadata)
    if pictures is not None:
        store.arrays["images"] = pictures
    units = np.zeros((32, 1), bool)
    units[[0, 1, 2, 3, 16, 17, 18, 19]] = True
    store.add_unit_masks("layer", units)
    return store.save(tmp_path / "store")


def middle_pixel(page, unit: int = 0) -> tuple:
    """The colour at the centre of the unit's first tile (inside no mask drawn in these stores)."""
    with Image.open(page.parent / "layer" / f"unit_{unit:04d}.png") as img:
        return tuple(np.asarray(img.convert("RGB"))[12, 8])


def test_report_draws_the_pictures_a_store_carries(tmp_path):
    """A store's images.npy is drawn under the masks: not the grey tile of a store without pictures."""
    pictures = np.stack([np.full((4, 4), 200, np.uint8), np.full((4, 4), 40, np.uint8)])
    page = write_report(picture_store(tmp_path, pictures=pictures), "layer", tmp_path / "rep", tile=16, top=1)
    grey = write_report(picture_store(tmp_path / "g"), "layer", tmp_path / "grey", tile=16, top=1)
    assert middle_pixel(grey) == (57, 57, 57)                          # 96 dimmed: no picture
    assert middle_pixel(page) == (120, 120, 120)                       # 200 dimmed: sample a's picture


def test_report_reads_image_files_under_a_relative_image_root(tmp_path):
    """``image_root`` relative to the store directory: the store carries its PNGs and can move."""
    store = picture_store(tmp_path, image_root="pictures")
    (store.path / "pictures").mkdir()
    for name, value in (("a.png", 250), ("b.png", 10)):
        Image.new("RGB", (8, 8), (value, 0, 0)).save(store.path / "pictures" / name)
    moved = store.path.rename(tmp_path / "moved")
    page = write_report(cxql.ConceptStore.open(moved), "layer", tmp_path / "rep", tile=16, top=1)
    assert middle_pixel(page) == (150, 0, 0)


@pytest.mark.parametrize("pictures", [np.zeros((3, 4, 4), np.uint8), np.zeros((2, 4, 4, 2), np.uint8),
                                      np.zeros((2, 4, 4), np.float32)], ids=["samples", "channels", "dtype"])
def test_report_refuses_pictures_it_cannot_draw(tmp_path, pictures):
    store = picture_store(tmp_path, pictures=pictures)
    expected = f"images.npy is {pictures.dtype} {list(pictures.shape)}; expected uint8 [2, H, W]"
    with pytest.raises(cxql.CxqlError, match=re.escape(expected)):
        write_report(store, "layer", tmp_path / "rep", tile=16, top=1)


def test_report_draws_rgb_pictures(tmp_path):
    pictures = np.zeros((2, 4, 4, 3), np.uint8)
    pictures[0, ..., 1] = 200
    page = write_report(picture_store(tmp_path, pictures=pictures), "layer", tmp_path / "rep", tile=16, top=1)
    assert middle_pixel(page) == (0, 120, 0)


@pytest.mark.parametrize("where", ["store", "inside"])
def test_report_refuses_to_write_into_a_store(tmp_path, capsys, where):
    store = picture_store(tmp_path)
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    out = store.path if where == "store" else store.path / "g1" / "report"
    assert main(["report", str(store.path), "layer", "--out", str(out)]) == 2
    assert "cxql store" in capsys.readouterr().err
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before
    with pytest.raises(cxql.errors.UsageError):
        write_report(store, "layer", out)
