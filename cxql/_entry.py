"""The ``cxql`` console script and ``python -m cxql``: a Ctrl-C while cxql starts exits quietly.

The command's modules take a fraction of a second to import. A Ctrl-C in that
time would print a traceback from whatever import was running, and some
extension modules (numpy's) turn the interrupt into an ``ImportError``, so
catching ``KeyboardInterrupt`` is not enough: while the imports run, SIGINT
ends the process at once with status 130; afterwards Python's own handler is
back, so a running statement is cancelled as usual.
"""

import os
import signal
import sys


def _quit_at_once(signum: int, frame: object) -> None:
    try:
        os.write(2, b"interrupted\n")
    finally:
        os._exit(130)  # nothing has been written or opened yet that needs closing


def main() -> int:
    """Run ``cxql`` with ``sys.argv``; exit status 130 after Ctrl-C, as a shell reports it."""
    try:
        previous = signal.signal(signal.SIGINT, _quit_at_once)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        previous = None
    try:
        from .cli import main as run
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        return run()
    except KeyboardInterrupt:
        try:
            print("interrupted", file=sys.stderr)
        except (KeyboardInterrupt, OSError):
            pass
        return 130
