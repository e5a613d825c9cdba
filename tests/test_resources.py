"""Store arguments: the short name ``demo``, and one exit status (2, a usage error) for a path that is no store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxql.cli import main
from cxql.errors import UsageError
from cxql.resources import demo_store_path, locate_store


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["-s", "demo", "-c", "SHOW store"],
    ["store", "info", "demo"],
    ["store", "check", "demo"],
])
def test_demo_names_the_bundled_store_from_any_directory(capsys, tmp_path, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "conv2 (16 units)" in out or "intact" in err


def test_report_on_demo_draws_the_bundled_store(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "report", "demo", "conv1", "--units", "0", "--out", "r", "--length", "1",
                       "--beam", "1")
    assert code == 0, err
    assert (tmp_path / "r" / "conv1.html").exists()


def test_a_directory_called_demo_wins_over_the_short_name(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert locate_store(None) == locate_store("demo") == demo_store_path()
    (tmp_path / "demo").mkdir()
    with pytest.raises(UsageError, match="not a cxql store"):
        locate_store("demo")


@pytest.mark.parametrize("command", [["units", "add", "demo", "l", "acts.npy"]])
def test_commands_that_write_refuse_the_bundled_store(capsys, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "acts.npy", np.zeros((1797, 1), np.float32))
    code, _, err = run(capsys, *command)
    assert code == 2 and "read-only" in err and str(demo_store_path()) in err


@pytest.mark.parametrize("make, says", [
    (lambda tmp: tmp / "nope", "no store at"),
    (lambda tmp: tmp, "not a cxql store"),
    (lambda tmp: (tmp / "f.txt", (tmp / "f.txt").write_text("x"))[0], "not a directory"),
])
@pytest.mark.parametrize("argv", [
    lambda p: ["-s", p, "-c", "SHOW store"],
    lambda p: ["store", "info", p],
    lambda p: ["store", "check", p],
    lambda p: ["report", p, "conv1", "--out", Path(p).parent / "out"],
    lambda p: ["units", "add", p, "l", "acts.npy"],
])
def test_a_path_that_is_no_store_is_a_usage_error_naming_it(capsys, tmp_path, make, says, argv) -> None:
    path = make(tmp_path)
    code, out, err = run(capsys, *argv(str(path)))
    assert (code, out) == (2, "") and says in err and str(path) in err and "Traceback" not in err


def test_device_without_cuda_names_the_option(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(capsys, "--device", "cuda", "-c", "SHOW store")
    assert code == 2 and err.startswith("error: --device cuda:") and "SET" not in err and "^" not in err
