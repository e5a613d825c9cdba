"""Damaged stores: every file and every manifest key broken in every way gives one clear StoreError.

The store under test has every kind of file a store can hold (per-sample and
plain ids, sample offsets and names, a layer of each mask encoding, kept
activations and thresholds, extra arrays). Each damage must be caught when
the store is opened, with the file named, never a traceback or an answer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.cli import main
from cxql.errors import StoreError
from cxql.store.manifest import referenced_files

# the demo store as cxql 0.1 wrote it (format version 1), kept to prove old stores still open
V1_DIGITS = Path(__file__).parent / "fixtures" / "digits_v1"



def _image_store() -> cxql.ConceptStore:
    """Images of 8x8 positions, per-sample ids, two layers (positions and bits), names and vectors."""
    rng = np.random.default_rng(3)
    n_images = 40
    regions = rng.integers(0, 4, size=(n_images, 64))
    masks = np.zeros((n_images * 64, 4 + n_images), dtype=bool)
    masks[np.arange(n_images * 64), regions.ravel()] = True
    masks[np.arange(n_images * 64), 4 + np.repeat(np.arange(n_images), 64)] = True
    names = [f"r{i}" for i in range(4)] + [f"scene{i}" for i in range(n_images)]
    store = cxql.ConceptStore.from_masks(masks, names, mask_shape=(8, 8),
                                         sample_ids=[f"img{i}.jpg" for i in range(n_images)])
    store.add_units("sparse", rng.normal(size=(n_images, 3, 4, 4)).astype(np.float32))
    store.add_unit_masks("dense", rng.random((len(masks), 4)) < 0.6)
    store.arrays["word_vectors"] = rng.normal(size=(5, 3)).astype(np.float32)
    return store


def _irregular_store() -> cxql.ConceptStore:
    """Samples of different lengths (samples.npy) and plain ids."""
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 5, size=30)
    ids = np.repeat(np.arange(30), sizes)
    masks = rng.random((len(ids), 6)) < 0.3
    store = cxql.ConceptStore.from_masks(masks, [f"c{i}" for i in range(6)], sample_ids=ids.tolist())
    store.add_units("text", rng.normal(size=(30, 3)).astype(np.float32), threshold=0.0)
    return store


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("templates")
    return {"image": _image_store().save(root / "image").path, "irregular": _irregular_store().save(root / "irr").path}


def _files(kind: str) -> list[str]:
    store = {"image": _image_store, "irregular": _irregular_store}[kind]()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"cxql-damage-list-{os.getpid()}-{kind}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        return sorted(referenced_files(store.save(tmp).manifest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


FILES = [(kind, f) for kind in ("image", "irregular") for f in _files(kind)]
WRONG = {"u1": "i1", "u2": "i2", "u4": "i4", "u8": "i8", "i8": "i4", "i4": "i8", "f8": "f4", "f4": "f2"}


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _truncated(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[:-1] if len(data) > 128 else data[:40])


def _wrong_dtype(p: Path) -> None:
    arr = np.load(p)
    kind = arr.dtype.str[1:]
    np.save(p, arr.astype("S") if arr.dtype.kind == "U" else arr.astype(WRONG.get(kind, "f2")))


def _deleted(p: Path) -> None:
    p.unlink()


def _fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


DAMAGES = {"empty": _empty, "truncated": _truncated, "wrong-dtype": _wrong_dtype, "deleted": _deleted,
           "fifo": _fifo}


def _copy(templates, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(templates[kind], tmp_path / "s"))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("kind, file", FILES)
def test_every_damaged_array_file_is_named_on_open(templates, tmp_path, kind, file, damage) -> None:
    path = _copy(templates, kind, tmp_path)
    DAMAGES[damage](path / file)
    with pytest.raises(StoreError) as caught:
        cxql.ConceptStore.open(path)
    assert file in str(caught.value)


def _manifest_keys() -> list[tuple[str, ...]]:
    """Every key of the image store's manifest that a reader relies on, as a path into the JSON."""
    store = _image_store()
    keys = [(k,) for k in ("format", "version", "kind", "generation", "n_positions", "n_samples",
                           "n_signatures", "mask_shape", "concepts", "arrays", "layers", "metadata",
                           "position_ids")]
    keys += [("concepts", 0, "name"), ("concepts", 0, "category")]
    for layer in store.layers:
        keys += [("layers", layer, k) for k in ("units", "encoding", "threshold", "activations", "arrays")]
    keys += [("arrays", "signatures", k) for k in ("file", "dtype", "shape", "bytes", "crc32")]
    keys += [("layers", "sparse", "arrays", "hist_sig", k) for k in ("file", "dtype", "shape", "bytes", "crc32")]
    return keys


