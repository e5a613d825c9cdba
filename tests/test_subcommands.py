"""Builders and commands as parts (issue 12, item 4): one registry the CLI reads, a progress protocol.

A command is registered as data (:class:`cxql.subcommands.Command`) next to the
work it does; the CLI builds ``cxql GROUP ... NAME`` from the registry and lends
each command a progress display and a warning sink, so no builder imports the CLI.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql import cli
from cxql.cli import main
from cxql.errors import Cancelled
from cxql.progress import Quiet, stoppable
from cxql.store import broden as br
from cxql.subcommands import REGISTRY, Command, Registry, Tools
from test_broden import handmade

CXQL = Path(cxql.__file__).resolve().parent


class Recorder:
    """A progress display that remembers every call, in order."""

    calls: list[tuple] = []

    def start(self, total: int, label: str) -> None:
        Recorder.calls.append(("start", total, label))

    def advance(self, n: int = 1, note: str | None = None) -> None:
        Recorder.calls.append(("advance", n))

    def finish(self) -> None:
        Recorder.calls.append(("finish",))


@pytest.fixture
def recorder(monkeypatch):
    Recorder.calls = []
    monkeypatch.setattr(cli, "RichProgress", Recorder)
    return Recorder


def _toy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rows", type=int)
    p.add_argument("--out", required=True)


def _toy_build(args: argparse.Namespace, tools: Tools) -> int:
    bar = tools.progress()
    bar.start(args.rows, "toy")
    try:
        for _ in range(args.rows):
            bar.advance(1)
        tools.warn("toy stores hold nothing")
        Path(args.out).write_text(f"{args.rows} rows\n")
    finally:
        bar.finish()
    return 0


TOY = Command(("store", "build", "toy"), "a store from nothing (a test builder)", _toy_arguments, _toy_build)


@pytest.fixture
def toy_builder():
    REGISTRY.add(TOY)
    yield TOY
    REGISTRY.remove(TOY.path)


def test_a_builder_registered_by_a_test_is_a_cli_subcommand(toy_builder, recorder, tmp_path, capsys) -> None:
    assert main(["store", "build", "--help"]) == 0
    assert "toy" in capsys.readouterr().out and "a store from nothing" in TOY.help

    assert main(["store", "build", "toy", "3", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t").read_text() == "3 rows\n"
    assert "warning: toy stores hold nothing" in capsys.readouterr().err
    assert recorder.calls == [("start", 3, "toy"), ("advance", 1), ("advance", 1), ("advance", 1), ("finish",)]


def test_a_command_at_the_top_level_and_in_a_new_group(tmp_path, capsys) -> None:
    registry = Registry(builtin=(), entry_points=False)
    registry.add(Command(("hello",), "say hello", lambda p: None, lambda args, tools: 0))
    registry.add(Command(("conllu", "tags"), "list tags", lambda p: p.add_argument("file"), lambda a, t: 7))
    parser = registry.build_parser(argparse.ArgumentParser(prog="cxql"))
    args = parser.parse_args(["conllu", "tags", "x.conllu"])
    assert args.file == "x.conllu" and args._cxql_command.run(args, Tools()) == 7
    assert parser.parse_args(["hello"])._cxql_command.help == "say hello"
    assert registry.top_level() == ["hello", "conllu"]


def test_commands_from_entry_points_are_loaded(monkeypatch) -> None:
    import cxql.subcommands as sc

    class Entry:
        def load(self):
            return [TOY]

    monkeypatch.setattr(sc, "_entry_points", lambda: [Entry()])
    registry = Registry(builtin=("cxql.store.check:COMMAND",))
    assert [c.path for c in registry.commands()] == [("store", "check"), ("store", "build", "toy")]


@pytest.mark.parametrize("path", [("store", "build", "broden"), ("store", "build")])
def test_a_taken_path_is_refused(path) -> None:
    with pytest.raises(ValueError, match="cxql store build"):
        Registry().add(Command(path, "again", lambda p: None, lambda a, t: 0))


def test_every_builtin_command_is_reachable_from_the_cli(capsys) -> None:
    paths = [c.path for c in REGISTRY.commands()]
    assert {("store", "info"), ("store", "check"), ("store", "build", "broden"), ("store", "build", "nli"),
            ("units", "add"), ("units", "record"), ("nli", "classifier"), ("report",)} <= set(paths)
    for path in paths:
        assert main([*path, "--help"]) == 0
        assert f"usage: cxql {' '.join(path)}" in capsys.readouterr().out


def _imported_modules(path: Path, root: Path = CXQL.parent) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth (imports inside functions count)."""
    parts = path.relative_to(root).with_suffix("").parts
    package = list(parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module, *(f"{module}.{a.name}" for a in node.names)}
    return found


WORKERS = sorted([*(CXQL / "store").glob("*.py"), CXQL / "record.py", CXQL / "text_record.py", CXQL / "report.py",
                  CXQL / "tool_commands.py", CXQL / "subcommands.py", CXQL / "progress.py"])


@pytest.mark.parametrize("module", WORKERS, ids=lambda p: str(p.relative_to(CXQL)))
def test_no_builder_or_command_module_imports_the_cli_or_a_terminal(module) -> None:
    """Work code reports through cxql.progress; the CLI and shell own the terminal (Rich, prompt_toolkit)."""
    imported = _imported_modules(module)
    front = ("cxql.cli", "cxql.shell", "rich", "prompt_toolkit")
    assert not {m for m in imported if m in front or m.startswith(tuple(f + "." for f in front))}


