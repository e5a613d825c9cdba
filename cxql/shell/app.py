"""A line-at-a-time shell: read a statement, run it, print the table, go on."""

from __future__ import annotations

from prompt_toolkit import PromptSession
from rich.console import Console

from ..engine import Session
from ..errors import CxqlError
from ..render import render


def run_shell(session: Session) -> int:
    console = Console()
    prompt: PromptSession[str] = PromptSession("cxql> ")
    console.print(f"cxql on {session.store.path} — type a query; Ctrl-D exits")
    while True:
        try:
            text = prompt.prompt()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        if not text.strip():
            continue
        try:
            render(list(session.stream(text)), "table", console.file, console)
        except CxqlError as exc:
            console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        except KeyboardInterrupt:
            console.print("cancelled")
