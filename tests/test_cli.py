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


def csv_tables(text: str) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    """cxql's csv: tables separated by blank lines, each ``# key: value`` comments, a header, rows."""
    tables = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        comments = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
        tables.append((comments, list(csv.DictReader(line for line in lines if not line.startswith("#")))))
    return tables


def test_formats(capsys, store_path) -> None:
    _, out, _ = run(capsys, "-s", store_path, "-c", "EVAL c4 ON unit 0..1", "--format", "csv")
    [(_, rows)] = csv_tables(out)
    assert [r["unit"] for r in rows] == ["0", "1"]
    _, out, _ = run(capsys, "-s", store_path, "-c", "c4", "--format", "json")
    assert json.loads(out)["results"][0]["rows"][0]["formula"] == "c4"
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


@pytest.mark.parametrize("sources, printed", [
    (["-c", "EVAL c4 ON unit 3; EVAL c4 AND AND c5 ON unit 3"], 0),              # a syntax error: nothing runs
    (["-c", "EVAL c4 ON unit 3\nEVAL c4 ON unit 4\nEVAL (c4 ON unit 3"], 0),
    (["-c", "EVAL c4 ON unit 3", "-c", "EVAL c4 AND AND c5 ON unit 3"], 1),     # each -c text is checked alone
    (["-c", "EVAL c4 ON unit 3; EVAL nope ON unit 3; EVAL c5 ON unit 3"], 1),  # a run-time error: up to it
])
def test_a_script_is_checked_for_syntax_before_anything_runs(capsys, store_path, sources, printed) -> None:
    code, out, err = run(capsys, "-s", store_path, "--format", "jsonl", *sources)
    assert code == 1 and "error: line" in err
    assert [json.loads(line)["formula"] for line in out.splitlines()] == ["c4"] * printed


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


# ---------------------------------------------------------------- results stream; exports say where they come from

LATER_ERROR = "EVAL c4 ON unit 0; SEARCH unit 1 LENGTH 2; EVAL c4 ON unit 99"


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_a_later_error_keeps_the_earlier_results(capsys, store_path, fmt) -> None:
    code, out, err = run(capsys, "-s", store_path, "-c", LATER_ERROR, "--format", fmt)
    assert code == 1 and "unit 99 does not exist" in err
    if fmt == "json":
        data = json.loads(out)  # still valid JSON: the object is closed, with the error in it
        assert [r["kind"] for r in data["results"]] == ["eval", "search"]
        assert "unit 99 does not exist" in data["error"]
    elif fmt == "jsonl":
        assert [json.loads(line)["unit"] for line in out.splitlines()] == [0, 1]
    elif fmt == "csv":
        assert [rows[0]["unit"] for _, rows in csv_tables(out)] == ["0", "1"]
    else:
        assert "c4" in out and "mask_size" in out


def test_ctrl_c_keeps_what_finished(capsys, store_path, monkeypatch) -> None:
    """Ctrl-C during a SEARCH: the earlier result and the finished units are written; exit 130."""
    import _thread
    import time

    from cxql import cli, engine

    sessions, real_connect = [], engine.connect
    monkeypatch.setattr(engine, "connect", lambda path: sessions.append(real_connect(path)) or sessions[-1])

    class InterruptAfterTwoUnits(cli.RichProgress):
        def start(self, total: int, description: str) -> None:
            self.units = 0

        def advance(self, n: int = 1, note: str | None = None) -> None:
            self.units += n
            if self.units == 2:
                _thread.interrupt_main()  # what Ctrl-C does
                deadline = time.monotonic() + 5
                while not sessions[0].token.cancelled and time.monotonic() < deadline:
                    time.sleep(0.01)  # until the main thread has asked the SEARCH to stop

    monkeypatch.setattr(cli, "RichProgress", InterruptAfterTwoUnits)
    code, out, err = run(capsys, "-s", store_path, "-c", "EVAL c4 ON unit 0", "-c",
                         "SET engine = 'plain'; SEARCH unit * LENGTH 2; EVAL c5 ON unit 0", "--format", "json")
    data = json.loads(out)
    assert code == 130 and "interrupted" in err and data["error"] == "interrupted"
    eval_, set_, search = data["results"]
    assert [r["unit"] for r in search["rows"]] == [0, 1] and "cancelled after 2 of 6 units" in search["message"]


def test_exports_carry_their_context(capsys, store_path) -> None:
    query = "EVAL c4 ON unit 0; SET threshold = 'quantile:0.9'; EVAL c4 ON unit 0"
    _, out, _ = run(capsys, "-s", store_path, "-c", query, "--format", "json")
    data = json.loads(out)
    assert data["cxql_version"] == cxql.__version__ and data["store"] == str(store_path)
    contexts = [r["context"] for r in data["results"]]
    assert [c["threshold"] for c in contexts] == ["quantile:0.995", "quantile:0.9", "quantile:0.9"]
    assert {c["layer"] for c in contexts} == {"conv"} and {c["metric"] for c in contexts} == {"iou"}

    _, out, _ = run(capsys, "-s", store_path, "-c", query, "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["context"]["statement"], r["context"]["threshold"]) for r in rows] == [
        ("EVAL c4 ON unit 0", "quantile:0.995"), ("EVAL c4 ON unit 0", "quantile:0.9")]
    assert rows[0]["context"]["cxql_version"] == cxql.__version__


def test_csv_has_one_table_per_statement(capsys, store_path) -> None:
    _, out, _ = run(capsys, "-s", store_path, "-c", "EVAL c4 ON unit 0..1; SET beam = 2; MATCH c5 TOP 3",
                    "--format", "csv")
    (eval_meta, eval_rows), (match_meta, match_rows) = csv_tables(out)
    assert eval_meta["statement"] == "EVAL c4 ON unit 0..1" and len(eval_rows) == 2
    assert match_meta["statement"] == "MATCH c5 TOP 3" and len(match_rows) == 3
    assert "intersection" in eval_rows[0] and "intersection" not in match_rows[0]  # each table its own header
    assert {k: match_meta[k] for k in ("layer", "metric", "store")} == {
        "layer": "conv", "metric": "iou", "store": str(store_path)}
    assert eval_meta["cxql_version"] == cxql.__version__ and eval_meta["threshold"] == "quantile:0.995"


def test_no_message_points_to_a_spec_that_does_not_ship(capsys, tmp_path) -> None:
    """Messages, help texts and the shell's docs name the project's own docs, never an unshipped SPEC."""
    import ast
    from pathlib import Path

    root = Path(cxql.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert "SPEC" not in node.value, f"{path.name}:{node.lineno}"
    assert "SPEC" not in (root.parent / "docs" / "shell.md").read_text()
    code, _, err = run(capsys, "store", "build", "broden", tmp_path, "--out", tmp_path / "s")
    assert code == 1 and "index.csv" in err and "SPEC" not in err
    for argv in (["--help"], ["store", "build", "broden", "--help"], ["store", "build", "nli", "--help"],
                 ["units", "add", "--help"], ["units", "record", "--help"], ["report", "--help"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "usage: cxql" in out and "SPEC" not in out, argv
