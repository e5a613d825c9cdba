"""SEARCH ... EXACT over several processes: units are independent, so forked workers take them in turn.

Why processes. A unit's proof is a few hundred small numpy calls, so
threads only take turns on the GIL (measured: no gain); processes scale
with the cores, as the beam's torch threads do. Why fork. The store's
tables (signature pairs, the unit histograms, the |c AND d| table once
built) are inherited copy-on-write instead of pickled; off Linux (Windows
cannot fork; macOS can, but its system libraries are not fork-safe once a
process has threads) the search stays in one process. Workers run numpy only, never torch or the terminal, so the
threads of the parent (torch's pool, a live progress bar) do not matter.

Budget and cancel. ``end`` (``time.monotonic``, the same clock in every
process) is the statement's deadline; a unit may use the time left times
the workers over the units not yet started, as one process would use the
time left over the units left. Ctrl-C reaches the parent's cancel token
(workers ignore SIGINT); the parent sets a shared event the workers poll,
and every unit still to search answers at once with its seed and bound,
as in one process. Answers are the same whatever the number of workers
(tests compare them).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from .errors import DataError
from .exact import Answer, Space, Unit, search_unit

MAX_WORKERS = 8   # 'auto': one per core, at most this many
MIN_UNITS = 4     # units per worker below which forking costs more than it saves

_JOB: tuple | None = None  # what the forked workers inherit: set just before the pool starts
_ONE_AT_A_TIME = threading.Lock()


def available() -> bool:
    """Whether this platform forks workers safely: Linux (macOS can fork, but its system libraries are not
    fork-safe once threads exist, so there, as on Windows, EXACT runs in one process)."""
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def workers_for(setting: int | None, n_units: int) -> int:
    """How many processes to use: ``setting`` (None: 'auto', one per core up to MAX_WORKERS), at most one per
    MIN_UNITS units, and 1 where fork is not available."""
    wanted = min(os.cpu_count() or 1, MAX_WORKERS) if setting is None else setting
    return max(1, min(wanted, n_units // MIN_UNITS)) if available() else 1


def run(space: Space, unit_of: Callable[[int], Unit], n_units: int, length: int, end: float | None,
        cancelled: Callable[[], bool], workers: int, on_answer: Callable[[int, Answer], None]) -> None:
    """Search units 0..n_units-1 (``unit_of(i)`` builds one, in the worker) over ``workers`` forked processes,
    calling ``on_answer(i, answer)`` in this process as each lands.

    A worker that dies (kill -9, the out-of-memory killer) takes its unit with it; a ``multiprocessing.Pool``
    would replace the worker and wait for that unit forever, so the executor here, which notices, turns it
    into one clear error."""
    global _JOB
    context = mp.get_context("fork")
    stop, started = context.Event(), context.Value("i", 0)
    with _ONE_AT_A_TIME:  # _JOB is what the workers inherit: one search's, never a mix of two threads'
        _JOB = (space, unit_of, n_units, length, end, stop, started, workers)
        try:
            _collect(context, workers, n_units, stop, cancelled, on_answer)
        finally:
            _JOB = None


def _collect(context: Any, workers: int, n_units: int, stop: Any, cancelled: Callable[[], bool],
             on_answer: Callable[[int, Answer], None]) -> None:
    """Run the workers and hand each answer to ``on_answer`` as it lands, passing a cancel on to them."""
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet)
    try:
        pending = {pool.submit(_search_one, i) for i in range(n_units)}
        while pending:
            done, pending = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
            for future in done:
                on_answer(*future.result())
            if cancelled():
                stop.set()
    except BrokenProcessPool:
        raise DataError("a SEARCH ... EXACT worker process died (killed, or out of memory?); "
                        "SET workers = 1 searches in this process, with less memory") from None
    finally:
        stop.set()  # units still running stop at their next check; queued ones are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _quiet() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it cancels through the shared event)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _search_one(i: int) -> tuple[int, Answer]:
    assert _JOB is not None, "workers are forked after the job is set"
    space, unit_of, n_units, length, end, stop, started, workers = _JOB
    with started.get_lock():
        started.value += 1
        left = n_units - started.value + 1
    deadline = None
    if end is not None:
        now = time.monotonic()
        deadline = now + max(0.0, end - now) * min(1.0, workers / max(left, 1))
    return i, search_unit(space, unit_of(i), length, deadline=deadline, cancelled=stop.is_set)


__all__: list[Any] = ["MAX_WORKERS", "available", "run", "workers_for"]
