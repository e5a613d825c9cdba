"""Meta-commands (``\\help``, ``\\store``, ``\\save`` ...): one registry, read by everything.

Each command is a function registered with :func:`command`, which records its
argument and a one-line help. ``\\help`` prints the registry, the completer
offers its names and argument values (:func:`meta_infos`), and the shell
dispatches through :func:`run_command`, so a command added here appears
everywhere at once. Commands act on :class:`ShellState`, the little the shell
keeps besides the engine's session: output format, timing, the last result.
Faults are :class:`~cxql.errors.UsageError`, shown as errors and never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.text import Text

from .. import syntax as s
from ..engine import Result, Session, connect
from ..errors import UsageError, did_you_mean
from ..render import FORMATS, print_table, render
from .completer import MetaInfo
from .grammar_help import SUMMARIES, statement_help, statement_keywords

#: Settings that belong to the person, not to a store, so they survive ``\store``.
PORTABLE_SETTINGS = ("beam", "length", "top", "device", "chunk_mb", "distinct")

ON_OFF = ("on", "off")
#: Output file formats of ``\save``, by file extension.
SAVE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}


@dataclass
class ShellState:
    """What the shell keeps between statements."""

    session: Session
    console: Console
    format: str = "table"
    timing: bool = False
    pager: bool = True
    last: Result | None = None
    done: bool = False
    on_session: list[Callable[[Session], None]] = field(default_factory=list)

    def replace_session(self, session: Session) -> None:
        self.session = session
        self.last = None
        for hook in self.on_session:
            hook(session)


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[ShellState, str], None]
    help: str
    arg: str = ""
    aliases: tuple[str, ...] = ()
    choices: Callable[[ShellState], tuple[str, ...]] | None = None
    paths: bool = False


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arg: str = "", *, aliases: tuple[str, ...] = (),
            choices: Callable[[ShellState], tuple[str, ...]] | None = None, paths: bool = False):
    """Register a meta-command ``\\name`` that runs ``fn(state, argument_text)``."""
    def register(fn: Callable[[ShellState, str], None]) -> Callable[[ShellState, str], None]:
        COMMANDS[name] = Command(name, fn, help, arg, aliases, choices, paths)
        return fn
    return register


def lookup(name: str) -> Command:
    """The command called ``name`` (with its backslash) or one of its aliases."""
    for cmd in COMMANDS.values():
        if name in (cmd.name, *cmd.aliases):
            return cmd
    names = [c.name for c in COMMANDS.values()]
    raise UsageError(f"unknown command {name}",
                     hint=did_you_mean(name, names) or r"\help lists the commands")


def run_command(state: ShellState, text: str) -> None:
    """Run one meta-command line, e.g. ``\\save out.csv``."""
    name, _, arg = text.strip().partition(" ")
    lookup(name).run(state, arg.strip())


def meta_infos(state: ShellState) -> dict[str, MetaInfo]:
    """What the completer offers for each command and alias."""
    out = {}
    for cmd in COMMANDS.values():
        info = MetaInfo(cmd.help, cmd.choices(state) if cmd.choices else (), cmd.paths)
        for name in (cmd.name, *cmd.aliases):
            out[name] = info
    return out


def _say(state: ShellState, text: str) -> None:
    state.console.print(text, style="dim", markup=False, highlight=False)


def _on_off(value: str, current: bool, what: str) -> bool:
    if not value:
        return not current
    if value.lower() not in ON_OFF:
        raise UsageError(f"{what} takes on or off, got {value!r}")
    return value.lower() == "on"


# ---------------------------------------------------------------- the commands

#: Keys the shell binds, for \help.
KEYS = (("Enter", "run the statement when complete (or ending in ;); else a new line"),
        ("Enter on an empty line", "run what is there anyway"),
        ("Tab", "complete keywords, concepts, LET names, units, settings"),
        ("Up / Ctrl-R", "previous statements / search them"),
        ("Ctrl-C", "clear the line; while a statement runs, cancel it"),
        ("Ctrl-D", "leave the shell"))


@command(r"\help", "list the commands and keys; with a statement (\\help SEARCH), its syntax",
         "[COMMAND|STATEMENT]", aliases=(r"\?", r"\h"),
         choices=lambda state: (*COMMANDS, *statement_keywords()))
def _help(state: ShellState, arg: str) -> None:
    syntax = statement_help(arg) if arg and not arg.startswith("\\") else None
    if syntax is not None:
        state.console.print(Text(f"{arg.upper()}: {SUMMARIES.get(arg.upper(), '')}", style="bold"))
        for line in syntax:
            state.console.print(Text("  " + line), highlight=False)
        return
    chosen = [_help_topic(arg)] if arg else list(COMMANDS.values())
    rows = [{"command": " ".join(filter(None, [c.name, c.arg])), "does": c.help
             + (f" (also {', '.join(c.aliases)})" if c.aliases else "")} for c in chosen]
    print_table(Result(r"\help", "help", ["command", "does"], rows), state.console)
    if not arg:
        state.console.print()
        print_table(Result(r"\help", "help", ["key", "does"], [{"key": k, "does": d} for k, d in KEYS]),
                    state.console)
        _say(state, f"statements: {', '.join(statement_keywords())}, or a formula; "
                    "\\help SEARCH (or any statement) shows its syntax; quit or exit leaves")


def _help_topic(arg: str) -> Command:
    """The command ``\\help ARG`` asks about; a clear error naming commands and statements otherwise."""
    try:
        return lookup(arg if arg.startswith("\\") else "\\" + arg)
    except UsageError:
        words = [*statement_keywords(), *(c.name for c in COMMANDS.values())]
        raise UsageError(f"no command or statement called {arg}",
                         hint=did_you_mean(arg, words) or r"\help lists the commands") from None


@command(r"\store", "open another concept store (settings and history carry over)", "PATH", paths=True)
def _store(state: ShellState, arg: str) -> None:
    if not arg:
        _say(state, f"store: {state.session.store.path or '(in memory)'}")
        return
    from ..resources import locate_store

    path = locate_store(arg)
    session = connect(path)
    for name in PORTABLE_SETTINGS:
        session.settings[name] = state.session.settings[name]
    state.replace_session(session)
    store = session.store
    _say(state, f"opened {path}: {len(store.concepts):,} concepts, layers: {', '.join(store.layers) or 'none'}")


@command(r"\layer", "use another unit layer (no name: list the layers)", "[NAME]",
         choices=lambda state: tuple(state.session.store.layers))
def _layer(state: ShellState, arg: str) -> None:
    if not arg:
        current = state.session.settings["layer"] or next(iter(state.session.store.layers), None)
        rows = [{"layer": name, "units": layer.n_units, "current": "*" if name == current else ""}
                for name, layer in state.session.store.layers.items()]
        print_table(Result(r"\layer", "show", ["layer", "units", "current"], rows), state.console)
        return
    state.session.run(s.Set("layer", arg))
    _say(state, f"layer = {arg}")


@command(r"\format", "how results print: table, json, jsonl or csv", "[FORMAT]",
         choices=lambda state: FORMATS)
def _format(state: ShellState, arg: str) -> None:
    if arg:
        if arg not in FORMATS:
            raise UsageError(f"unknown format {arg!r}", hint="formats: " + ", ".join(FORMATS))
        state.format = arg
    _say(state, f"format = {state.format}")


@command(r"\timing", "show how long each statement takes", "[on|off]", choices=lambda state: ON_OFF)
def _timing(state: ShellState, arg: str) -> None:
    state.timing = _on_off(arg, state.timing, r"\timing")
    _say(state, f"timing is {'on' if state.timing else 'off'}")


@command(r"\pager", "page results taller than the terminal", "[on|off]", choices=lambda state: ON_OFF)
def _pager(state: ShellState, arg: str) -> None:
    state.pager = _on_off(arg, state.pager, r"\pager")
    _say(state, f"pager is {'on' if state.pager else 'off'}")


@command(r"\save", "write the last result to FILE (.csv, .json or .jsonl)", "FILE", paths=True)
def _save(state: ShellState, arg: str) -> None:
    if not arg:
        raise UsageError(r"\save needs a file name, e.g. \save result.csv")
    if state.last is None:
        raise UsageError("no result to save yet: run a statement first")
    path = Path(arg).expanduser()
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format of {arg}", hint="end the name in .csv, .json or .jsonl")
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            render([state.last], fmt, out)
    except OSError as exc:
        raise UsageError(f"cannot write {arg}: {exc.strerror or exc}") from None
    n = len(state.last.rows)
    _say(state, f"wrote {n} row{'' if n == 1 else 's'} to {path}")


@command(r"\q", "leave the shell (or Ctrl-D)", aliases=(r"\quit", r"\exit"))
def _quit(state: ShellState, arg: str) -> None:
    state.done = True


__all__ = ["COMMANDS", "Command", "ShellState", "command", "lookup", "meta_infos", "run_command"]
