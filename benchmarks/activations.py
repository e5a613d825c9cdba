"""Benchmark: a layer that keeps its activations (issue 14): store size, EVAL and SEARCH with AUROC.

Usage (from the repository root)::

    python benchmarks/activations.py                  # 1,600 images of 112x112 = 20M positions, 512 units 7x7
    python benchmarks/activations.py --images 200 --units 64      # a quick run

It builds a store of ``--images`` images at 112x112 positions whose concepts
come from a 14x14 grid of random labels (one concept per cell, so few
signatures), attaches a layer of ``--units`` units with raw maps
``--raw`` x ``--raw`` (float32, as networks give them) twice, with and
without its activations, saves the store and prints each layer's bytes on
disk. Then it times, on the saved (memory-mapped) store:

* EVAL of one formula on a few units, with the ranked columns (auroc, p_value,
  auprc: one sort of the N position values per unit) and on the masks-only layer;
* SEARCH LENGTH 3 BEAM 5 on a few units under ``SET metric = 'auroc'`` and 'iou'.

Measured (1,600 images = 20,070,400 positions, 512 units 7x7, 24 concepts; 2 shared CPU cores)::

    layer with activations: 185.4 MiB (activations 153.1 MiB, masks 32.0 MiB); masks only: 32.2 MiB
    EVAL on 4 units: masks-only 0.00 s; with auroc, p_value, auprc 23.1 s (5.8 s per unit: one sort)
    SEARCH LENGTH 3 BEAM 5, 2 units: by iou 0.13 s; by auroc 13.0 s (6.5 s per unit, mostly ranking)

Activations are kept as float32 (float64 input stays float64): exact and
order-preserving, so SET threshold re-thresholds to the same masks and AUROC
ranks the same values the masks compare. float16 would halve the bytes but
merge values (a unit's order and its ties change) and move thresholds by up
to 2**-11 relative, so masks under SET threshold would no longer be those
of the network; it is not offered.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time

import numpy as np

import cxql

SIDE, GRID = 112, 14


def build(images: int, concepts: int, seed: int) -> cxql.ConceptStore:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, concepts, size=(images, GRID, GRID), dtype=np.int32)
    up = SIDE // GRID
    position_sig = np.repeat(np.repeat(labels, up, axis=1), up, axis=2).reshape(-1)
    bits = np.packbits(np.eye(concepts, dtype=bool), axis=1, bitorder="little")
    counts = np.bincount(position_sig, minlength=concepts).astype(np.int64)
    names = [f"c{i}" for i in range(concepts)]
    return cxql.ConceptStore.from_signatures(bits, counts, position_sig, names, ["object"] * concepts, None,
                                             mask_shape=(SIDE, SIDE))


def layer_bytes(store: cxql.ConceptStore, layer: str) -> dict[str, int]:
    """Bytes of each array of the layer (its .npy files on disk, less their 128-byte headers)."""
    return {name: int(a.nbytes) for name, a in sorted(store.layers[layer].arrays.items())}


def timed(session: cxql.Session, query: str) -> float:
    start = time.perf_counter()
    session.execute(query)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1600)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--raw", type=int, default=7)
    p.add_argument("--concepts", type=int, default=24)
    p.add_argument("--eval-units", type=int, default=4)
    p.add_argument("--search-units", type=int, default=2)
    args = p.parse_args()

    store = build(args.images, args.concepts, 0)
    n = store.n_positions
    print(f"store: {args.images} images x {SIDE}x{SIDE} = {n:,} positions, {args.concepts} concepts")
    acts = np.random.default_rng(1).gamma(2.0, size=(args.images, args.units, args.raw, args.raw)).astype(np.float32)
    acts[acts < 1.0] = 0  # ReLU-like: many zeros, many ties
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench"
        store.save(path)
        store = cxql.ConceptStore.open(path)
        for name, keep in (("kept", True), ("masks", False)):
            start = time.perf_counter()
            store.add_units(name, acts, keep_activations=keep)
            sizes = layer_bytes(store, name)
            print(f"layer {name!r} ({args.units} units, raw {args.raw}x{args.raw}, activations "
                  f"{'kept' if keep else 'not kept'}): {sum(sizes.values()) / 2**20:,.1f} MiB "
                  f"(added in {time.perf_counter() - start:.1f} s): "
                  + ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in sizes.items()))
        session = cxql.connect(path)
        k = args.eval_units
        for layer in ("masks", "kept"):
            session.execute(f"SET layer = '{layer}'")
            timed(session, "EVAL c1 ON unit 0")  # warm-up: torch, the backend
            seconds = timed(session, f"EVAL (c1 OR c2) AND NOT c3 ON unit 0..{k - 1}")
            print(f"EVAL on {k} units, layer {layer!r}: {seconds:.2f} s ({seconds / k:.2f} s per unit"
                  + (", with auroc, p_value, auprc)" if layer == "kept" else ")"))
        k = args.search_units
        session.execute("SET layer = 'kept'")
        for metric in ("iou", "auroc"):
            session.execute(f"SET metric = '{metric}'")
            seconds = timed(session, f"SEARCH unit 0..{k - 1} LENGTH 3 BEAM 5")
            print(f"SEARCH LENGTH 3 BEAM 5 of {k} units by {metric}: {seconds:.2f} s ({seconds / k:.2f} s per unit)")


if __name__ == "__main__":
    main()
