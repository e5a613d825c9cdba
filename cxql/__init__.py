"""cxql: explain neurons with logical formulas over human concepts.

The public API (README.md, "Python API")::

    store = cxql.ConceptStore.from_masks(masks, names, categories)
    store.add_unit_masks("layer4", unit_masks)        # or store.add_units(layer, activations)
    session = cxql.connect(store)                      # or a store path
    session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows
    cxql.parse("(water OR river) AND NOT blue")
    cxql.record(model, "layer4", store)                # a torch layer over the store's images

Importing cxql imports nothing but this file and :mod:`cxql.version`: each public
name is loaded when first used (module ``__getattr__``). Every ``import cxql.x``
runs this file first, before any code could catch Ctrl-C, so it must stay cheap:
the ``cxql`` command (:mod:`cxql._entry`) catches a Ctrl-C during its own imports,
but not one during this file's. Torch is loaded when a statement first runs.
"""

from __future__ import annotations

import importlib
import sys
import types

from .version import __version__

#: public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    "ConceptStore": ".store", "CxqlError": ".errors", "Result": ".engine", "Session": ".engine",
    "Threshold": ".store", "connect": ".engine", "parse": ".parser", "record": ".record",
    "record_tokens": ".record_tokens",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cxql' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


class _Package(types.ModuleType):
    """Keeps ``cxql.record`` the function after the submodule ``cxql.record`` is imported.

    The import system sets a submodule as an attribute of its package; the eager
    ``from .record import record`` this file used to run overwrote it with the
    function, and this keeps that meaning now that the function is loaded lazily.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
