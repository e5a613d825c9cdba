"""Key bindings: what Enter means in a language whose statements may span lines.

Enter runs the buffer when the parser says the statement is complete (or it
ends in ``;``, or it is a meta-command, or it has a syntax error to show);
otherwise it starts a continuation line, as psql and pgcli do. The decision is
:func:`cxql.shell.statements.enter_submits`, a pure function; this module
only wires it to prompt_toolkit. Everything else (Tab completion, Ctrl-R
history search, Ctrl-C, Ctrl-D) is prompt_toolkit's own emacs-mode binding.
"""

from __future__ import annotations

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from .statements import enter_submits


def _completion_selected(event: KeyPressEvent) -> bool:
    state = event.current_buffer.complete_state
    return state is not None and state.current_completion is not None


def shell_key_bindings() -> KeyBindings:
    """The shell's own bindings, layered over prompt_toolkit's defaults."""
    bindings = KeyBindings()
    in_buffer = has_focus(DEFAULT_BUFFER)

    @bindings.add("enter", filter=in_buffer)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if _completion_selected(event):
            buffer.complete_state = None  # Enter accepts the highlighted completion
        elif enter_submits(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    @bindings.add("escape", "enter", filter=in_buffer)
    def _run_now(event: KeyPressEvent) -> None:
        """Alt-Enter runs the buffer whatever it holds."""
        event.current_buffer.validate_and_handle()

    @bindings.add("c-space", filter=in_buffer)
    def _complete(event: KeyPressEvent) -> None:
        """Ctrl-Space opens the completion menu without choosing an entry."""
        event.current_buffer.start_completion(select_first=False)

    return bindings


__all__ = ["shell_key_bindings"]