def _edit(path: Path, keys: tuple, how: str) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    node = manifest
    for k in keys[:-1]:
        node = node[k]
    if how == "missing":
        del node[keys[-1]]
    else:
        node[keys[-1]] = 7 if isinstance(node[keys[-1]], (str, list, dict, bool, type(None))) else "7"
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["missing", "wrong-type"])
@pytest.mark.parametrize("keys", _manifest_keys(), ids=lambda k: ".".join(map(str, k)))
def test_every_broken_manifest_key_is_named_on_open(templates, tmp_path, keys, how) -> None:
    path = _copy(templates, "image", tmp_path)
    _edit(path, keys, how)
    with pytest.raises(StoreError) as caught:
        cxql.ConceptStore.open(path)
    assert "manifest.json" in str(caught.value)


@pytest.mark.parametrize("keys", [("n_positions",), ("n_samples",), ("n_signatures",), ("layers", "dense", "units"),
                                  ("layers", "sparse", "units")], ids=lambda k: ".".join(k))
def test_sizes_in_the_manifest_must_agree_with_the_arrays(templates, tmp_path, keys) -> None:
    path = _copy(templates, "image", tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    node = manifest
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] += 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"\.npy|manifest\.json"):
        cxql.ConceptStore.open(path)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"format": "cxql-store"' + ', "x": [' * 50_000,
                                  "", "\xff\xfe", "null", '"a string"'])
def test_a_manifest_that_is_not_json_of_a_store_is_refused(templates, tmp_path, text) -> None:
    path = _copy(templates, "image", tmp_path)
    (path / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe"
                                         else b"\xff\xfe")
    with pytest.raises(StoreError, match="manifest.json"):
        cxql.ConceptStore.open(path)


def test_a_manifest_that_is_a_named_pipe_does_not_block(templates, tmp_path) -> None:
    path = _copy(templates, "image", tmp_path)
    _fifo(path / "manifest.json")
    with pytest.raises(StoreError, match="manifest.json: not a regular file"):
        cxql.ConceptStore.open(path)


def test_npy_files_the_manifest_does_not_name_are_ignored(templates, tmp_path) -> None:
    path = _copy(templates, "image", tmp_path)
    (path / "junk.npy").write_bytes(b"not an array")
    (path / "layers" / "junk.npy").write_bytes(b"")
    store = cxql.ConceptStore.open(path)
    assert "junk" not in store.arrays


@pytest.mark.parametrize("kind, file", FILES)
def test_store_check_finds_a_changed_byte_in_every_file(templates, tmp_path, capsys, kind, file) -> None:
    path = _copy(templates, kind, tmp_path)
    assert main(["store", "check", str(path)]) == 0
    data = bytearray((path / file).read_bytes())
    data[-1] ^= 0x01  # the last data byte: the header still parses, only the checksum can tell
    (path / file).write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["store", "check", str(path)]) == 1
    assert file in capsys.readouterr().err