@pytest.mark.parametrize("source", ["def register():\n    from ..cli import STORE_BUILDERS\n",
                                    "from .. import cli\n", "import cxql.cli\n"])
def test_the_import_walk_sees_every_way_of_importing_the_cli(tmp_path, source) -> None:
    """The check above catches the old ``from ..cli import STORE_BUILDERS`` inside a function."""
    probe = tmp_path / "cxql" / "store" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source)
    assert "cxql.cli" in _imported_modules(probe, root=tmp_path)


def test_store_build_reports_progress_in_protocol_order(recorder, tmp_path, capsys) -> None:
    root, images = handmade(tmp_path)
    assert main(["store", "build", "broden", str(root), "--out", str(tmp_path / "s")]) == 0
    calls = recorder.calls
    assert calls[0] == ("start", len(images), "building store") and calls[-1] == ("finish",)
    assert calls[1:-1] == [("advance", 1)] * len(images)


def test_units_add_reports_progress_in_protocol_order(recorder, tmp_path, capsys) -> None:
    root, images = handmade(tmp_path)
    main(["store", "build", "broden", str(root), "--out", str(tmp_path / "s"), "--resolution", "4"])
    recorder.calls.clear()
    np.save(tmp_path / "acts.npy", np.random.default_rng(0).random((len(images), 3, 4, 4), dtype=np.float32))
    assert main(["units", "add", str(tmp_path / "s"), "conv", str(tmp_path / "acts.npy")]) == 0
    calls = recorder.calls
    assert calls[0] == ("start", len(images), "thresholding conv") and calls[-1] == ("finish",)
    assert [c[0] for c in calls[1:-1]] == ["advance"] * (len(calls) - 2)
    assert sum(c[1] for c in calls[1:-1]) == len(images)


def test_progress_finishes_even_when_the_command_fails(recorder, tmp_path, capsys) -> None:
    root, _ = handmade(tmp_path)
    main(["store", "build", "broden", str(root), "--out", str(tmp_path / "s"), "--resolution", "4"])
    recorder.calls.clear()
    np.save(tmp_path / "bad.npy", np.full((4, 3, 4, 4), np.nan, dtype=np.float32))
    assert main(["units", "add", str(tmp_path / "s"), "conv", str(tmp_path / "bad.npy")]) == 1
    assert recorder.calls[0][0] == "start" and recorder.calls[-1] == ("finish",)


@pytest.mark.parametrize("after", [1, 3])
def test_should_stop_cancels_a_broden_build_and_keeps_the_old_store(tmp_path, after) -> None:
    root, _ = handmade(tmp_path)
    out = tmp_path / "store"
    br.build_broden(root, out, limit=1)
    before = (out / "manifest.json").read_text()
    seen = []
    with pytest.raises(Cancelled, match="cancelled"):
        br.build_broden(root, out, progress=seen.append, should_stop=lambda: len(seen) >= after)
    assert len(seen) == after and (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broden", "store"]


def test_should_stop_cancels_an_nli_build() -> None:
    from cxql.store.nli import Pair, build_nli_store

    pairs = [Pair(i + 1, "a dog runs", "a cat sleeps", "neutral", f"p{i}") for i in range(3)]
    assert build_nli_store(pairs, tagger=None, should_stop=lambda: False).n_samples == 3
    with pytest.raises(Cancelled):
        build_nli_store(pairs, tagger=None, should_stop=lambda: True)


def test_stoppable_passes_counts_on_then_stops() -> None:
    seen, stop = [], [False]
    report = stoppable(seen.append, lambda: stop[0], "the toy build")
    report(2)
    stop[0] = True
    with pytest.raises(Cancelled, match="the toy build cancelled"):
        report(5)
    callback = seen.append
    assert seen == [2, 5] and stoppable(callback, None, "x") is callback


def test_quiet_is_a_progress() -> None:
    q = Quiet()
    q.start(3, "x"), q.advance(1, "note"), q.finish()
    assert Tools().progress().__class__ is Quiet


def test_the_documented_builder_runs(tmp_path, recorder, capsys) -> None:
    """docs/stores.md's worked example: a builder added by a file and one registry entry."""
    import re

    doc = (CXQL.parent / "docs" / "stores.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Adding a builder"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/stores.md", "exec"), namespace)
    (tmp_path / "c.csv").write_text("wet,blue\n1,0\n1,1\n0,0\n")
    REGISTRY.add(namespace["COMMAND"])
    try:
        assert main(["store", "build", "csv", str(tmp_path / "c.csv"), "--out", str(tmp_path / "s")]) == 0
    finally:
        REGISTRY.remove(("store", "build", "csv"))
    assert "3 samples, 2 concepts" in capsys.readouterr().err
    store = cxql.ConceptStore.open(tmp_path / "s")
    assert [c.name for c in store.concepts] == ["wet", "blue"]
    assert recorder.calls == [("start", 0, "reading CSV"), ("advance", 3), ("finish",)]
    assert main(["store", "build", "--help"]) == 0 and "csv" not in capsys.readouterr().out
