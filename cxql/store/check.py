"""``cxql store check STORE``: prove a store intact, reading every byte.

Opening a store checks only headers and sizes (it must stay instant); this
reads everything: each array's CRC-32 against the manifest, and the numbers
the query engine trusts against the arrays they summarise: positions per
signature against the ids, each concept's count against the signatures,
pointer arrays monotone, signature ids in range. It reports every fault
found, each naming its file; the command exits 0 when there is none and 1
otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..resources import locate_store
from ..subcommands import Command, Tools
from .concept_store import ConceptStore
from .commit import has_leftovers
from .manifest import read_manifest
from .signatures import concept_counts
from .validate import file_crc32

CHUNK = 1 << 22


def check_store(path: str | Path) -> tuple[list[str], list[str]]:
    """(faults, notes) of the store at ``path``: checksums first, then whether it opens, then its numbers."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except StoreError as exc:
        return [str(exc)], []
    faults, notes = [], []
    entries = list(manifest["arrays"].values())
    for meta in manifest["layers"].values():
        entries += list(meta["arrays"].values())
    unchecked = 0
    for entry in entries:
        file = path / entry["file"]
        if "crc32" not in entry:
            unchecked += 1
        elif os.path.isfile(file) and not os.path.islink(file):
            got = file_crc32(file)
            if got != entry["crc32"]:
                faults.append(f"{file}: checksum {got:08x}, the manifest says {entry['crc32']:08x}; "
                              "the file has changed since it was written")
    if has_leftovers(path, manifest):
        notes.append("the store holds files a killed writer left; the next change to the store removes them")
    if unchecked:
        notes.append(f"{unchecked} files have no checksum (format version {manifest['version']}); "
                     "saving the store again adds them")
    try:
        store = ConceptStore.open(path)
    except StoreError as exc:
        return faults + [str(exc)], notes
    return faults + _check_contents(store, path), notes


def _check_contents(store: ConceptStore, path: Path) -> list[str]:
    """The engine's numbers recomputed from the arrays they summarise."""
    faults = []
    name = {key: path / e["file"] for key, e in store.manifest["arrays"].items()}
    s = store.n_signatures
    ids = store.position_signatures
    seen = np.zeros(s, dtype=np.int64)
    for start in range(0, store.n_positions, CHUNK):
        chunk = np.asarray(ids[start:start + CHUNK], dtype=np.int64)
        if chunk.size and (chunk.min() < 0 or chunk.max() >= s):
            return [f"{name.get('position_sig', name.get('position_local', path))}: signature ids outside 0..{s - 1}"]
        seen += np.bincount(chunk, minlength=s)
    if not np.array_equal(seen, np.asarray(store.signature_counts, dtype=np.int64)):
        faults.append(f"{name.get('sig_counts', path)}: positions per signature disagree with the ids")
    counts = concept_counts(np.asarray(store.signature_bits), seen, len(store.concepts))
    stored = np.asarray([c.count for c in store.concepts], dtype=np.int64)
    if not np.array_equal(counts, stored):
        bad = int(np.flatnonzero(counts != stored)[0])
        where = name.get("concept_counts", path / "manifest.json")
        faults.append(f"{where}: concept {store.concepts[bad].qualified!r} has count {stored[bad]}, "
                      f"the signatures give {counts[bad]}")
    for layer_name, layer in store.layers.items():
        files = store.manifest["layers"][layer_name]["arrays"]
        for key, bound in (("hist_indptr", None), ("mask_indptr", None)):
            ptr = layer.arrays.get(key)
            if ptr is not None and np.any(np.diff(np.asarray(ptr)) < 0):
                faults.append(f"{path / files[key]['file']}: not monotone")
        hist = np.asarray(layer.arrays["hist_sig"])
        if hist.size and (hist.min() < 0 or hist.max() >= s):
            faults.append(f"{path / files['hist_sig']['file']}: signature ids outside 0..{s - 1}")
        try:
            layer.histograms  # noqa: B018 - the checks a query runs first (cxql.store.layer_check)
        except StoreError as exc:
            faults.append(str(exc))
        pos = layer.arrays.get("mask_positions")
        if pos is not None and len(pos) and int(np.max(pos)) >= store.n_positions:
            faults.append(f"{path / files['mask_positions']['file']}: positions beyond {store.n_positions - 1}")
    return faults


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store directory, or demo: the bundled demo store")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    faults, notes = check_store(locate_store(args.store))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if faults:
        raise StoreError("\n".join(faults))
    print(f"{args.store}: intact", file=sys.stderr)
    return 0


#: ``cxql store check STORE`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("store", "check"), "verify every array of a store (checksums and counts)", _arguments, _command,
                  description=__doc__.split("\n\n")[0])
