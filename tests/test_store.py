"""The concept store: exact masks through the signature layout, atomic saves, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cxql
from cxql.errors import DataError, StoreError
from cxql.store.signatures import unpack_rows
from conftest import random_store_data


def dense_from_store(store: cxql.ConceptStore) -> np.ndarray:
    """Rebuild the dense [N, K] masks from signatures and ids."""
    table = unpack_rows(np.asarray(store.signature_bits), len(store.concepts))
    return table[np.asarray(store.position_signatures, dtype=np.int64)]


@pytest.mark.parametrize("seed", range(4))
def test_masks_survive_the_signature_layout_and_a_save(tmp_path, seed: int) -> None:
    concepts, names, units = random_store_data(seed)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    opened = store.save(tmp_path / "s")
    for s in (store, opened):
        np.testing.assert_array_equal(dense_from_store(s), concepts)
        assert [c.count for c in s.concepts] == concepts.sum(axis=0).tolist()
        layer = s.layers["l"]
        for u in range(units.shape[1]):
            np.testing.assert_array_equal(layer.unit_positions(u), np.flatnonzero(units[:, u]))
        np.testing.assert_array_equal(layer.mask_sizes, units.sum(axis=0))


def test_size_is_at_most_about_n_k_over_8(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n, k = 20000, 256
    concepts = rng.random((n, k)) < 0.5  # random: every position its own signature, the worst case
    cxql.ConceptStore.from_masks(concepts, [f"c{i}" for i in range(k)]).save(tmp_path / "s")
    size = sum(p.stat().st_size for p in (tmp_path / "s").iterdir())
    assert size <= 1.3 * n * k / 8  # bit-packed rows plus small ids and counts, never N*K bytes


def test_repetitive_masks_take_far_less(tmp_path) -> None:
    concepts = np.zeros((100_000, 200), dtype=bool)
    concepts[:50_000, 3] = True
    concepts[25_000:, 7] = True
    store = cxql.ConceptStore.from_masks(concepts, [f"c{i}" for i in range(200)])
    assert store.n_signatures == 3
    assert store.nbytes() < 100_000 * 200 / 8 / 4


def test_open_reads_manifest_and_maps_arrays(tmp_path) -> None:
    concepts, names, units = random_store_data(2)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    opened = store.save(tmp_path / "s")
    assert isinstance(opened.position_signatures, np.memmap)
    assert isinstance(opened.layers["l"].arrays["hist_sig"], np.memmap)


def test_units_added_to_an_open_store_are_written_atomically(tmp_path) -> None:
    concepts, names, units = random_store_data(3)
    cxql.ConceptStore.from_masks(concepts, names).save(tmp_path / "s")
    store = cxql.ConceptStore.open(tmp_path / "s")
    store.add_unit_masks("l", units)
    again = cxql.ConceptStore.open(tmp_path / "s")
    assert list(again.layers) == ["l"]
    assert [p.name for p in (tmp_path / "s").rglob(".*")] == [".cxql.lock"]  # no temporary leftovers


def test_a_failed_save_leaves_the_old_store(tmp_path, monkeypatch) -> None:
    concepts, names, _ = random_store_data(4)
    cxql.ConceptStore.from_masks(concepts, names).save(tmp_path / "s")
    before = (tmp_path / "s" / "manifest.json").read_text()
    store = cxql.ConceptStore.from_masks(concepts[:, :5], names[:5])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cxql.store.commit.write_manifest", boom)
    with pytest.raises(OSError):
        store.save(tmp_path / "s")
    assert (tmp_path / "s" / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.startswith((".", "g"))) == [".cxql.lock"]


@pytest.fixture
def saved(tmp_path):
    concepts, names, units = random_store_data(5)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    store.save(tmp_path / "s")
    return tmp_path / "s"


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "position_sig.npy").unlink(), "position_sig.npy: missing file"),
    (lambda p: (p / "manifest.json").unlink(), "manifest.json: missing"),
    (lambda p: (p / "signatures.npy").write_bytes((p / "signatures.npy").read_bytes()[:-7]), "signatures.npy"),
    (lambda p: (p / "manifest.json").write_text("{"), "unreadable manifest"),
    (lambda p: _edit_manifest(p, version=99), "store format version 99"),
    (lambda p: _edit_manifest(p, n_positions=5), "position_sig.npy: has shape"),
    (lambda p: (p / "layers" / "l" / "hist_sig.npy").unlink(), "hist_sig.npy: missing file"),
])
def test_damaged_stores_name_the_file(saved, damage, message) -> None:
    damage(saved)
    with pytest.raises(StoreError, match=message.replace("(", r"\(")):
        cxql.ConceptStore.open(saved)


def _edit_manifest(path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kwargs, message", [
    (dict(names=["a"]), "1 names for 3 concept columns"),
    (dict(categories=["x"]), "1 categories"),
    (dict(mask_shape=(4, 4)), "whole number"),
    (dict(sample_ids=[0, 1, 0, 1, 0, 1, 0, 1, 0, 1]), "contiguous"),
])
def test_from_masks_rejects_inconsistent_input(kwargs, message) -> None:
    masks = np.zeros((10, 3), dtype=bool)
    args = dict(names=["a", "b", "c"]) | kwargs
    with pytest.raises(DataError, match=message):
        cxql.ConceptStore.from_masks(masks, **args)


def test_samples_group_positions() -> None:
    masks = np.zeros((6, 1), dtype=bool)
    store = cxql.ConceptStore.from_masks(masks, ["a"], sample_ids=["x", "x", "y", "z", "z", "z"])
    assert store.n_samples == 3
    assert store.sample_offsets.tolist() == [0, 2, 3, 6]


def test_extra_arrays_travel_with_the_store(tmp_path) -> None:
    # Builders keep more arrays at the top level (a text store's word vectors):
    # opening maps them, and saving the opened store elsewhere keeps them.
    concepts, names, _ = random_store_data(6)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.arrays["word_vectors"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    copy = store.save(tmp_path / "a").save(tmp_path / "b")
    np.testing.assert_array_equal(copy.arrays["word_vectors"], store.arrays["word_vectors"])


def image_like_store(n_images: int = 100, seed: int = 7) -> tuple[cxql.ConceptStore, np.ndarray]:
    """Images of 8x8 positions whose scene concept makes every signature private to its image."""
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, 4, size=(n_images, 64))
    masks = np.zeros((n_images * 64, 4 + n_images), dtype=bool)
    masks[np.arange(n_images * 64), regions.ravel()] = True
    masks[np.arange(n_images * 64), 4 + np.repeat(np.arange(n_images), 64)] = True  # scene i
    names = [f"r{i}" for i in range(4)] + [f"scene{i}" for i in range(n_images)]
    return cxql.ConceptStore.from_masks(masks, names, mask_shape=(8, 8)), masks


def test_per_sample_ids_are_chosen_when_smaller_and_read_the_same(tmp_path) -> None:
    store, masks = image_like_store()
    units = np.random.default_rng(8).random((len(masks), 5)) < 0.05
    store.add_unit_masks("l", units)
    opened = store.save(tmp_path / "s")
    assert opened.manifest["position_ids"] == "per-sample"
    assert not (tmp_path / "s" / "position_sig.npy").exists()
    assert (tmp_path / "s" / "position_local.npy").stat().st_size < (len(masks) * 2)  # one byte a position
    np.testing.assert_array_equal(dense_from_store(opened), masks)
    plain = np.asarray(store.position_signatures, dtype=np.int64)
    ids = opened.position_signatures
    picks = np.random.default_rng(9).integers(0, len(masks), size=200)
    np.testing.assert_array_equal(ids[picks], plain[picks])
    np.testing.assert_array_equal(ids[70:700], plain[70:700])
    np.testing.assert_array_equal(np.asarray(ids), plain)
    query = "SEARCH unit * LENGTH 3 BEAM 5; EVAL r1 AND NOT scene3 ON unit *; r2 OR scene5"
    assert [r.rows for r in cxql.connect(opened).stream(query)] == [r.rows for r in cxql.connect(store).stream(query)]
    again = opened.save(tmp_path / "t")  # an opened per-sample store saves as it is
    np.testing.assert_array_equal(dense_from_store(again), masks)


def test_plain_ids_stay_where_per_sample_would_not_pay(tmp_path) -> None:
    concepts, names, _ = random_store_data(9)  # one position per sample
    opened = cxql.ConceptStore.from_masks(concepts, names).save(tmp_path / "s")
    assert opened.manifest["position_ids"] == "plain"
    assert (tmp_path / "s" / "position_sig.npy").exists()


def test_a_per_sample_store_missing_its_table_is_refused(tmp_path) -> None:
    store, _ = image_like_store()
    store.save(tmp_path / "s")
    (tmp_path / "s" / "sample_sig_table.npy").unlink()
    with pytest.raises(StoreError, match="sample_sig_table.npy: missing file"):
        cxql.ConceptStore.open(tmp_path / "s")


@pytest.mark.parametrize("start, stop", [(0, 0), (0, 1), (63, 65), (64, 128), (100, 6400), (6399, 6400), (5, 3)])
def test_per_sample_ids_slice_at_sample_edges(tmp_path, start, stop) -> None:
    store, _ = image_like_store()
    plain = np.asarray(store.position_signatures, dtype=np.int64)
    ids = store.save(tmp_path / "s").position_signatures
    np.testing.assert_array_equal(ids[start:stop], plain[start:stop])
    np.testing.assert_array_equal(ids[start:stop:3], plain[start:stop:3])
