"""The progress protocol: how long work reports how far it got, without knowing who is watching.

Store builders, ``units record``, SEARCH and the report all call
``start(total, label)``, then ``advance(n, note)`` as pieces finish, then
``finish()`` (also after an error). The front ends implement it: the CLI with
a Rich bar on stderr (:class:`cxql.cli.RichProgress`), the shell with a live
view of the latest notes (:class:`cxql.render.LiveProgress`); library callers
get :class:`Quiet`. Nothing below the front ends imports them, so work code
never learns whether a terminal exists.
"""

from __future__ import annotations

from typing import Callable, Protocol

from .errors import Cancelled


class Progress(Protocol):
    """What long work reports to."""

    def start(self, total: int, label: str) -> None: ...
    def advance(self, n: int = 1, note: str | None = None) -> None: ...
    def finish(self) -> None: ...


class Quiet:
    """Progress that shows nothing (the library default)."""

    def start(self, total: int, label: str) -> None:
        pass

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


def counter(progress: Progress) -> Callable[[int], None]:
    """``progress.advance`` as the ``callback(n)`` that lower-level loops (thresholding, batches) take."""
    return lambda n: progress.advance(n)


def stoppable(callback: Callable[[int], None] | None, should_stop: Callable[[], bool] | None,
              what: str) -> Callable[[int], None] | None:
    """``callback(n)`` that afterwards raises :class:`~cxql.errors.Cancelled` once ``should_stop()`` says so.

    Loops that already report each finished piece thereby stop between
    pieces, and their writers (temp path, rename) keep nothing half-done.
    """
    if should_stop is None:
        return callback

    def report(n: int) -> None:
        if callback is not None:
            callback(n)
        check_stop(should_stop, what)
    return report


def check_stop(should_stop: Callable[[], bool] | None, what: str) -> None:
    """Raise :class:`~cxql.errors.Cancelled` when ``should_stop()`` says the user asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} cancelled; nothing was written")


__all__ = ["Progress", "Quiet", "check_stop", "counter", "stoppable"]
