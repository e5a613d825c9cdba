"""The ``cxql`` console script and ``python -m cxql``: a Ctrl-C while cxql starts exits quietly.

The command's modules take a fraction of a second to import; a Ctrl-C in that
time would print a traceback from whatever import was running. This module
imports nothing itself, so the ``try`` is in force before any of them runs.
"""


def main() -> int:
    """Run ``cxql`` with ``sys.argv``; exit status 130 after Ctrl-C, as a shell reports it."""
    try:
        from .cli import main as run

        return run()
    except KeyboardInterrupt:
        import sys

        try:
            print("interrupted", file=sys.stderr)
        except (KeyboardInterrupt, OSError):
            pass
        return 130
