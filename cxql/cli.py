"""The ``cxql`` command: queries, scripts, the shell, and store/unit tools.

    cxql                                  shell on the bundled demo store
    cxql -s STORE -c "QUERY" [--format F] run a query and print the results
    cxql -s STORE script.cxql             run a script file
    cxql units add STORE LAYER ACTS.npy   attach a layer's activations
    cxql store info STORE                 what a store holds
    cxql store build broden|nli ...       build a store (builders: cxql.subcommands)
    cxql --version

Results are written as each statement finishes (json stays one valid object
even after an error or Ctrl-C; see :class:`cxql.render.ResultWriter`).

Exit status: 0 success, 1 query or data error, 2 usage error. Errors go to
stderr as one message with the position of the fault, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .engine import Session, open_session
from .errors import CxqlError, UsageError
from .render import FORMATS, ResultWriter
from .store.validate_input import describe_os_error
from .subcommands import REGISTRY, Command, Tools
from .version import __version__


# ---------------------------------------------------------------- progress


class RichProgress:
    """The CLI's :class:`cxql.progress.Progress`: a Rich bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int, label: str) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(),
                             TextColumn("{task.fields[note]}", style="dim"),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, note="")

    def advance(self, n: int = 1, note: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, note=(note or "")[:60])

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# ---------------------------------------------------------------- parsers


def _query_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxql", description="Explain neurons with logical formulas over concepts.",
        epilog="subcommands: " + ", ".join(REGISTRY.top_level())
        + " (cxql SUBCOMMAND --help)")
    p.add_argument("--version", action="version", version=f"cxql {__version__}")
    p.add_argument("-s", "--store", help="concept store directory, or demo: the bundled demo store (the default)")
    p.add_argument("-c", "--command", action="append", metavar="QUERY",
                   help="run QUERY and print its results (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--device", help="torch device for the engine, e.g. cuda (same as SET device)")
    p.add_argument("scripts", nargs="*", metavar="SCRIPT", help="query script files to run, - for stdin")
    return p


def _tools_parser() -> argparse.ArgumentParser:
    """``cxql store ...``, ``cxql units ...`` and every other registered command (:mod:`cxql.subcommands`)."""
    return REGISTRY.build_parser(argparse.ArgumentParser(prog="cxql", description="cxql store and unit tools"))


def _run_tool(args: argparse.Namespace) -> int:
    command: Command = args._cxql_command
    return command.run(args, Tools(progress=RichProgress, warn=warn))


def warn(message: str) -> None:
    """A warning for people, on stderr."""
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- main


def run_queries(args: argparse.Namespace) -> int:
    session = open_session(args.store, args.device)
    session.progress = RichProgress()
    sources: list[tuple[str, str]] = [("-c", q) for q in args.command or []]
    for script in args.scripts:
        if script == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            sources.append((script, Path(script).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{script}: cannot read script ({exc})") from None
    if not sources:
        if sys.stdin.isatty():
            from .shell import run_shell
            return run_shell(session)
        sources.append(("<stdin>", sys.stdin.read()))
    writer = ResultWriter(args.format, sys.stdout)
    try:
        for origin, text in sources:
            _run_source(session, origin, text, writer)
    except BaseException as exc:
        try:  # the json object closes even on error or Ctrl-C, and says why it stopped
            writer.close(error="interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
        except OSError:
            pass
        raise
    writer.close()
    return 0


def _run_source(session: Session, origin: str, text: str, writer: ResultWriter) -> None:
    """Run one script or ``-c`` text, writing each result as its statement finishes.

    Statements run in a worker thread (:func:`cxql.shell.runner.run_statements`), so
    Ctrl-C cancels a SEARCH cleanly: the units it finished are written, then cxql stops.
    """
    from .shell.runner import run_statements

    outcome = run_statements(session, text, on_result=writer.write)
    if outcome.cancelled:
        raise KeyboardInterrupt
    if isinstance(outcome.error, CxqlError):
        if origin != "-c":
            outcome.error.message = f"{origin}: {outcome.error.message}"
        raise outcome.error
    if outcome.error is not None:
        raise outcome.error


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _load_extensions()
        if argv and argv[0] in REGISTRY.top_level():
            return _run_tool(_parse(_tools_parser(), argv))
        return run_queries(_parse(_query_parser(), argv))
    except _ParseExit as exc:
        return exc.code
    except CxqlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path the system refused (no such directory, not a directory, read-only)
        if not exc.filename:
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1


class _ParseExit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse, with its exit (usage error 2, --help 0) turned into a return code."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        raise _ParseExit(exc.code if isinstance(exc.code, int) else 2) from None


def _load_extensions() -> None:
    """Import the registered commands (built-in and entry points) before parsing."""
    REGISTRY.load()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
