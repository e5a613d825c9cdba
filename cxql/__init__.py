"""cxql: explain neurons with logical formulas over human concepts.

The public API (README.md, "Python API")::

    store = cxql.ConceptStore.from_masks(masks, names, categories)
    store.add_unit_masks("layer4", unit_masks)        # or store.add_units(layer, activations)
    session = cxql.connect(store)                      # or a store path
    session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows
    cxql.parse("(water OR river) AND NOT blue")
    cxql.record(model, "layer4", store)                # a torch layer over the store's images

Importing cxql does not import torch: the engine loads it when a statement
first runs, and ``cxql.record`` when it first runs a model. So ``cxql --help``
and ``cxql --version`` start fast.
"""

from .engine import Result, Session, connect
from .errors import CxqlError
from .parser import parse
from .record import record
from .store import ConceptStore, Threshold
from .version import __version__

__all__ = ["ConceptStore", "CxqlError", "Result", "Session", "Threshold", "connect", "parse", "record",
           "__version__"]

