"""The interactive cxql shell: prompt_toolkit, Pygments and Rich over one Session.

The modules follow pgcli and litecli: ``lexer`` (highlighting), ``statements``
(what the typed text means to the parser), ``completer`` (a pure completion
function and its adapter), ``keys``, ``commands`` (the meta-command registry),
``config``, ``runner`` (cancellable execution) and ``app`` (the loop). The
engine never imports anything from here. See docs/shell.md.
"""

from .app import run_shell

__all__ = ["run_shell"]
