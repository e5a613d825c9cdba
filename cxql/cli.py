"""The ``cxql`` command: queries, scripts, the shell, and store/unit tools.

    cxql                                  shell on the bundled demo store
    cxql -s STORE -c "QUERY" [--format F] run a query and print the results
    cxql -s STORE script.cxql             run a script file
    cxql units add STORE LAYER ACTS.npy   attach a layer's activations
    cxql store info STORE                 what a store holds
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
from typing import Any, Callable, Sequence

from .engine import Session, connect
from .errors import CxqlError, DataError, UsageError
from .render import FORMATS, ResultWriter, render
from .resources import locate_store
from .store import ConceptStore, Threshold
from .store.activation_files import load_activations
from .store.units import check_activations
from .store.validate_input import check_new_layer, describe_os_error
from .version import __version__

#: Subcommand groups: name -> function adding its parser(s) to the subparsers.
#: Each sets ``func`` (args -> exit code) on the parsers it adds.
SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(name: str):
    """Register a function that adds the ``cxql NAME ...`` parsers."""
    def register(fn: Callable[[argparse._SubParsersAction], None]):
        SUBCOMMANDS[name] = fn
        return fn
    return register


# ---------------------------------------------------------------- progress


class RichProgress:
    """A Rich progress bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
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
        self._task = self._bar.add_task(description, total=total, note="")

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
        epilog="subcommands: " + ", ".join(["store", "units", *[n for n in SUBCOMMANDS if n not in ("store", "units")]])
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
    p = argparse.ArgumentParser(prog="cxql", description="cxql store and unit tools")
    sub = p.add_subparsers(dest="group", required=True)
    for add in SUBCOMMANDS.values():
        add(sub)
    return p


@subcommand("units")
def _units_parsers(sub: argparse._SubParsersAction) -> None:
    units = sub.add_parser("units", help="attach unit layers to a store")
    usub = units.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", help="attach a layer from saved activations (.npy or .pt)",
                          description="Activations are [samples, units, h, w] (upsampled to the mask shape) "
                                      "or [samples, units], in the store's sample order.")
    add.add_argument("store")
    add.add_argument("layer")
    add.add_argument("activations")
    add.add_argument("--threshold", help="absolute value (0.5 or value:0.5), or quantile:LEVEL (default: the store kind's)")
    add.add_argument("--no-keep", action="store_true", help="do not keep raw activations (SET threshold off)")
    add.add_argument("--replace", action="store_true", help="replace the layer if the store has one of that name")
    add.set_defaults(func=_units_add)
    for add_action in UNITS_ACTIONS.values():
        add_action(usub)


#: ``cxql units ACTION`` parsers added by extensions: action -> function adding its parser.
UNITS_ACTIONS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


@subcommand("store")
def _store_parsers(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="build and inspect concept stores")
    ssub = store.add_subparsers(dest="action", required=True)
    info = ssub.add_parser("info", help="what a store holds")
    info.add_argument("store", help="store directory, or demo: the bundled demo store")
    info.add_argument("--format", choices=FORMATS, default="table")
    info.set_defaults(func=_store_info)
    from .store.check import add_parser as add_check
    add_check(ssub)
    build = ssub.add_parser("build", help="build a store from a probe dataset")
    kinds = build.add_subparsers(dest="source", required=True)
    for add in STORE_BUILDERS.values():
        add(kinds)


#: ``cxql store build KIND`` parsers: kind -> function adding its parser.
STORE_BUILDERS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def _units_add(args: argparse.Namespace) -> int:
    store = ConceptStore.open(locate_store(args.store, writes=True))
    check_new_layer(store.layers, args.layer, args.replace)
    # "0.5" is absolute, "quantile:0.99" a level; checked before a big file is read
    threshold = Threshold.parse(args.threshold, store.default_threshold())
    acts = load_activations(args.activations)
    check_activations(acts, store.n_samples, args.activations)
    progress = RichProgress()
    progress.start(acts.shape[0] if acts.ndim else 0, f"thresholding {args.layer}")
    try:
        layer = store.add_units(args.layer, acts, threshold, keep_activations=not args.no_keep,
                                progress=lambda n: progress.advance(n), replace=args.replace,
                                on_warning=warn)
    except DataError as exc:  # bad values (NaN, inf): say which file they are in
        exc.message = f"{args.activations}: {exc.message}"
        raise
    finally:
        progress.finish()
    print(f"added {layer.describe()}", file=sys.stderr)
    return 0


def _store_info(args: argparse.Namespace) -> int:
    session = connect(locate_store(args.store))
    render([session.execute("SHOW store")], args.format, sys.stdout)
    return 0


def warn(message: str) -> None:
    """A warning for people, on stderr."""
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- main


def open_session(store: str | None, device: str | None = None) -> Session:
    session = connect(locate_store(store))
    if device:  # checked as SET device is, but told as the option the user typed
        from .settings import check_setting

        try:
            session.settings["device"] = check_setting("device", device)
        except CxqlError as exc:
            raise UsageError(f"--device {device}: {exc.message}") from None
    return session


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
        if argv and argv[0] in SUBCOMMANDS:
            args = _parse(_tools_parser(), argv)
            return args.func(args)
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


#: Modules that register subcommands or store builders when imported.
EXTENSIONS: tuple[str, ...] = ("cxql.store.broden", "cxql.store.nli", "cxql.record", "cxql.report")


def _load_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        importlib.import_module(name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
