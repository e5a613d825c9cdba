"""The cxql command: queries, scripts, formats, units add, exit codes and error output."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import cxql
from cxql.cli import main
from conftest import random_store_data


@pytest.fixture
def store_path(tmp_path):
    concepts, names, _ = random_store_data(0, n=20 * 16)
    cxql.ConceptStore.from_masks(concepts, names, mask_shape=(4, 4)).save(tmp_path / "s")
    acts = np.random.default_rng(0).normal(size=(20, 6, 2, 2)).astype(np.float32)
    np.save(tmp_path / "acts.npy", acts)
    assert main(["units", "add", str(tmp_path / "s"), "conv", str(tmp_path / "acts.npy")]) == 0
    return tmp_path / "s"


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_jsonl_rows_evaluate_back(capsys, store_path) -> None:
    code, out, _ = run(capsys, "-s", store_path, "-c", "SEARCH unit * LENGTH 3 BEAM 10", "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["unit"] for r in rows] == list(range(6))
    for row in rows:
        assert {"unit", "formula", "iou"} <= set(row)
        if row["formula"] == "NONE":
            continue
        code, out, _ = run(capsys, "-s", store_path, "-c", f"EVAL {row['formula']} ON unit {row['unit']}",
                           "--format", "jsonl")
        assert json.loads(out)["iou"] == row["iou"]


def test_formats(capsys, store_path) -> None:
    _, out, _ = run(capsys, "-s", store_path, "-c", "EVAL c4 ON unit 0..1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["unit"] for r in rows] == ["0", "1"]
    _, out, _ = run(capsys, "-s", store_path, "-c", "c4", "--format", "json")
    assert json.loads(out)[0]["rows"][0]["formula"] == "c4"
    _, out, _ = run(capsys, "-s", store_path, "-c", "SEARCH unit 0 LENGTH 2")
    assert "formula" in out and "iou" in out


def test_script_files_and_stdin(capsys, store_path, tmp_path, monkeypatch) -> None:
    script = tmp_path / "q.cxql"
    script.write_text("-- a script\nLET x = c4 OR c5\nEVAL x ON unit 0;\n")
    code, out, _ = run(capsys, "-s", store_path, script, "--format", "jsonl")
    assert code == 0 and json.loads(out.splitlines()[-1])["formula"] == "(c4 OR c5)"
    monkeypatch.setattr("sys.stdin", io.StringIO("c4\n"))
    code, out, _ = run(capsys, "-s", store_path, "--format", "jsonl")
    assert json.loads(out)["formula"] == "c4"


@pytest.mark.parametrize("argv, code, message", [
    (["-c", "EVAL c4 AND ON unit 1"], 1, "line 1, column"),
    (["-c", "c44"], 1, "did you mean"),
    (["-c", "SEARCH unit 1 LENGTH 0"], 1, "LENGTH must be at least 1"),
    (["--format", "xml", "-c", "c4"], 2, "invalid choice"),
])
def test_errors_go_to_stderr_with_exit_codes(capsys, store_path, argv, code, message) -> None:
    got, out, err = run(capsys, "-s", store_path, *argv)
    assert got == code and message in err and "Traceback" not in err and out == ""


def test_missing_store_is_a_usage_error(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "-s", tmp_path / "nope", "-c", "x")
    assert code == 2 and "no store at" in err


def test_script_errors_name_the_file(capsys, store_path, tmp_path) -> None:
    script = tmp_path / "bad.cxql"
    script.write_text("c4\nc4 AND\n")
    code, _, err = run(capsys, "-s", store_path, script)
    assert code == 1 and "bad.cxql" in err and "line 2" in err


@pytest.mark.parametrize("acts, message", [
    (np.zeros((3, 2, 2, 2), dtype=np.float32), "has 3 samples but the store has 20"),
    (np.full((20, 2, 2, 2), np.nan, dtype=np.float32), "NaN"),
])
def test_units_add_refuses_bad_activations(capsys, store_path, tmp_path, acts, message) -> None:
    np.save(tmp_path / "bad.npy", acts)
    code, _, err = run(capsys, "units", "add", store_path, "bad", tmp_path / "bad.npy")
    assert code == 1 and message in err
    assert "bad" not in cxql.ConceptStore.open(store_path).layers


def test_units_add_with_absolute_threshold(capsys, store_path, tmp_path) -> None:
    acts = np.random.default_rng(1).normal(size=(20, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", acts)
    assert run(capsys, "units", "add", store_path, "abs", tmp_path / "a.npy", "--threshold", "0.5")[0] == 0
    layer = cxql.ConceptStore.open(store_path).layers["abs"]
    assert len(layer.unit_positions(0)) == int((acts[:, 0] > np.float32(0.5)).sum())


def test_other_version_is_refused(capsys, store_path) -> None:
    manifest = json.loads((store_path / "manifest.json").read_text())
    manifest["version"] = 99
    (store_path / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "-s", store_path, "-c", "c4")
    assert code == 1 and "format version 99" in err


def test_jsonl_holds_only_data_rows(capsys, store_path) -> None:
    code, out, _ = run(capsys, "-s", store_path, "-c", "SET beam = 3; LET w = c4 OR c5; EVAL w ON unit 0",
                       "--format", "jsonl")
    assert code == 0 and [json.loads(line)["formula"] for line in out.splitlines()] == ["(c4 OR c5)"]
