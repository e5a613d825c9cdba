"""Bad files and paths on the command line: one error naming the path, exit 1 or 2, never a traceback.

Each case is a file or a path a user could really pass (a pickle payload, an
.npz, a sparse tensor, a PNG that claims gigapixels, an output under a file,
...), run through ``cxql.cli.main`` as the ``cxql`` command runs it.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import cxql
from cxql.cli import main
from conftest import random_store_data
from test_broden import random_images, write_broden

N_SAMPLES = 20


class Payload:
    """Unpickling this would run a shell command: cxql must refuse it, not run it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture
def store_path(tmp_path):
    concepts, names, _ = random_store_data(0, n=N_SAMPLES * 16)
    cxql.ConceptStore.from_masks(concepts, names, mask_shape=(4, 4)).save(tmp_path / "s")
    return tmp_path / "s"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def png_claiming(path: Path, height: int, width: int) -> Path:
    """A valid PNG header that claims height x width pixels, with only a few rows of data (a tiny file)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (3 * width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def broden_with_png(tmp_path: Path, height: int, width: int) -> tuple[Path, Path]:
    root = write_broden(tmp_path / "broden", random_images(np.random.default_rng(0), 3))
    png = sorted((root / "images").rglob("*.png"))[-1]
    return root, png_claiming(png, height, width)


def build_broden_argv(root: Path, png: Path) -> tuple[list, str]:
    return ["store", "build", "broden", root, "--out", root.parent / "b"], str(png)


def activations(tmp_path: Path, name: str, value) -> Path:
    """``value`` saved as ``name``: arrays by numpy.save, tensors and other objects by torch.save or pickle."""
    path = tmp_path / name
    if isinstance(value, np.ndarray) and name.endswith(".npy"):
        np.save(path, value)
    elif isinstance(value, np.ndarray):
        np.savez(path, acts=value, more=value)
    elif isinstance(value, (str, bytes)):
        path.write_bytes(value.encode() if isinstance(value, str) else value)
    elif name.endswith(".legacy.pt"):
        path.write_bytes(pickle.dumps(value, protocol=2))
    else:
        torch.save(value, path)
    return path


ACTS = np.random.default_rng(0).normal(size=(N_SAMPLES, 3, 2, 2)).astype(np.float32)

# (file name, content, words the error must hold besides the path)
BAD_ACTIVATIONS = [
    ("payload.pt", {"acts": Payload()}, "never unpickles"),
    ("payload.legacy.pt", Payload(), "never unpickles"),
    ("acts.npz", ACTS, ".npz archive"),
    ("sparse.pt", torch.zeros(N_SAMPLES, 3).to_sparse(), "sparse"),
    ("complex.pt", torch.zeros(N_SAMPLES, 3, dtype=torch.complex64), "real numbers"),
    ("several.pt", [torch.zeros(N_SAMPLES, 3)], "not one tensor"),
    ("text.npy", np.full((N_SAMPLES, 3), "x"), "dtype <U1"),
    ("bool.npy", np.ones((N_SAMPLES, 3), bool), "dtype bool"),
    ("dates.npy", np.zeros((N_SAMPLES, 3), "datetime64[s]"), "dtype datetime64"),
    ("objects.npy", np.zeros((N_SAMPLES, 3), object), "cannot read activations"),
    ("flat.npy", np.zeros((N_SAMPLES, 3, 0, 0), np.float32), "spatial maps of size 0x0"),
    ("inf.npy", np.where(np.arange(N_SAMPLES * 3).reshape(N_SAMPLES, 3) == 7, np.inf, 0.0),
     "sample 2, unit 1 contain inf"),
    ("nan.pt", torch.full((N_SAMPLES, 3), float("nan")), "NaN"),
    ("acts.csv", "1,2,3\n4,5,6\n", "not a .npy or .pt file"),
    ("empty.npy", b"", "(it is empty)"),
    ("truncated.npy", b"\x93NUMPY\x01\x00v\x00{'descr'", "cannot read activations"),
    ("truncated.pt", b"PK\x03\x04\x14\x00", "cannot read activations"),
]


@pytest.mark.parametrize("name, value, words", BAD_ACTIVATIONS, ids=[c[0] for c in BAD_ACTIVATIONS])
def test_units_add_refuses_bad_activation_files(capsys, store_path, tmp_path, name, value, words) -> None:
    path = activations(tmp_path, name, value)
    code, out, err = run(capsys, "units", "add", store_path, "l", path)
    assert code == 1 and err.startswith(f"error: {path}") and words in err, err
    assert "Traceback" not in err and "pickle" not in err.replace("unpickles", "") and "pwned" not in out
    assert "l" not in cxql.ConceptStore.open(store_path).layers


@pytest.mark.parametrize("name, value", [
    ("ACTS.PT", torch.from_numpy(ACTS)),
    ("acts.pth", torch.from_numpy(ACTS)),
    ("acts.bin", ACTS),                                        # a .npy under another name
    ("bf16.pt", torch.from_numpy(ACTS).bfloat16()),
    ("f16.pt", torch.from_numpy(ACTS).half()),
    ("legacy.pt", torch.from_numpy(ACTS)),
])
def test_units_add_reads_tensors_and_arrays_by_content(capsys, store_path, tmp_path, name, value) -> None:
    path = tmp_path / name
    if isinstance(value, np.ndarray):
        with open(path, "wb") as f:
            np.save(f, value)
    else:
        torch.save(value, path, _use_new_zipfile_serialization=name != "legacy.pt")
    assert run(capsys, "units", "add", store_path, "l", path, "--threshold", "0.5")[0] == 0
    layer = cxql.ConceptStore.open(store_path).layers["l"]
    want = value.float().numpy() if isinstance(value, torch.Tensor) else value
    assert np.array_equal(layer.activations, want)  # bf16/f16 widen to float32 exactly
    same = cxql.ConceptStore.open(store_path).add_units("same", want, 0.5)
    np.testing.assert_array_equal(layer.mask_sizes, same.mask_sizes)


def test_units_add_takes_a_value_threshold_like_the_number(capsys, store_path, tmp_path) -> None:
    path = activations(tmp_path, "a.npy", ACTS)
    assert run(capsys, "units", "add", store_path, "v", path, "--threshold", "value:0.5")[0] == 0
    assert run(capsys, "units", "add", store_path, "n", path, "--threshold", "0.5")[0] == 0
    layers = cxql.ConceptStore.open(store_path).layers
    np.testing.assert_array_equal(layers["v"].mask_sizes, layers["n"].mask_sizes)


@pytest.mark.parametrize("threshold", ["inf", "-inf", "nan", "quantile:nan", "quantile:1"])
def test_units_add_refuses_thresholds_that_empty_every_unit(capsys, store_path, tmp_path, threshold) -> None:
    path = activations(tmp_path, "a.npy", ACTS)
    code, _, err = run(capsys, "units", "add", store_path, "l", path, f"--threshold={threshold}")
    assert code == 1 and threshold.split(":")[-1] in err and "threshold" in err and "Traceback" not in err


def test_units_add_never_replaces_a_layer_unless_asked(capsys, store_path, tmp_path) -> None:
    first, second = activations(tmp_path, "a.npy", ACTS), activations(tmp_path, "b.npy", ACTS[:, :2])
    assert run(capsys, "units", "add", store_path, "l", first)[0] == 0
    code, _, err = run(capsys, "units", "add", store_path, "l", second)
    assert code == 1 and "already has a layer 'l'" in err and "--replace" in err
    assert cxql.ConceptStore.open(store_path).layers["l"].n_units == 3
    assert run(capsys, "units", "add", store_path, "l", second, "--replace")[0] == 0
    assert cxql.ConceptStore.open(store_path).layers["l"].n_units == 2


def test_units_add_warns_when_every_unit_is_empty(capsys, store_path, tmp_path) -> None:
    code, _, err = run(capsys, "units", "add", store_path, "flat", activations(tmp_path, "c.npy", np.ones_like(ACTS)))
    assert code == 0 and "warning: layer 'flat': all 3 of its units are empty" in err and "added" in err


def nli_file(tmp_path: Path, *extra: str) -> Path:
    lines = [json.dumps({"sentence1": f"A dog runs {i}.", "sentence2": "A cat sleeps.", "gold_label": "neutral"})
             for i in range(4)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines + list(extra)) + "\n", encoding="utf-8")
    return path


DEEP = "[" * 100_000 + "]" * 100_000
BROKEN_PATHS: list[tuple[str, Callable[[Path, Path], tuple[list, str]], int, str]] = [
    ("deep-json", lambda tmp, s: (["store", "build", "nli", nli_file(tmp, DEEP), "--out", tmp / "n",
                                   "--pipeline", "none"], f"{tmp / 'pairs.jsonl'}:5"), 1, "nested too deeply"),
    ("bomb-png", lambda tmp, s: build_broden_argv(*broden_with_png(tmp, 100_000, 100_000)), 1, "cannot decode PNG"),
    ("big-png", lambda tmp, s: build_broden_argv(*broden_with_png(tmp, 12_000, 12_000)), 1, "PNG is 12000x12000"),
    ("out-dot", lambda tmp, s: (["store", "build", "nli", nli_file(tmp), "--out", ".", "--pipeline", "none"],
                                "--out ."), 2, "name of a new store directory"),
    ("out-dot-broden", lambda tmp, s: (["store", "build", "broden", tmp, "--out", "."], "--out ."), 2,
     "name of a new store directory"),
    ("out-under-file", lambda tmp, s: (["store", "build", "nli", nli_file(tmp), "--out", tmp / "pairs.jsonl" / "x",
                                        "--pipeline", "none"], f"{tmp / 'pairs.jsonl'}"), 1, "cannot write"),
    ("out-in-proc", lambda tmp, s: (["store", "build", "nli", nli_file(tmp), "--out", "/proc/cxql-x",
                                     "--pipeline", "none"], "/proc/cxql-x"), 1, "cannot write"),
    ("broden-out-under-file", lambda tmp, s: (["store", "build", "broden",
                                               write_broden(tmp / "d", random_images(np.random.default_rng(0), 2)),
                                               "--out", tmp / "d" / "label.csv" / "x"], "label.csv"), 2,
     "inside the input"),  # the dataset folder is read whole: nothing is written in it
    ("report-under-file", lambda tmp, s: (["report", s, "l", "--out", Path(nli_file(tmp)) / "r", "--units", "0"],
                                          str(Path(nli_file(tmp)))), 1, "is a file, not a directory"),
    ("report-in-store", lambda tmp, s: (["report", s, "l", "--out", s / "manifest.json" / "r", "--units", "0"],
                                        str(s)), 2, "is a cxql store"),
]


@pytest.mark.parametrize("make, code, words", [c[1:] for c in BROKEN_PATHS], ids=[c[0] for c in BROKEN_PATHS])
def test_bad_inputs_and_paths_give_one_error_naming_the_path(capsys, store_path, tmp_path, make, code,
                                                           words) -> None:
    assert main(["units", "add", str(store_path), "l", str(activations(tmp_path, "a.npy", ACTS))]) == 0
    capsys.readouterr()
    argv, path = make(tmp_path, store_path)
    got, _, err = run(capsys, *argv)
    assert got == code and path in err and words in err, err
    assert err.startswith("error: ") and "Traceback" not in err


def test_skip_bad_skips_a_deeply_nested_line(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "store", "build", "nli", nli_file(tmp_path, DEEP), "--out", tmp_path / "n",
                       "--pipeline", "none", "--skip-bad")
    assert code == 0 and f"{tmp_path / 'pairs.jsonl'}:5: skipped: JSON nested too deeply" in err
    assert cxql.ConceptStore.open(tmp_path / "n").n_samples == 4


def test_ctrl_c_while_loading_extensions_exits_quietly(capsys, monkeypatch) -> None:
    import cxql.cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cxql.cli, "_load_extensions", interrupted)
    code, _, err = run(capsys, "--help")
    assert code == 130 and err == "interrupted\n"


def test_a_named_pipe_as_activations_is_refused_without_blocking(tmp_path, capsys) -> None:
    import threading

    from cxql.errors import DataError
    from cxql.store.activation_files import load_activations

    fifo = tmp_path / "f.npy"
    os.mkfifo(fifo)
    outcome: list = []

    def load() -> None:
        try:
            load_activations(fifo)
        except DataError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive() and "not a regular file" in str(outcome[0])
