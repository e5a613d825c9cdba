"""Where the files that ship with cxql live: the grammar and the demo store.

In a wheel they sit under ``cxql/_data``; in a source checkout (editable
installs, tests) they stay at the repository's top level, where people edit
them. One lookup serves both, so there is a single copy of each file.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(*parts: str) -> Path:
    """The path of a shipped file, e.g. ``data_path("grammar", "cxql.lark")``."""
    for root in (_PACKAGE / "_data", _PACKAGE.parent):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"cxql is missing its data file {'/'.join(parts)}; reinstall cxql")


def demo_store_path() -> Path:
    """The bundled demo store (digits images and a small CNN)."""
    return data_path("stores", "digits")
