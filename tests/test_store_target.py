"""Where a store may be written: an absent path, an empty folder or a store; never an input.

``--out`` used to move whatever was there aside and delete it: a project's
sources, the Broden dataset being read, the pairs file itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.cli import main
from cxql.errors import UsageError

sys.path.insert(0, str(Path(__file__).parent))
from test_broden import handmade  # noqa: E402

PAIRS = [{"sentence1": "A dog runs.", "sentence2": "An animal moves.", "gold_label": "entailment"},
         {"sentence1": "A cat sleeps.", "sentence2": "A dog barks.", "gold_label": "contradiction"}]


@pytest.fixture
def pairs(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def nli(*args) -> int:
    return main(["store", "build", "nli", *map(str, args), "--pipeline", "none"])


def test_a_folder_that_is_not_a_store_is_kept(tmp_path, pairs, capsys) -> None:
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "src" / "model.py").write_text("weights = 1\n")
    before = snapshot(project)
    assert nli(pairs, "--out", project) == 2
    assert "is not a cxql store" in capsys.readouterr().err
    assert snapshot(project) == before


def test_the_input_file_is_never_the_output(tmp_path, pairs, capsys) -> None:
    before = pairs.read_bytes()
    for extra in ([], ["--force"]):
        assert nli(pairs, "--out", pairs, *extra) == 2
        assert "would overwrite the input" in capsys.readouterr().err
    assert pairs.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_a_folder_holding_the_input_is_never_the_output(tmp_path, pairs, capsys) -> None:
    assert nli(pairs, "--out", tmp_path, "--force") == 2
    assert pairs.exists()


def test_the_broden_dataset_is_never_the_output(tmp_path, capsys) -> None:
    root, _ = handmade(tmp_path)
    before = snapshot(root)
    for extra in ([], ["--force"]):
        assert main(["store", "build", "broden", str(root), "--out", str(root), *extra]) == 2
        assert "would overwrite the input" in capsys.readouterr().err
    assert snapshot(root) == before


def test_force_replaces_what_is_not_a_store(tmp_path, pairs) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("old")
    assert nli(pairs, "--out", other, "--force") == 0
    assert not (other / "notes.txt").exists() and cxql.ConceptStore.open(other).n_samples == 2


@pytest.mark.parametrize("existing", ["absent", "empty", "store"])
def test_absent_empty_or_a_store_is_written(tmp_path, pairs, existing) -> None:
    out = tmp_path / "out"
    if existing == "empty":
        out.mkdir()
    elif existing == "store":
        cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"]).save(out)
    assert nli(pairs, "--out", out) == 0
    assert cxql.ConceptStore.open(out).kind == "text"


def test_save_refuses_a_file_or_a_folder_that_is_not_a_store(tmp_path) -> None:
    store = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"])
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("keep me")
    for target in ("file.txt", "dir"):
        with pytest.raises(UsageError, match="not a cxql store"):
            store.save(tmp_path / target)
    assert (tmp_path / "file.txt").read_text() == (tmp_path / "dir" / "x").read_text() == "keep me"
    assert store.save(tmp_path / "dir", force=True).n_positions == 3


def test_a_damaged_store_is_replaced_only_with_force(tmp_path) -> None:
    store = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"])
    path = store.save(tmp_path / "s").path
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["arrays"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(cxql.errors.StoreError, match="damaged store; pass --force"):
        store.save(path)
    assert store.save(path, force=True).n_positions == 3


@pytest.mark.parametrize("inside", ["images", "images/sub", "new"])
def test_an_output_inside_the_broden_dataset_is_refused_even_with_force(tmp_path, capsys, inside) -> None:
    root, _ = handmade(tmp_path)
    before = snapshot(root)
    for extra in ([], ["--force"]):
        assert main(["store", "build", "broden", str(root), "--out", str(root / inside), *extra]) == 2
        assert "inside the input" in capsys.readouterr().err
    assert snapshot(root) == before


def test_an_output_above_the_broden_dataset_is_refused(tmp_path, capsys) -> None:
    root, _ = handmade(tmp_path)
    before = snapshot(root)
    assert main(["store", "build", "broden", str(root), "--out", str(tmp_path), "--force"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert snapshot(root) == before


def test_save_never_writes_inside_or_above_what_it_reads(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "vectors.txt").write_text("keep")
    store = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"])
    for target in (data / "sub", data, tmp_path):
        with pytest.raises(UsageError, match="input"):
            store.save(target, force=True, inputs=[data])
    assert (data / "vectors.txt").read_text() == "keep"
    opened = store.save(tmp_path / "s")
    with pytest.raises(UsageError, match="input"):
        opened.save(tmp_path / "s" / "copy", force=True)  # an opened store reads its own folder
    with pytest.raises(UsageError, match="input"):
        opened.save(tmp_path, force=True)
    assert opened.save(tmp_path / "s").n_positions == 3  # rewriting itself in place is fine


def test_a_link_to_a_store_is_written_through(tmp_path, pairs) -> None:
    real = cxql.ConceptStore.from_masks(np.eye(3, dtype=bool), ["a", "b", "c"]).save(tmp_path / "real").path
    (tmp_path / "link").symlink_to(real)
    assert nli(pairs, "--out", tmp_path / "link") == 0
    assert (tmp_path / "link").is_symlink()
    assert cxql.ConceptStore.open(real).kind == "text"


def test_a_link_into_an_input_is_refused(tmp_path, pairs, capsys) -> None:
    root, _ = handmade(tmp_path)
    before = snapshot(root)
    (tmp_path / "link").symlink_to(root / "images")
    assert main(["store", "build", "broden", str(root), "--out", str(tmp_path / "link"), "--force"]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert snapshot(root) == before
    (tmp_path / "plink").symlink_to(pairs)
    assert nli(pairs, "--out", tmp_path / "plink", "--force") == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert pairs.read_text().count("\n") == 2
