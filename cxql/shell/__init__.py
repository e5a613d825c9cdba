"""The interactive cxql shell (prompt_toolkit front end over one Session)."""

from .app import run_shell

__all__ = ["run_shell"]
