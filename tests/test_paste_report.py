"""The report's copy-paste section: which concept is pasted, and its numbers against direct pastes."""

from __future__ import annotations

import pytest
from PIL import Image

import cxql
import cxql.model as cm
from cxql import copy_paste as cp
from cxql import paste_report as pr
from cxql.parser import parse_formula
from cxql.report import write_report
from cxql.resources import demo_store_path


@pytest.fixture(scope="module")
def demo() -> cxql.ConceptStore:
    return cxql.ConceptStore.open(demo_store_path())


@pytest.mark.parametrize("formula, expected", [
    ("hole", [("hole", False)]),
    ("(label:2 AND NOT loop) AND NOT hole", [("label:2", False), ("loop", True), ("hole", True)]),
    ("NOT (hole OR NOT loop)", [("hole", True), ("loop", False)]),
])
def test_involved_tracks_negation(formula, expected):
    assert list(pr.involved(parse_formula(formula))) == expected


@pytest.mark.parametrize("concept, expected", [("hole", True), ("upper", True), ("label:2", False),
                                               ("pred:3", False), ("nowhere", False)])
def test_only_regions_inside_images_can_be_pasted(demo, concept, expected):
    assert pr.pastable(demo, concept) is expected


def test_choices_prefer_a_concept_named_without_not_and_skip_labels(demo):
    rows = [{"class": "0", "rank": 1, "unit": 1, "formula": "label:0"},
            {"class": "1", "rank": 1, "unit": 2, "formula": "label:1 AND NOT loop"},
            {"class": "1", "rank": 2, "unit": 3, "formula": "hole OR pred:1"},
            {"class": "2", "rank": 1, "unit": 4, "formula": None},
            {"class": "3", "rank": 1, "unit": 5, "formula": "junction"}]
    assert pr.choices(demo, rows, classes=2) == [("1", "hole", False), ("3", "junction", False)]


def test_report_section_numbers_are_direct_pastes(tmp_path, demo):
    page = write_report(demo_store_path(), "fc", tmp_path, units="15", length=2, top=1, tile=16)
    text = page.read_text()
    assert "Copy-paste examples" in text and '<img src="fc_copy_paste_0.png"' in text
    with Image.open(tmp_path / "fc_copy_paste_0.png") as img:
        assert img.format == "PNG"
    formula = cxql.connect(demo).execute("SET layer = fc; SEARCH unit 15 LENGTH 2").rows[0]["formula"]
    [(name, negated)] = [(n, g) for n, g in pr.involved(parse_formula(formula)) if pr.pastable(demo, n)]
    attached = cm.load(demo)
    for target in (0, 9):
        r = cp.summary_row(cp.paste(demo, name, target, n=10, seed=0, attached=attached), name, target, source=2)
        cells = [str(target), str(r["victims"])] + [f"{r[k]:.4f}" for k in
                                                    ("flip_rate", "control_flip_rate", "to_source",
                                                     "control_to_source")]
        in_formula = f"NOT {name}" if negated else name
        assert f"<td>2</td><td>{name}</td><td>{in_formula}</td><td>" + "</td><td>".join(cells) + "</td>" in text


def test_no_section_when_no_formula_names_a_pastable_concept(tmp_path):
    page = write_report(demo_store_path(), "fc", tmp_path, units="0", length=1, top=1, tile=16)
    assert "Class contributions" in page.read_text() and "Copy-paste examples" not in page.read_text()
