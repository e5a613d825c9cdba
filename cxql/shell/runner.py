"""Running statements so that Ctrl-C stops a SEARCH and not the shell.

Ctrl-C reaches Python as KeyboardInterrupt in the main thread, wherever it
happens to be: in the middle of a torch kernel it would leave the session
half-updated. So the statements run in a worker thread while the main thread
only waits. On Ctrl-C the waiter calls :meth:`Session.cancel`, which beam
search checks between steps and between units, and lets no further
statement of the buffer start; the worker then returns what it has (a
cancelled SEARCH reports the units it finished) and the shell goes on with
the same session, LETs and settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

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
    stop = threading.Event()
    finished = threading.Event()

    def work() -> None:
        try:
            for result in session.stream(text):
                outcome.results.append(result)
                on_result(result)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread to report
            outcome.error = exc
        finally:
            finished.set()

    def interrupted() -> None:
        if not stop.is_set():
            on_cancel()
        stop.set()
        session.cancel()

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
            if stop.is_set():
                session.cancel()  # again: a statement that started meanwhile clears the flag
        except KeyboardInterrupt:
            interrupted()
    outcome.cancelled = stop.is_set()
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
