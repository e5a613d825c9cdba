"""The report's model sections: summary figure beside the page, descriptions, class contributions."""

from __future__ import annotations

import pytest
from PIL import Image

import cxql
from cxql.contributions import contributions
from cxql.report import write_report
from cxql.resources import demo_store_path


@pytest.fixture(scope="module")
def fc_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(demo_store_path(), "fc", out, units="0..3", length=2, top=2, tile=32), out


def test_summary_png_sits_beside_the_page(fc_page):
    page, out = fc_page
    with Image.open(out / "fc_summary.png") as img:
        assert img.format == "PNG"
    assert '<img src="fc_summary.png"' in page.read_text()


def test_units_carry_their_description_and_the_last_layer_its_contributions(fc_page):
    page, _ = fc_page
    text = page.read_text()
    store = cxql.ConceptStore.open(demo_store_path())
    per_class, _ = contributions(store, "fc")
    assert "Class contributions" in text and "<i>images of a" in text
    first = per_class.rows[0]
    assert f"<td>{first['unit']}</td><td>{first['weight']:.4f}</td>" in text


def test_a_layer_that_does_not_feed_the_output_has_no_contributions(tmp_path):
    page = write_report(demo_store_path(), "conv1", tmp_path, units="0", length=1, top=1, tile=32)
    assert "Layer summary" in page.read_text() and "Class contributions" not in page.read_text()
