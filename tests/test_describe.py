"""DESCRIBE unit u and cxql.describe.sentence: formulas read as deterministic English."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
from cxql.describe import sentence
from cxql.parser import parse_formula
from cxql.resources import demo_store_path


@pytest.fixture(scope="module")
def demo() -> cxql.ConceptStore:
    return cxql.ConceptStore.open(demo_store_path())


@pytest.mark.parametrize("formula, text", [
    ("(bottom-edge AND NOT top-edge) AND NOT junction", "bottom edges of strokes that are not top edges of strokes or junctions"),
    ("hole OR loop OR endpoint", "holes, loops or stroke ends"),
    ("(horizontal AND lower) AND NOT right-edge",
     "horizontal strokes in the lower third of the frame that are not right edges of strokes"),
    ("(right AND NOT lower) AND NOT ink",
     "pixels in the right third of the frame outside the lower third of the frame that are not ink"),
    ("(hole OR loop) AND label:8", "either holes or loops in images of a 8"),
    ("ink AND vertical", "ink that are also vertical strokes"),
    ("NOT ink", "everything that is not ink"),
])
def test_demo_formulas_read_as_sentences(demo, formula, text):
    assert sentence(parse_formula(formula), demo) == text


def test_phrases_fall_back_to_descriptions_then_names():
    store = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"], ["x", "x", "y"],
                                         metadata={"concepts": {"x:a": "the letter a"}})
    assert sentence(parse_formula("a AND NOT (b OR c)"), store) == "the letter a that are not b (x) or c (y)"


def test_describe_statement_describes_the_searched_formula(demo):
    session = cxql.connect(demo)
    session.execute("SET layer = conv2")
    [row] = session.execute("DESCRIBE unit 10").rows
    [found] = session.execute("SEARCH unit 10").rows
    assert (row["unit"], row["formula"], row["iou"]) == (10, found["formula"], found["iou"])
    assert row["description"] == sentence(parse_formula(found["formula"]), demo)


def test_describe_a_missing_unit_names_it(demo):
    with pytest.raises(cxql.CxqlError, match="unit 99 does not exist"):
        cxql.connect(demo).execute("DESCRIBE unit 99")
