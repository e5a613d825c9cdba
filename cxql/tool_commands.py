"""``cxql units add`` and ``cxql store info``: the store tools that belong to no builder.

Registered in :data:`cxql.subcommands.BUILTIN`; they get their progress
display and warnings from the front end (:class:`cxql.subcommands.Tools`).
"""

from __future__ import annotations

import argparse
import sys

from .engine import connect
from .errors import DataError, UsageError
from .progress import counter
from .render import FORMATS, render
from .resources import locate_store
from .store import ConceptStore, Threshold
from .store.activation_files import load_activations
from .store.units import check_activations, check_given_thresholds
from .store.validate_input import check_new_layer
from .subcommands import Command, Tools


def _units_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("layer")
    p.add_argument("activations")
    p.add_argument("--threshold", help="absolute value (0.5 or value:0.5), quantile:LEVEL, a band "
                                       "(quantile:A..B, value:A..B) or cluster:K/N (default: the store kind's)")
    p.add_argument("--thresholds", metavar="FILE.npy", help="one threshold per unit, as data ([units] numbers)")
    p.add_argument("--masks-only", "--no-keep", dest="no_keep", action="store_true",
                   help="keep only the masks, not the activations (no SET threshold, AUROC or p-values)")
    p.add_argument("--replace", action="store_true", help="replace the layer if the store has one of that name")


def load_thresholds(path: str) -> object:
    """A thresholds file (.npy, or whatever the activation loader reads), refused by name when unreadable."""
    return load_activations(path)


def units_add(args: argparse.Namespace, tools: Tools) -> int:
    store = ConceptStore.open(locate_store(args.store, writes=True))
    check_new_layer(store.layers, args.layer, args.replace)
    # "0.5" is absolute, "quantile:0.99" a level; checked before a big file is read
    from .store.sparse_units import add_sparse_units, is_sparse_npz

    if is_sparse_npz(args.activations):  # scipy CSR [tokens, units], streamed: memory bounded by the non-zeros
        layer = add_sparse_units(store, args.layer, args.activations, args.threshold, replace=args.replace,
                                 on_warning=tools.warn, progress=tools.progress())  # its errors name the file
        print(f"added {layer.describe()}", file=sys.stderr)
        return 0
    threshold = Threshold.parse(args.threshold, store.default_threshold())
    if args.thresholds is not None:
        if args.threshold is not None:
            raise UsageError("--threshold and --thresholds do not combine: give one rule or one file")
        given = load_thresholds(args.thresholds)
    acts = load_activations(args.activations)
    rows = store.n_positions if store.kind == "tokens" else store.n_samples  # token stores: one row per token
    if store.kind == "tokens" and acts.ndim and acts.shape[0] != rows:
        raise DataError(f"{args.activations}: has {acts.shape[0]:,} rows but the token store has {rows:,} tokens")
    check_activations(acts, rows, args.activations)
    if args.thresholds is not None:
        threshold = check_given_thresholds(given, acts.shape[1], args.thresholds)
    progress = tools.progress()
    progress.start(acts.shape[0] if acts.ndim else 0, f"thresholding {args.layer}")
    try:
        layer = store.add_units(args.layer, acts, threshold, keep_activations=not args.no_keep,
                                progress=counter(progress), replace=args.replace, on_warning=tools.warn)
    except DataError as exc:  # bad values (NaN, inf): say which file they are in
        exc.message = f"{args.activations}: {exc.message}"
        raise
    finally:
        progress.finish()
    print(f"added {layer.describe()}", file=sys.stderr)
    return 0


def _store_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store directory, or demo: the bundled demo store")
    p.add_argument("--format", choices=FORMATS, default="table")


def store_info(args: argparse.Namespace, tools: Tools) -> int:
    session = connect(locate_store(args.store))
    render([session.execute("SHOW store")], args.format, sys.stdout)
    return 0


COMMANDS = (
    Command(("store", "info"), "what a store holds", _store_info_arguments, store_info),
    Command(("units", "add"), "attach a layer from saved activations (.npy or .pt)", _units_add_arguments,
            units_add, description="Activations are [samples, units, h, w] (upsampled to the mask shape) "
                                   "or [samples, units], in the store's sample order."),
)
