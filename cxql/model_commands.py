"""``cxql model attach``: give a store on disk the model that ABLATE and the class analyses re-run.

The store keeps a ``module:factory`` reference and a copy of the weights
(arrays, no pickle); the change is one atomic commit under the store's lock
(:meth:`cxql.store.ConceptStore.set_store_arrays`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import UsageError
from .resources import locate_store
from .store import ConceptStore
from .store.activation_files import load_activations
from .subcommands import Command, Tools


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="a function returning the bare architecture; it must be importable wherever the store "
                        "is opened (a package module, e.g. cxql.models.digits:untrained)")
    p.add_argument("--weights", metavar="FILE.npz|FILE.pt",
                   help="the trained state dict (default: whatever the factory returns)")
    p.add_argument("--inputs", required=True, metavar="X.npy", help="the model's input for every sample, in store order")
    p.add_argument("--targets", required=True, metavar="Y.npy", help="the true class index of every sample")
    p.add_argument("--classes", required=True, help="class names, comma-separated, in output order")
    p.add_argument("--layer", action="append", default=[], metavar="LAYER=MODULE",
                   help="the module whose output a store layer recorded (repeat; default: LAYER=LAYER "
                        "for every store layer the model has a module of that name)")
    p.add_argument("--output", metavar="MODULE", help="the Linear module from the last layer to the classes")


def layer_modules(pairs: list[str], store: ConceptStore, model) -> dict[str, str]:
    """``LAYER=MODULE`` arguments -> {layer: module}; none given: the store layers named like a module."""
    if not pairs:
        names = dict(model.named_modules())
        return {layer: layer for layer in store.layers if layer in names}
    out = {}
    for pair in pairs:
        layer, sep, module = pair.partition("=")
        if not sep or not layer or not module:
            raise UsageError(f"--layer must be LAYER=MODULE, got {pair!r}")
        out[layer] = module
    return out


def _command(args: argparse.Namespace, tools: Tools) -> int:
    from . import model as cm
    from .record import load_factory

    store = ConceptStore.open(locate_store(args.store, writes=True))
    model = load_factory(args.model)
    if args.weights:
        cm.load_weights(model, args.weights)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    modules = layer_modules(args.layer, store, model)
    targets = np.asarray(load_activations(args.targets))
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise UsageError(f"--targets {args.targets}: need one integer class index per sample, got "
                         f"{targets.dtype} of shape {targets.shape}")
    cm.attach(store, args.model, model, load_activations(args.inputs), targets, classes, modules, args.output)
    print(f"attached {args.model} to {store.path} ({len(classes)} classes, layers: "
          f"{', '.join(f'{k}={v}' for k, v in modules.items()) or 'none'})", file=sys.stderr)
    return 0


#: ``cxql model attach`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("model", "attach"), "attach a torch model (factory + weights) to a store for ABLATE and "
                  "class contributions", _arguments, _command, description=__doc__.split("\n\n")[0])
