"""A module imported on first attribute access, for heavy optional imports (torch) at module level.

``torch = lazy_module("torch")`` keeps ``torch.Tensor`` readable in a module
while importing that module costs nothing until torch is first used, so
``import cxql`` and ``cxql --help`` do not wait for torch (issue 11).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module; the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports on first use."""
    return LazyModule(name)
