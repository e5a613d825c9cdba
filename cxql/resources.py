"""Where the files that ship with cxql live: the grammar and the demo store.

In a wheel they sit under ``cxql/_data``; in a source checkout (editable
installs, tests) they stay at the repository's top level, where people edit
them. One lookup serves both, so there is a single copy of each file.
"""

from __future__ import annotations

import os
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


#: The short name of the bundled demo store on the command line (``-s demo``, ``cxql report demo ...``).
DEMO_NAME = "demo"


def locate_store(arg: "str | os.PathLike[str] | None", *, writes: bool = False) -> Path:
    """The store directory a STORE argument names; a UsageError (exit 2) naming it when there is none.

    ``None`` and ``demo`` (when no file of that name is here) mean the bundled
    demo store, so its examples work after ``pip install`` from any directory.
    Commands that write refuse it: cxql never changes the files it ships.
    A damaged store passes here and fails when opened, as a data error (exit 1).
    """
    from .errors import UsageError

    if arg is None or (str(arg) == DEMO_NAME and not Path(arg).exists()):
        if writes:
            raise UsageError(f"the bundled demo store is read-only to cxql; copy it (it is at {demo_store_path()}) "
                             "and pass the copy's path")
        return demo_store_path()
    path = Path(arg).expanduser()
    if not path.exists():
        raise UsageError(f"no store at {arg}")
    if not path.is_dir():
        raise UsageError(f"no store at {arg}: not a directory")
    if not (path / "manifest.json").exists():
        raise UsageError(f"no store at {arg}: a directory without manifest.json is not a cxql store")
    return path
