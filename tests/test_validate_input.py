"""What a store refuses at the door: repeated concept names, non-bool masks, a layer name taken, odd --out."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
from cxql.errors import DataError, UsageError
from cxql.store import signatures as sig
from cxql.store.validate_input import check_out_path, os_errors

MASKS = np.random.default_rng(0).random((40, 4)) < 0.4


@pytest.mark.parametrize("names, categories, repeated", [
    (["a", "b", "a", "c"], None, "'a'"),
    (["a", "b", "a", "b"], None, "'a', 'b'"),
    (["red", "red", "x", "y"], ["color", "color", "", ""], "'color:red'"),
    (["red", "color:red", "x", "y"], ["color", "", "", ""], "'color:red'"),   # one qualified, one bare
])
def test_repeated_concept_names_are_refused_listing_them(names, categories, repeated) -> None:
    with pytest.raises(DataError, match="concept names must be unique") as err:
        cxql.ConceptStore.from_masks(MASKS, names, categories)
    assert f"repeated: {repeated}" in str(err.value)


def test_repeated_names_are_refused_on_the_builders_entry_point_too() -> None:
    """from_signatures is what the NLI builder calls: it refuses repeats as from_masks does."""
    builder = sig.SignatureBuilder(4)
    ids = builder.add(sig.pack_rows(MASKS))
    bits, counts = builder.table()
    with pytest.raises(DataError, match="repeated: 'pre:dog'"):
        cxql.ConceptStore.from_signatures(bits, counts, ids, ["dog", "dog", "cat", "x"], ["pre"] * 4, None)


def test_one_name_in_two_categories_is_fine_and_queries_must_qualify_it() -> None:
    store = cxql.ConceptStore.from_masks(MASKS, ["red", "red", "x", "y"], ["color", "object", "", ""])
    session = cxql.connect(store)
    assert session.execute("color:red").rows
    with pytest.raises(cxql.CxqlError, match="ambiguous concept 'red'"):
        session.execute("red")


@pytest.mark.parametrize("masks, message", [
    (MASKS.astype(np.float32), "masks must be bool \\(or integers 0/1\\), got dtype float32"),
    (MASKS.astype(np.float64) * 0.3, "got dtype float64"),
    (np.where(MASKS, 2, 0), "must hold only 0 and 1; found 2 at"),
    (np.where(MASKS, 1, -1).astype(np.int8), "found -1 at \\[0, 0\\]"),
    (MASKS.astype(str), "got dtype <U5"),
])
def test_concept_masks_must_be_bool_or_0_1_integers(masks, message) -> None:
    with pytest.raises(DataError, match=message):
        cxql.ConceptStore.from_masks(masks, list("abcd"))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.int8])
def test_0_1_integer_masks_mean_what_bool_masks_mean(dtype) -> None:
    units = np.random.default_rng(1).random((40, 3)) < 0.3
    as_bool = cxql.ConceptStore.from_masks(MASKS, list("abcd"))
    as_int = cxql.ConceptStore.from_masks(MASKS.astype(dtype), list("abcd"))
    as_bool.add_unit_masks("l", units)
    as_int.add_unit_masks("l", units.astype(dtype))
    assert [c.count for c in as_int.concepts] == [c.count for c in as_bool.concepts] == MASKS.sum(0).tolist()
    for u in range(3):
        np.testing.assert_array_equal(as_int.layers["l"].unit_positions(u), np.flatnonzero(units[:, u]))


@pytest.mark.parametrize("masks, message", [
    (np.full((40, 2), 0.9), "unit masks of layer 'l4' must be bool \\(or integers 0/1\\), got dtype float64"),
    (np.full((40, 2), 3), "unit masks of layer 'l4' must hold only 0 and 1; found 3"),
])
def test_unit_masks_must_be_bool_or_0_1_integers(masks, message) -> None:
    store = cxql.ConceptStore.from_masks(MASKS, list("abcd"))
    with pytest.raises(DataError, match=message):
        store.add_unit_masks("l4", masks)
    assert "l4" not in store.layers


@pytest.mark.parametrize("out", [".", "..", "/", "a/..", "./"])
def test_an_out_path_must_name_a_new_directory(out) -> None:
    with pytest.raises(UsageError, match="give the name of a new store directory"):
        check_out_path(out)


def test_os_errors_become_one_error_naming_the_path(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file/store: cannot write: Not a directory"):
        with os_errors(tmp_path / "file" / "store"):
            (tmp_path / "file" / "store").mkdir()
