"""Running statements so that Ctrl-C stops a SEARCH and not the shell.

Ctrl-C reaches Python as KeyboardInterrupt in the main thread, wherever it
happens to be: in the middle of a torch kernel it would leave the session
half-updated. So the statements run in a worker thread while the main thread
only waits. The buffer's statements run under one cancel token
(:mod:`cxql.cancel`); on Ctrl-C the waiter cancels it once: the running
statement stops at its next check (search steps and units, EVAL rows,
re-thresholding) and no further statement of the buffer starts. The worker
then returns what it has (a cancelled SEARCH reports the units it finished)
and the shell goes on with the same session, LETs and settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..cancel import CancelToken
from ..engine import Result, Session

#: How often the waiting thread wakes up (seconds).
POLL = 0.05


@dataclass
class Outcome:
    """What a buffer of statements produced."""

    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None
    cancelled: bool = False
    seconds: float = 0.0


def run_statements(session: Session, text: str, on_cancel: Callable[[], None] = lambda: None,
                   on_result: Callable[[Result], None] = lambda result: None) -> Outcome:
    """Run ``text`` on ``session`` in a worker thread; Ctrl-C meanwhile cancels it cleanly.

    ``on_result`` sees each result as its statement finishes (in the worker thread), so a
    front end can write it before the next statement runs (``cxql -c``).
    """
    outcome = Outcome()
    stop = CancelToken()
    finished = threading.Event()

    def work() -> None:
        try:
            for result in session.stream(text, stop):
                outcome.results.append(result)
                on_result(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread to report
            outcome.error = exc
        finally:
            finished.set()

    def interrupted() -> None:
        if not stop.cancelled:
            on_cancel()
        stop.cancel()

    started = time.perf_counter()
    worker = threading.Thread(target=work, name="cxql-statement", daemon=True)
    try:
        worker.start()
    except KeyboardInterrupt:  # Ctrl-C can land while start() waits for the thread to begin
        interrupted()
        if not _began(worker, finished):
            finished.set()
    # Wait on an Event, not Thread.join: a KeyboardInterrupt inside join() can
    # make the thread look finished while it still runs (CPython gh-90882).
    while not finished.is_set():
        try:
            finished.wait(POLL)
        except KeyboardInterrupt:
            interrupted()
    outcome.cancelled = stop.cancelled
    outcome.seconds = time.perf_counter() - started
    return outcome


def _began(worker: threading.Thread, finished: threading.Event, patience: float = 1.0) -> bool:
    """Whether a thread whose start() was interrupted is running (or already done)."""
    deadline = time.perf_counter() + patience
    while time.perf_counter() < deadline:
        if worker.is_alive() or finished.is_set():
            return True
        time.sleep(0.01)
    return False


__all__ = ["Outcome", "run_statements"]