def test_an_edited_concept_count_is_caught(tmp_path) -> None:
    # version 1 kept counts in the manifest, where an edit changed every IoU of that concept
    path = Path(shutil.copytree(V1_DIGITS, tmp_path / "digits"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["concepts"][0]["count"] += 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json: concept 'ink' has count"):
        cxql.ConceptStore.open(path)


def test_a_signed_id_array_in_a_version_1_store_is_refused(tmp_path) -> None:
    path = Path(shutil.copytree(V1_DIGITS, tmp_path / "digits"))
    ids = np.load(path / "position_sig.npy")
    np.save(path / "position_sig.npy", ids.astype(np.int16))
    with pytest.raises(StoreError, match="position_sig.npy: holds int16; position_sig must be unsigned"):
        cxql.ConceptStore.open(path)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("file", ["position_sig.npy", "sig_counts.npy", "signatures.npy", "layers/conv2/mask_positions.npy",
                                  "layers/fc/activations.npy", "layers/conv1/mask_bits.npy"])
def test_damaged_files_of_a_version_1_store_are_named(tmp_path, file, damage) -> None:
    path = Path(shutil.copytree(V1_DIGITS, tmp_path / "digits"))
    DAMAGES[damage](path / file)
    with pytest.raises(StoreError) as caught:
        cxql.ConceptStore.open(path)
    assert file in str(caught.value)


def _poke(p: Path, entry: int, byte: int, value: int) -> None:
    """Set one byte of one entry of an int64 .npy in place (its header, so its size, stays as it was)."""
    arr = np.load(p, mmap_mode="r")
    offset = p.stat().st_size - arr.nbytes + entry * arr.itemsize + byte
    data = bytearray(p.read_bytes())
    data[offset] = value if value >= 0 else data[offset] ^ 1
    p.write_bytes(bytes(data))


def _layer_file(path: Path, layer: str, key: str) -> Path:
    return path / json.loads((path / "manifest.json").read_text())["layers"][layer]["arrays"][key]["file"]


HIST_DAMAGE = {"count-low-bit": ("hist_count", 0, 0, -1), "count-high": ("hist_count", 1, 2, 9),
               "sig-out-of-range": ("hist_sig", 0, 3, 0x7F), "sig-order": ("hist_sig", 2, 1, 0x7F),
               "sig-negative": ("hist_sig", 0, 7, 0xFF), "indptr": ("hist_indptr", 1, 0, -1)}


@pytest.mark.parametrize("layer", ["sparse", "dense"])
@pytest.mark.parametrize("damage", sorted(HIST_DAMAGE))
def test_a_changed_histogram_byte_is_caught_at_first_use(templates, tmp_path, layer, damage) -> None:
    key, entry, byte, value = HIST_DAMAGE[damage]
    path = _copy(templates, "image", tmp_path)
    _poke(_layer_file(path, layer, key), entry, byte, value)
    session = cxql.connect(path)  # opening stays header-only
    session.execute(f"SET layer = {layer}")
    for query in ("EVAL r0 ON unit *", "SEARCH unit * LENGTH 2 BEAM 2"):
        with pytest.raises(StoreError) as caught:
            session.execute(query)
        assert f"{key}.npy" in str(caught.value) and "layers/" in str(caught.value)


def test_intact_histograms_pass_their_checks(templates) -> None:
    store = cxql.ConceptStore.open(templates["image"])
    for layer in store.layers.values():
        indptr, sig, cnt = layer.histograms
        assert int(cnt.sum()) == sum(len(layer.unit_positions(u)) for u in range(layer.n_units))


def test_a_damaged_sig_counts_is_named_as_such(templates, tmp_path) -> None:
    path = _copy(templates, "irregular", tmp_path)
    file = path / json.loads((path / "manifest.json").read_text())["arrays"]["sig_counts"]["file"]
    arr = np.load(file, mmap_mode="r")
    data = bytearray(file.read_bytes())
    data[file.stat().st_size - arr.nbytes] ^= 1
    file.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"sig_counts.npy: .*positions") as caught:
        cxql.ConceptStore.open(path)
    assert "concept_counts.npy" not in str(caught.value)


def test_a_layer_added_meanwhile_is_reported_against_the_store(templates, tmp_path) -> None:
    path = _copy(templates, "irregular", tmp_path)
    first, second = cxql.ConceptStore.open(path), cxql.ConceptStore.open(path)
    acts = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    first.add_units("new", acts)
    with pytest.raises(StoreError, match=r"layer 'new' .*another process") as caught:
        second.add_units("new", acts)
    assert str(path) in str(caught.value)
