"""The interactive shell: a prompt_toolkit prompt over one :class:`cxql.Session`.

This module only assembles the pieces: the Pygments lexer for live
highlighting (:mod:`.lexer`), the completer (:mod:`.completer`), Enter and
friends (:mod:`.keys`), meta-commands (:mod:`.commands`), the config file and
history (:mod:`.config`) and cancellable execution (:mod:`.runner`). Results
print through :mod:`cxql.render`, like the CLI's, so both show the same
numbers. The loop reads a statement, runs it, prints the table or the error
with its caret and hint, and goes on until Ctrl-D or ``\\q``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style, merge_styles, style_from_pygments_cls
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from rich.console import Console
from rich.text import Text

from ..version import __version__
from ..engine import Session, connect, warm_up
from ..errors import CxqlError
from ..render import LiveProgress, print_results
from ..resources import demo_store_path
from .commands import ShellState, meta_infos, run_command
from .completer import CompletionContext, ShellCompleter, concept_names, context_of
from .config import ShellConfig, history_path, load_config, trim_history
from .keys import shell_key_bindings
from .lexer import CxqlLexer
from .runner import run_statements
from .statements import is_meta, runnable

PROMPT = "cxql> "
#: Typed alone, these leave the shell (like \\q or Ctrl-D); a concept so named is written quoted.
LEAVE_WORDS = ("quit", "exit")

_UI_STYLE = Style.from_dict({
    "prompt": "bold ansigreen",
    "continuation": "ansigreen",
    "bottom-toolbar": "noreverse bg:ansibrightblack ansiwhite",
})


class Shell:
    """One interactive shell: its state, its prompt, and the read-run-print loop."""

    def __init__(self, session: Session, *, console: Console, config: ShellConfig,
                 history: History) -> None:
        self.config = config
        self.state = ShellState(session, console, format=config.format, timing=config.timing,
                                pager=config.pager)
        self.state.on_session.append(self._attach)
        self._attach(session)
        self.prompt: PromptSession[str] = PromptSession(
            [("class:prompt", PROMPT)],
            lexer=PygmentsLexer(CxqlLexer),
            completer=ShellCompleter(self.context),
            complete_while_typing=config.complete_while_typing,
            auto_suggest=AutoSuggestFromHistory(),
            multiline=True,
            key_bindings=shell_key_bindings(),
            history=history,
            style=_style(config.style, console),
            include_default_pygments_style=False,
            prompt_continuation=_continuation,
            bottom_toolbar=self.toolbar,
            search_ignore_case=True,
        )

    # ------------------------------------------------------------ pieces the prompt calls

    def _attach(self, session: Session) -> None:
        session.progress = LiveProgress(self.state.console)
        self._concepts = concept_names(session.store.concepts)

    def context(self) -> CompletionContext:
        """What completion may offer right now."""
        return context_of(self.state.session, meta_infos(self.state), self._concepts)

    def toolbar(self) -> list[tuple[str, str]]:
        session = self.state.session
        store = session.store
        name = store.path.name if store.path else "(in memory)"
        layer = session.settings["layer"] or next(iter(store.layers), "no layers")
        return [("class:bottom-toolbar",
                 f" {name} · layer {layer} · {self.state.format}"
                 f"{' · timing' if self.state.timing else ''} · \\help · Ctrl-D leaves ")]

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        self.banner()
        # The prompt comes up at once; torch and the engine's computing modules load meanwhile.
        threading.Thread(target=warm_up, name="cxql-warm-up", daemon=True).start()
        while not self.state.done:
            try:
                text = self.prompt.prompt()
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            self.handle(text)
        return 0

    def banner(self) -> None:
        store = self.state.session.store
        layers = ", ".join(f"{n} ({l.n_units} units)" for n, l in store.layers.items()) or "no layers"
        self._say(f"cxql {__version__} on {store.path or 'an in-memory store'}: "
                  f"{len(store.concepts):,} concepts, {layers}")
        self._say(r"Enter runs a complete statement; Tab completes; \help lists commands; Ctrl-D leaves")

    def handle(self, text: str) -> None:
        """Run one buffer (statements or a meta-command); report faults and go on."""
        if not text.strip():
            return
        if text.strip().rstrip(";").strip().lower() in LEAVE_WORDS:
            self.state.done = True
            return
        try:
            if is_meta(text):
                run_command(self.state, text)
            else:
                self.execute(text)
        except CxqlError as exc:
            self.error(exc)
        except KeyboardInterrupt:
            self._say("cancelled")
        except Exception as exc:  # noqa: BLE001 - a bug must not end the session
            self.error(exc, internal=True)

    def execute(self, text: str) -> None:
        state = self.state
        outcome = run_statements(state.session, runnable(text),
                                 on_cancel=lambda: self._say("cancelling..."))
        if outcome.results:
            print_results(outcome.results, state.console, state.format, pager=state.pager)
            state.last = outcome.results[-1]
        if outcome.cancelled:
            self._say("cancelled; the session goes on")
        if state.timing:
            self._say(f"{len(outcome.results)} statement{'s' if len(outcome.results) != 1 else ''} "
                      f"in {outcome.seconds:.3f} s")
        if outcome.error is not None:
            raise outcome.error

    def error(self, exc: BaseException, *, internal: bool = False) -> None:
        if internal:
            message = Text(f"internal error: {type(exc).__name__}: {exc}\n"
                           "hint: this is a bug in cxql; the session goes on")
        else:
            message = Text(str(exc))
        self.state.console.print(Text("error: ", style="bold red") + message, highlight=False)

    def _say(self, text: str) -> None:
        self.state.console.print(Text(text, style="dim"), highlight=False)


def _continuation(width: int, line_number: int, wrap_count: int) -> list[tuple[str, str]]:
    return [("class:continuation", "...> ".rjust(width))]


def _style(name: str, console: Console) -> Style:
    try:
        pygments_style = get_style_by_name(name)
    except ClassNotFound:
        console.print(Text(f"config: unknown style {name!r}; using 'default'", style="yellow"))
        pygments_style = get_style_by_name("default")
    return merge_styles([style_from_pygments_cls(pygments_style), _UI_STYLE])


def _file_history(config: ShellConfig) -> History:
    if config.history_size == 0:
        return InMemoryHistory()
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return InMemoryHistory()
    trim_history(path, config.history_size)
    return FileHistory(str(path))


def _initial_session(session: Session, config: ShellConfig, console: Console) -> Session:
    """The session to start on: ``default_store`` from the config when cxql was given no store."""
    if not config.default_store:
        return session
    try:
        demo = demo_store_path()
    except FileNotFoundError:
        demo = None
    if session.store.path is None or demo is None or Path(session.store.path).resolve() != demo.resolve():
        return session
    try:
        return connect(Path(config.default_store).expanduser())
    except CxqlError as exc:
        console.print(Text(f"config: default_store: {exc}; using the demo store", style="yellow"))
        return session


def run_shell(session: Session, *, console: Console | None = None, config: ShellConfig | None = None,
              history: History | None = None) -> int:
    """Run the interactive shell on ``session`` until Ctrl-D or ``\\q``; returns the exit status."""
    console = console or Console(highlight=False)
    if config is None:
        config, warnings = load_config()
        for warning in warnings:
            console.print(Text(f"config: {warning}", style="yellow"))
    os.environ.setdefault("LESS", "-SRXF")  # the pager keeps colours, and quits if one screen is enough
    session = _initial_session(session, config, console)
    shell = Shell(session, console=console, config=config, history=history or _file_history(config))
    return shell.run()


__all__ = ["Shell", "run_shell"]
