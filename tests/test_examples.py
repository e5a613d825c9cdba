"""The example scripts users copy: they run, and what they say can be repeated."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    rows = example.main(["--out", str(tmp_path), "--images", "12"])
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


def test_your_model_example_goes_from_arrays_and_files_to_a_report(tmp_path):
    """examples/your_model.py: the store from arrays and from PNG files is the same, and so are the units."""
    example = load_example("your_model")
    out = example.main(tmp_path)
    store, from_arrays = out["store"], out["from_arrays"]
    assert store.n_samples == 48 and store.mask_shape == (16, 16)
    assert np.array_equal(np.asarray(store.signature_bits), np.asarray(from_arrays.signature_bits))
    assert np.array_equal(np.asarray(store.position_signatures), np.asarray(from_arrays.position_signatures))
    ours, theirs = store.layers[example.NAME], from_arrays.layers[example.NAME]
    assert np.array_equal(ours.thresholds, theirs.thresholds)
    for unit in range(ours.n_units):
        assert np.array_equal(ours.unit_positions(unit), theirs.unit_positions(unit)), unit
    colours = {f"{c}" for c in example.COLORS}
    assert any(r["formula"] in colours and r["iou"] > 0.5 for r in out["rows"])   # random filters see colour
    assert out["page"].is_file()
    with Image.open(out["page"].parent / example.NAME / "unit_0000.png") as strip:
        rgb = np.asarray(strip.convert("RGB")).astype(int)
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() > 100                     # coloured pictures, not grey tiles


def test_your_model_command_line_records_the_same_units(tmp_path):
    """The docstring's ``cxql units record`` on the example's store gives the units the script recorded.

    Here the pictures live inside the store, found through a relative ``image_root``.
    """
    example = load_example("your_model")
    store = example.main(tmp_path)["store"]
    (tmp_path / "data" / "images").rename(store.path / "pictures")   # a store that carries its pictures:
    store.metadata["image_root"] = "pictures"                         # image_root relative to the store
    store.write_manifest()
    model = f"{EXAMPLES / 'your_model.py'}:make_model"
    assert cxql_main(["units", "record", str(store.path), example.LAYER, "--name", "again", "--model", model,
                      "--threshold", example.THRESHOLD, "--device", "cpu"]) in (0, None)
    store = cxql.ConceptStore.open(store.path)
    assert np.array_equal(store.layers["again"].thresholds, store.layers[example.NAME].thresholds)
