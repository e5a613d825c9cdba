"""The real shell, driven by keystrokes through prompt_toolkit's pipe input.

Each test types into the actual PromptSession (pipe input, dummy output) and
reads what the shell printed through its Rich console. Keys are fed from a
thread so a test can pause (for example to let a Tab completion land before
Enter) while the shell runs in the main thread, where Ctrl-C arrives.
"""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
from typing import Callable, Union

import numpy as np
import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

import cxql
from cxql.shell import run_shell
from cxql.shell.app import Shell
from cxql.shell.commands import COMMANDS, ShellState, meta_infos, run_command
from cxql.shell.completer import complete, context_of
from cxql.shell.config import ShellConfig

ENTER, TAB, CTRL_D = "\r", "\t", "\x04"
NAMES = ["water", "river", "blue", "lobby", "long", "traffic light"]
CATEGORIES = ["object", "object", "color", "scene", "texture", "object"]


def make_store() -> cxql.ConceptStore:
    """Six concepts over 400 positions; unit 0 is exactly ``water OR river``."""
    rng = np.random.default_rng(0)
    masks = rng.random((400, len(NAMES))) < 0.2
    store = cxql.ConceptStore.from_masks(masks, NAMES, CATEGORIES)
    units = np.stack([masks[:, 0] | masks[:, 1], masks[:, 2] & ~masks[:, 3],
                      rng.random(400) < 0.1, masks[:, 4]], axis=1)
    store.add_unit_masks("layer1", units)
    return store


@pytest.fixture
def session() -> cxql.Session:
    return cxql.connect(make_store())


Step = Union[str, float, Callable[[Shell], bool]]


def drive(session: cxql.Session, *steps: Step, use_run_shell: bool = False) -> str:
    """Type into the shell and return what it printed; it ends with Ctrl-D.

    A step is text to type, a pause in seconds, or a condition on the shell to
    wait for (so a test never races prompt_toolkit's asynchronous completion).
    """
    out = io.StringIO()
    console = Console(file=out, width=110, color_system=None)
    config = ShellConfig(pager=False, complete_while_typing=False)
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        shell = Shell(session, console=console, config=config, history=InMemoryHistory())

        def feed() -> None:
            for step in (*steps, CTRL_D):
                if isinstance(step, str):
                    pipe.send_text(step)
                elif isinstance(step, float):
                    time.sleep(step)
                else:
                    deadline = time.monotonic() + 10
                    while not step(shell) and time.monotonic() < deadline:
                        time.sleep(0.01)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        if use_run_shell:
            status = run_shell(session, console=console, config=config, history=InMemoryHistory())
        else:
            status = shell.run()
        assert status == 0
        feeder.join(5)
    return out.getvalue()


def buffer_is(text: str) -> Callable[[Shell], bool]:
    return lambda shell: shell.prompt.app.current_buffer.text == text


def test_query_and_enter_prints_the_table(session):
    out = drive(session, "SEARCH unit 0 LENGTH 3", ENTER)
    assert "(water OR river)" in out
    assert "1.0000" in out
    assert "best IoU by formula length" in out  # the per-length chart of a one-unit SEARCH


def test_tab_completes_a_concept_prefix(session):
    out = drive(session, "EVAL riv", TAB, buffer_is("EVAL river"), " ON unit 0", ENTER)
    assert "river" in out and "error" not in out
    assert "0.5" in out or "0.4" in out or "0.6" in out  # river alone is about half of unit 0


def test_an_error_leaves_the_shell_running(session):
    out = drive(session, "SEARCH unit x", ENTER, "SHOW categories", ENTER)
    assert "error: line 1, column 13" in out and "^" in out and "hint:" in out
    assert "texture" in out  # the next statement ran


def test_unknown_concept_shows_a_hint_and_goes_on(session):
    out = drive(session, "watr", ENTER, "water", ENTER)
    assert "did you mean water?" in out
    assert "positions" in out


def test_ctrl_c_during_search_returns_to_the_prompt(session):
    searcher = session.searcher()

    class Interrupted:
        def estimate_bytes(self, ctx, units, beam):
            return searcher.estimate_bytes(ctx, units, beam)

        def search(self, ctx, units, **options):
            _thread.interrupt_main()  # what Ctrl-C does to the main thread while a statement runs
            time.sleep(0.3)
            return searcher.search(ctx, units, **options)

    session.searcher = lambda name=None: Interrupted()
    out = drive(session, "SEARCH unit *", ENTER, "SHOW lets", ENTER, "LET w = water", ENTER)
    assert "cancelled after 0 of 4 units" in out
    assert "cancelled; the session goes on" in out
    assert "w = water" in out  # the same session took the next statements
    assert session.lets["w"] == cxql.parse("water").formula


def test_a_bug_is_reported_and_the_shell_goes_on(session):
    class Broken:
        def estimate_bytes(self, ctx, units, beam):
            return 0

        def search(self, *_args, **_options):
            raise RuntimeError("boom")

    session.searcher = lambda name=None: Broken()
    out = drive(session, "SEARCH unit 0", ENTER, "SHOW categories", ENTER)
    assert "internal error: RuntimeError: boom" in out and "texture" in out


def test_results_before_a_failing_statement_still_print(session):
    out = drive(session, "LET a = water; EVAL nope ON unit 0", ENTER)
    assert "a = water" in out and "unknown concept 'nope'" in out


def test_enter_continues_an_unfinished_statement(session):
    out = drive(session, "EVAL (water OR", ENTER, "river) ON unit 0", ENTER)
    assert "(water OR river)" in out and "1.0000" in out


