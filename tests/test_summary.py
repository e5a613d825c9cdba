"""SUMMARY LAYER: checked against a plain numpy computation over SEARCH rows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import cxql
from cxql.parser import parse_formula
from cxql.summary import operator_counts, plot_png


def random_store(seed: int) -> cxql.ConceptStore:
    rng = np.random.default_rng(seed)
    concepts = rng.random((400, 6)) < 0.3
    units = np.stack([concepts[:, 0] | concepts[:, 3], concepts[:, 1] & ~concepts[:, 2],
                      rng.random(400) < 0.2, concepts[:, 4], np.zeros(400, bool)], axis=1)
    store = cxql.ConceptStore.from_masks(concepts, [f"c{i}" for i in range(6)], ["a", "a", "b", "b", "c", "c"])
    store.add_unit_masks("layer", units)
    store.add_unit_masks("other", units[:, :2])
    return store


@pytest.mark.parametrize("seed", [0, 1])
def test_summary_agrees_with_search_rows(seed):
    session = cxql.connect(random_store(seed))
    rows = session.execute("SUMMARY LAYER layer LENGTH 3").rows
    lengths = [r for r in rows if r["part"] == "length"]
    for k, row in enumerate(lengths, start=1):
        found = session.execute(f"SEARCH unit * LENGTH {k}").rows
        iou = np.array([r["iou"] if r["formula"] else 0.0 for r in found])
        assert row["units"] == int((iou > 0).sum())
        assert row["mean"] == pytest.approx(iou.mean(), abs=0, rel=1e-12)
        assert (row["median"], row["q1"], row["q3"], row["max"]) == pytest.approx(
            (np.median(iou), np.quantile(iou, 0.25), np.quantile(iou, 0.75), iou.max()))
    final = [r for r in session.execute("SEARCH unit * LENGTH 3").rows if r["formula"] not in (None, "NONE")]
    category = {f"c{i}": "abc"[i // 2] for i in range(6)}
    for row in (r for r in rows if r["part"] == "category"):
        using = [r for r in final if row["name"] in {category[c.name] for c in
                                                     cxql.syntax.leaves(parse_formula(r["formula"]))}]
        assert (row["units"], row["share"]) == (len(using), len(using) / 5)
    for row in (r for r in rows if r["part"] == "operator"):
        using = [r for r in final if operator_counts(parse_formula(r["formula"]))[row["name"]]]
        assert row["units"] == len(using)


def test_summary_leaves_the_session_layer_alone_and_names_unknown_layers():
    session = cxql.connect(random_store(0))
    session.execute("SET layer = other")
    session.execute("SUMMARY LAYER layer LENGTH 1")
    assert session.execute("SHOW settings").rows and session.settings["layer"] == "other"
    with pytest.raises(cxql.CxqlError, match="unknown layer 'layr'"):
        session.execute("SUMMARY LAYER layr")


@pytest.mark.parametrize("formula, counts", [
    ("a OR b", {"OR": 1, "AND": 0, "AND NOT": 0}),
    ("(a AND NOT b) AND c", {"OR": 0, "AND": 1, "AND NOT": 1}),
    ("(a OR b) AND NOT (c AND d)", {"OR": 1, "AND": 1, "AND NOT": 1}),
])
def test_operator_counts(formula, counts):
    assert operator_counts(parse_formula(formula)) == counts


def test_plot_is_a_png(tmp_path):
    rows = cxql.connect(random_store(0)).execute("SUMMARY LAYER layer LENGTH 3").rows
    path = plot_png(rows, tmp_path / "summary.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (480, 320)
        assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 3  # drawn, not blank
