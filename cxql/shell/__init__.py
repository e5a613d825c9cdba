"""The interactive cxql shell: prompt_toolkit, Pygments and Rich over one Session.

The modules follow pgcli and litecli: ``lexer`` (highlighting), ``statements``
(what the typed text means to the parser), ``completer`` (a pure completion
function and its adapter), ``keys``, ``commands`` (the meta-command registry),
``config``, ``runner`` (cancellable execution) and ``app`` (the loop). The
engine never imports anything from here. See docs/shell.md.

prompt_toolkit loads only when the shell runs, so ``cxql -c`` (which uses
``runner`` alone) does not wait for it.
"""

from __future__ import annotations

from typing import Any


def run_shell(*args: Any, **kwargs: Any) -> int:
    """Run the interactive shell (:func:`cxql.shell.app.run_shell`)."""
    from .app import run_shell as run

    return run(*args, **kwargs)


__all__ = ["run_shell"]
