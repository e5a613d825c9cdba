"""The example scripts users copy: they run, and what they say can be repeated."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

import cxql
from cxql.cli import main as cxql_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """examples/NAME.py as a module (the examples import their neighbours from examples/)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_printed(command: str) -> None:
    """Run one printed ``cxql ...`` command line in this process; it must succeed."""
    argv = shlex.split(command)
    assert argv[0] == "cxql"
    assert cxql_main(argv[1:]) in (0, None), command


@pytest.mark.slow
def test_broden_end_to_end_prints_commands_that_repeat_its_numbers(tmp_path, capsys):
    """The shell commands it prints give the script's own SEARCH answers (same threshold, same model)."""
    example = load_example("broden_end_to_end")
    rows = example.main(["--out", str(tmp_path), "--images", "24"])
    printed = capsys.readouterr().out
    commands = [line.strip() for line in printed.split("the same from the shell:")[1].splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["store", "units", "-s", "report"]
    assert f"--threshold {example.THRESHOLD}" in commands[1]
    store_dir = tmp_path / "store"
    layer = cxql.ConceptStore.open(store_dir).layers[example.NAME]
    script_thresholds = layer.thresholds.copy()

    for command in commands[:2]:
        run_printed(command)
    again = cxql.ConceptStore.open(store_dir).layers[example.NAME]
    assert (again.thresholds == script_thresholds).all()
    run_printed(commands[2] + " --format jsonl")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    shell_rows = [r for r in lines if "unit" in r]
    assert [(r["unit"], r["formula"], r["iou"]) for r in shell_rows] == \
        [(r["unit"], r["formula"], r["iou"]) for r in rows]
    run_printed(commands[3])
    assert (tmp_path / "report" / f"{example.NAME}.html").is_file()
