"""The store format: versions, what the manifest may name, and bulk data kept in arrays."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.cli import main
from cxql.errors import DataError, StoreError
from cxql.store.manifest import VERSION

# the demo store as cxql 0.1 wrote it (format version 1), kept to prove old stores still open
V1_DIGITS = Path(__file__).parent / "fixtures" / "digits_v1"

QUERIES = "SEARCH unit 0..3 LENGTH 2 BEAM 3; EVAL pixel:ink AND NOT region:upper ON unit *; SHOW concepts"


@pytest.fixture
def digits(tmp_path) -> Path:
    return Path(shutil.copytree(V1_DIGITS, tmp_path / "digits"))


def results(store) -> list:
    session = cxql.connect(store)
    session.execute("SET layer = conv2")
    return [r.rows for r in session.stream(QUERIES)]


def test_the_bundled_version_1_store_still_opens_and_saves_as_version_2(digits, tmp_path) -> None:
    assert json.loads((digits / "manifest.json").read_text())["version"] == 1
    old = cxql.ConceptStore.open(digits)
    new = old.save(tmp_path / "v2")
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["version"] == VERSION == 2
    assert "sample_names" not in manifest and all("count" not in c for c in manifest["concepts"])
    assert new.sample_names == old.sample_names and len(new.sample_names) == new.n_samples
    assert [c.count for c in new.concepts] == [c.count for c in old.concepts]
    assert results(new) == results(old)


def test_writing_to_a_version_1_store_upgrades_it_in_place(digits, capsys) -> None:
    before = results(cxql.ConceptStore.open(digits))
    store = cxql.ConceptStore.open(digits)
    store.add_unit_masks("extra", np.random.default_rng(0).random((store.n_positions, 2)) < 0.1)
    manifest = json.loads((digits / "manifest.json").read_text())
    assert manifest["version"] == 2 and "sample_names" not in manifest
    assert all("crc32" in e for e in manifest["arrays"].values())
    assert results(cxql.ConceptStore.open(digits)) == before
    capsys.readouterr()
    assert main(["store", "check", str(digits)]) == 0
    assert "note" not in capsys.readouterr().err  # every file now has a checksum


def test_a_newer_version_is_refused_by_name(digits) -> None:
    manifest = json.loads((digits / "manifest.json").read_text())
    manifest["version"] = 3
    (digits / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="store format version 3; this cxql reads versions 1, 2"):
        cxql.ConceptStore.open(digits)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "a\\b", "x" * 201, "tab\there"])
def test_layer_names_must_be_plain_path_segments(name) -> None:
    store = cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd"))
    with pytest.raises(DataError, match="invalid layer name"):
        store.add_unit_masks(name, np.eye(4, dtype=bool))


def _saved(tmp_path) -> Path:
    store = cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd"))
    store.add_unit_masks("l", np.eye(4, dtype=bool))
    return store.save(tmp_path / "s").path


@pytest.mark.parametrize("edit", [
    lambda m: m["layers"].__setitem__("../../outside", m["layers"].pop("l")),
    lambda m: m["arrays"]["signatures"].__setitem__("file", "../outside/signatures.npy"),
    lambda m: m["arrays"]["signatures"].__setitem__("file", "/etc/passwd"),
    lambda m: m["layers"]["l"]["arrays"]["hist_sig"].__setitem__("file", "layers/../../x.npy"),
    lambda m: m.__setitem__("retired", ["../victim.txt"]),
], ids=["layer-name", "array-file", "absolute-file", "layer-file", "retired-file"])
def test_manifest_file_names_outside_the_store_are_refused(tmp_path, edit) -> None:
    path = _saved(tmp_path)
    (tmp_path / "victim.txt").write_text("keep")
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json"):
        cxql.ConceptStore.open(path)
    with pytest.raises(StoreError, match="manifest.json"):
        cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd")).save(path)  # no write follows it
    assert (tmp_path / "victim.txt").read_text() == "keep"


def test_a_version_1_layer_name_outside_the_store_is_refused(digits) -> None:
    manifest = json.loads((digits / "manifest.json").read_text())
    manifest["layers"]["../../etc"] = manifest["layers"].pop("conv1")
    (digits / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="invalid layer name '../../etc'"):
        cxql.ConceptStore.open(digits)


def test_classifier_predictions_are_arrays_not_manifest_lists(tmp_path) -> None:
    from cxql.text_record import attach_classifier, classifier

    store = cxql.ConceptStore.from_masks(np.eye(6, dtype=bool), list("abcdef"), kind="text").save(tmp_path / "s")
    store.add_units("mlp", np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32))
    attach_classifier(store, "mlp", np.ones((3, 2)), np.array([0, 1, 2, 0, 1, 2]))
    text = (tmp_path / "s" / "manifest.json").read_text()
    assert "predictions\": [" not in text and "classifier_predictions" in text
    entry = classifier(cxql.ConceptStore.open(tmp_path / "s"), "mlp")
    assert entry["classes"] == ["entailment", "neutral", "contradiction"]
    assert np.asarray(entry["predictions"]).tolist() == [0, 1, 2, 0, 1, 2]


def test_a_version_1_layer_with_spatial_activations_opens(digits) -> None:
    # version 1 manifests give no shapes: kept [samples, units, h, w] activations are checked from their header
    acts = np.random.default_rng(2).normal(size=(1797, 2, 4, 4)).astype(np.float32)
    layer = digits / "layers" / "conv1"
    np.save(layer / "activations.npy", acts)
    manifest = json.loads((digits / "manifest.json").read_text())
    manifest["layers"]["conv1"]["activations"] = True
    (digits / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"activations.npy: has shape \[1797, 2, 4, 4\], expected \[1797, 8\]"):
        cxql.ConceptStore.open(digits)
    np.save(layer / "activations.npy", np.zeros((1797, 8, 4, 4), np.float32))
    assert cxql.ConceptStore.open(digits).layers["conv1"].activations.shape == (1797, 8, 4, 4)


@pytest.mark.parametrize("retired", ["manifest.json", ".cxql.lock", "notes.txt", "sub/data.npy",
                                     "CURRENT", "layers/l/hist_sig.npy.bak"])
def test_retired_may_name_only_cxqls_own_files(tmp_path, retired) -> None:
    path = _saved(tmp_path)
    target = path / retired
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("keep")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["retired"] = [retired]
    (path / "manifest.json").write_text(json.dumps(manifest))
    before = target.read_bytes()
    with pytest.raises(StoreError, match=r"manifest.json: .*retired"):
        cxql.ConceptStore.open(path)
    with pytest.raises(StoreError, match=r"manifest.json: .*retired"):
        cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), list("abcd")).save(path)
    assert target.read_bytes() == before


def test_retired_may_not_name_a_file_the_manifest_uses(tmp_path) -> None:
    path = _saved(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    used = manifest["arrays"]["signatures"]["file"]
    manifest["retired"] = [used]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"manifest.json: .*retired.*in use"):
        cxql.ConceptStore.open(path)
    assert (path / used).exists()


def test_a_reader_deletes_nothing_the_next_writer_cleans_up(tmp_path) -> None:
    path = _saved(tmp_path)
    stale = path / "g7" / "signatures.npy"
    stale.parent.mkdir()
    np.save(stale, np.zeros(3, np.uint8))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["retired"] = ["g7/signatures.npy"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    store = cxql.ConceptStore.open(path)
    cxql.connect(store).execute("SET layer = l; EVAL a ON unit *")
    assert stale.exists()
    store.add_unit_masks("m", np.eye(4, dtype=bool))
    assert not stale.exists() and not stale.parent.exists()


@pytest.mark.parametrize("edit, fault", [
    (lambda m: m["layers"]["l"].__setitem__("encoding", []), "encoding"),
    (lambda m: m["layers"]["l"].__setitem__("encoding", "rle"), "encoding"),
    (lambda m: m.__setitem__("kind", "audio"), "kind"),
    (lambda m: m["concepts"].__setitem__(1, dict(m["concepts"][0])), "repeated"),
    (lambda m: m["layers"]["l"]["threshold"].__setitem__("kind", []), "threshold"),
    (lambda m: m["layers"]["l"]["threshold"].__setitem__("value", float("nan")), "threshold"),
    (lambda m: m["layers"]["l"]["threshold"].__setitem__("value", 1e400), "threshold"),
    (lambda m: m.__setitem__("position_ids", []), "position_ids"),
    (lambda m: m["arrays"]["signatures"].__setitem__("dtype", "no-such"), "dtype"),
    (lambda m: m["arrays"]["signatures"].__setitem__("crc32", 2**40), "crc32"),
], ids=["encoding-list", "encoding-unknown", "kind", "duplicate-concept", "threshold-kind-list",
        "threshold-nan", "threshold-inf", "position-ids-list", "dtype", "crc32"])
def test_every_manifest_value_is_checked_on_open(tmp_path, capsys, edit, fault) -> None:
    path = _saved(tmp_path)
    text = (path / "manifest.json").read_text()
    manifest = json.loads(text)
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=f"manifest.json: .*{fault}"):
        cxql.ConceptStore.open(path)
    assert main(["-s", str(path), "-c", "SHOW concepts"]) == 1
    assert main(["store", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "manifest.json" in err
