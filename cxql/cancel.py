"""Cancel tokens: how a long statement hears that someone asked it to stop.

Each statement runs under its own :class:`CancelToken`. Whoever started the
statement keeps the token and calls :meth:`CancelToken.cancel` (the shell on
Ctrl-C, a test from a progress callback, another thread); the statement's
long loops (search steps and units, EVAL over ``*``, re-thresholding, store
builds) poll :attr:`CancelToken.cancelled` between pieces of work and stop
cleanly. A token never un-cancels, so nobody needs to re-send a request that
raced with the start of the work, and it is thread-safe (an Event).

Work that can return what it finished does so (SEARCH returns its finished
units); work that cannot (re-thresholding a layer, building a store) calls
:meth:`CancelToken.check`, which raises :class:`Cancelled`: the session turns
that into a result with a "cancelled" message and the CLI into exit 130,
never an internal error, and nothing half-done is kept.

Builders and ``units record`` take a ``should_stop()`` callback; a token
is one (``token()`` says whether it was cancelled).

This module imports only :mod:`cxql.errors`, so any module may use it.
"""

from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    """A one-way flag, safe to set from any thread; long work polls it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        """The token as a ``cancelled()`` callback, for code that takes one."""
        return self._event.is_set()

    def check(self, what: str = "the statement") -> None:
        """Raise :class:`Cancelled` when cancelled: for work that has nothing partial to return."""
        if self._event.is_set():
            raise Cancelled(f"{what} cancelled; nothing half-done was kept")


__all__ = ["CancelToken", "Cancelled"]