def test_meta_commands_run_from_the_prompt(session, tmp_path):
    target = tmp_path / "last.json"
    out = drive(session, "MATCH water TOP 2", ENTER, f"\\save {target}", ENTER, "\\timing on", ENTER,
                "\\format csv", ENTER, "SHOW categories", ENTER, "\\nope", ENTER)
    saved = json.loads(target.read_text())
    assert len(saved["results"][0]["rows"]) == 2 and saved["results"][0]["rows"][0]["unit"] == 0
    assert saved["cxql_version"] == cxql.__version__ and saved["results"][0]["context"]["metric"] == "iou"
    assert "category,concepts" in out and "statement in" in out
    assert "unknown command \\nope" in out


def test_run_shell_and_q_leaves(session):
    out = drive(session, "\\q", ENTER, "SHOW categories", ENTER, use_run_shell=True)
    assert "texture" not in out


# ---------------------------------------------------------------- commands and context, without keys


def state_for(session: cxql.Session) -> tuple[ShellState, io.StringIO]:
    out = io.StringIO()
    return ShellState(session, Console(file=out, width=110, color_system=None)), out


def test_help_lists_every_command(session):
    state, out = state_for(session)
    run_command(state, "\\help")
    for name in COMMANDS:
        assert name in out.getvalue()


def test_save_csv_and_errors(session, tmp_path):
    state, _ = state_for(session)
    with pytest.raises(cxql.CxqlError, match="no result"):
        run_command(state, f"\\save {tmp_path / 'x.csv'}")
    state.last = session.execute("EVAL water ON unit 0, 1")
    run_command(state, f"\\save {tmp_path / 'x.csv'}")
    lines = (tmp_path / "x.csv").read_text().splitlines()
    comments = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    assert comments["statement"] == "EVAL water ON unit 0, 1" and comments["layer"] == "layer1"
    assert comments["cxql_version"] == cxql.__version__ and comments["metric"] == "iou"
    assert lines[len(comments)].startswith("unit,formula,iou") and len(lines) == len(comments) + 3
    with pytest.raises(cxql.CxqlError, match="format"):
        run_command(state, f"\\save {tmp_path / 'x.txt'}")


def test_store_and_layer_commands(session, tmp_path):
    store = make_store()
    store.add_unit_masks("layer2", np.ones((400, 2), dtype=bool))
    store.save(tmp_path / "s")
    state, out = state_for(session)
    session.execute("SET beam = 7")
    run_command(state, f"\\store {tmp_path / 's'}")
    assert state.session is not session and state.session.settings["beam"] == 7
    run_command(state, "\\layer layer2")
    assert state.session.settings["layer"] == "layer2"
    assert context_of(state.session, meta_infos(state)).n_units == 2
    with pytest.raises(cxql.CxqlError, match="unknown layer"):
        run_command(state, "\\layer nope")
    with pytest.raises(cxql.CxqlError, match="no store"):
        run_command(state, f"\\store {tmp_path / 'missing'}")
    with pytest.raises(cxql.CxqlError, match="not a cxql store"):
        run_command(state, f"\\store {tmp_path}")


def test_store_demo_opens_the_bundled_store(session, tmp_path, monkeypatch):
    from cxql.resources import demo_store_path

    monkeypatch.chdir(tmp_path)
    state, _ = state_for(session)
    run_command(state, "\\store demo")
    assert state.session.store.path == demo_store_path()


def test_context_of_a_session_feeds_completion(session):
    state, _ = state_for(session)
    session.execute("LET wet = water OR river")
    ctx = context_of(session, meta_infos(state))
    assert [s.text for s in complete("EVAL we", ctx)] == ["wet"]
    assert [s.text for s in complete("\\layer ", ctx)] == ["layer1"]
    assert [s.text for s in complete("SEARCH unit 3", ctx)] == ["3"]


@pytest.mark.parametrize("word", ["quit", "exit", "QUIT;", "  exit  "])
def test_quit_and_exit_leave_the_shell(session, word):
    out = drive(session, word, ENTER, "SHOW categories", ENTER)
    assert "texture" not in out and "error" not in out


@pytest.mark.parametrize("statement, shows", [
    ("SEARCH", ["SEARCH UNIT units", "LENGTH INT", "BEAM INT", "DISTINCT", "ORDER BY"]),
    ("search", ["SEARCH UNIT units", "LENGTH INT"]),
    ("SHOW", ["SHOW CONCEPTS [LIKE STRING] [ORDER BY IDENT [ASC | DESC]]", "SHOW LETS", "SHOW UNIT INT"]),
    ("EVAL", ["EVAL formula ON UNIT units"]),
    ("MATCH", ["MATCH formula [TOP INT]"]),
])
def test_help_on_a_statement_shows_its_syntax_from_the_grammar(session, statement, shows):
    state, out = state_for(session)
    run_command(state, f"\\help {statement}")
    for text in shows:
        assert text in out.getvalue()


def test_help_points_only_at_what_is_installed(session):
    state, out = state_for(session)
    run_command(state, "\\help")
    assert "docs/" not in out.getvalue() and "\\help SEARCH" in out.getvalue()
    with pytest.raises(cxql.CxqlError, match="no command or statement called NOPE"):
        run_command(state, "\\help NOPE")
    with pytest.raises(cxql.CxqlError) as info:
        run_command(state, "\\help SERACH")
    assert info.value.hint == "did you mean SEARCH?"
