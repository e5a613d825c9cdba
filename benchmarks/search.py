"""Benchmark: SEARCH over whole layers, batched engine against the per-unit reference.

Usage (from the repository root)::

    python benchmarks/search.py                       # 1,600 images = 20M positions, CPU
    python benchmarks/search.py --images 22300 --device cuda --chunk-mb 1024   # ADE20k-sized

It builds a Broden-like store in memory: images of 112x112 positions and
about 1,100 concepts with realistic frequencies (Zipf within each category:
many rare objects and parts, a few colours and scenes that cover much;
scenes and textures are image-level). Segmentations are drawn per image on a
28x28 grid of Voronoi regions (object, part, material, colour) and upsampled
4x, so an image has tens of distinct signatures, as real probe data does;
the store is assembled straight from signatures (no dense [N, K] masks).

Units: each prefers a random formula (a concept, ``a OR b``, ``a AND b`` or
``a AND NOT b`` over concepts of useful size) and fires on about 0.5 % of
positions, mostly inside its formula, the rest spread as noise. A unit's IoU
with any formula depends only on its signature histogram (how many of its
positions carry each signature), so the benchmark draws those histograms
directly, per signature, and attaches them as the layer.

For LENGTH 3 and 10 at BEAM 10 it prints seconds and units per second for
SEARCH over the first 64 and then all units, then runs the plain per-unit
reference on a few units in the same process, checks that its results equal
the batched ones, and prints the speed ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import cxql
from cxql.store.layer import Layer

GRID, UPSAMPLE = 28, 4          # 28x28 label grid, upsampled to 112x112 positions
COLORS = ["black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow"]
OBJECTS = ["wall", "floor", "sky", "ceiling", "tree", "building", "person", "road", "grass", "table", "window",
           "car", "plant", "chair", "cabinet", "door", "mountain", "water", "bed", "sidewalk"]
SCENES = ["street", "bedroom", "living_room", "bathroom", "kitchen", "skyscraper", "highway", "conference_room"]
# category: (share of the concepts, Zipf exponent, image-level)
CATEGORIES = {"scene": (0.27, 1.1, True), "texture": (0.043, 0.8, True), "object": (0.51, 1.2, False),
              "part": (0.136, 1.2, False), "material": (0.03, 1.0, False), "color": (None, 0.6, False)}


def concept_layout(n_concepts: int) -> dict[str, int]:
    """Concepts per category, about ``n_concepts`` in all (11 colours)."""
    rest = n_concepts - len(COLORS)
    sizes = {c: max(2, round(share * rest / 0.989)) for c, (share, _, _) in CATEGORIES.items() if share}
    sizes["object"] += n_concepts - len(COLORS) - sum(sizes.values())
    return {**sizes, "color": len(COLORS)}


def concept_names(layout: dict[str, int]) -> tuple[list[str], list[str]]:
    known = {"color": COLORS, "object": OBJECTS, "scene": SCENES}
    names, cats = [], []
    for cat, n in layout.items():
        given = known.get(cat, [])
        names += [given[i] if i < len(given) else f"{cat}{i}" for i in range(n)]
        cats += [cat] * n
    return names, cats


def zipf(rng: np.random.Generator, n: int, exponent: float, size) -> np.ndarray:
    """Labels 1..n with P(i) proportional to i**-exponent."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return rng.choice(n, size=size, p=p / p.sum()) + 1


def voronoi(rng: np.random.Generator, n_images: int, regions: int) -> np.ndarray:
    """int [n_images, GRID*GRID]: each cell's region (nearest of ``regions`` random seeds)."""
    yx = np.stack(np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij"), -1).reshape(1, -1, 1, 2)
    seeds = rng.uniform(0, GRID, size=(n_images, 1, regions, 2))
    return np.argmin(((yx - seeds) ** 2).sum(-1), axis=2)


def segment_labels(rng, layout, n: int) -> dict[str, np.ndarray]:
    """Per-cell labels [n, GRID*GRID] (0 = none) of each category for n images."""
    labels = {}
    for cat, (_, exponent, image_level) in CATEGORIES.items():
        k = layout[cat]
        if image_level:
            lab = zipf(rng, k, exponent, n) * (rng.random(n) < (1.0 if cat == "scene" else 0.25))
            labels[cat] = np.repeat(lab[:, None], GRID * GRID, axis=1)
            continue
        regions = {"object": 10, "part": 6, "material": 4, "color": 6}[cat]
        which = voronoi(rng, n, regions)
        lab = zipf(rng, k, exponent, (n, regions))
        lab *= rng.random((n, regions)) < {"object": 0.9, "part": 0.3, "material": 0.5, "color": 1.0}[cat]
        labels[cat] = np.take_along_axis(lab, which, axis=1)
    labels["part"] *= labels["object"] > 0               # parts only inside labelled objects
    return labels


def build_store(n_images: int, n_concepts: int, seed: int, batch: int = 512) -> cxql.ConceptStore:
    """A Broden-like store of n_images x 112 x 112 positions, assembled from signatures."""
    rng = np.random.default_rng(seed)
    layout = concept_layout(n_concepts)
    radix = np.cumprod([1] + [layout[c] + 1 for c in layout][::-1])[::-1]       # mixed-radix cell keys
    keys = np.empty((n_images, GRID * GRID), dtype=np.int64)
    for a in range(0, n_images, batch):
        labels = segment_labels(rng, layout, min(batch, n_images - a))
        keys[a:a + batch] = sum(labels[c].astype(np.int64) * int(r) for c, r in zip(layout, radix[1:]))
    uniq, inverse, cells = np.unique(keys, return_inverse=True, return_counts=True)
    offsets = np.cumsum([0] + [layout[c] for c in layout])
    bits = np.zeros((len(uniq), (offsets[-1] + 7) // 8), dtype=np.uint8)
    rows = np.arange(len(uniq))
    for i, (cat, r) in enumerate(zip(layout, radix[1:])):
        label = (uniq // r) % (layout[cat] + 1)
        has = label > 0
        idx = offsets[i] + label[has] - 1
        bits[rows[has], idx >> 3] |= (1 << (idx & 7)).astype(np.uint8)
    grid = inverse.reshape(n_images, GRID, GRID).astype(np.uint32)
    position_sig = np.repeat(np.repeat(grid, UPSAMPLE, axis=1), UPSAMPLE, axis=2).reshape(-1)
    names, cats = concept_names(layout)
    return cxql.ConceptStore.from_signatures(bits, cells * UPSAMPLE ** 2, position_sig, names, cats, None,
                                             mask_shape=(GRID * UPSAMPLE,) * 2)


def unit_histograms(store: cxql.ConceptStore, n_units: int, seed: int, rate: float = 0.005):
    """CSR (indptr, signature ids, counts) of synthetic units, each firing on ~rate of all positions."""
    rng = np.random.default_rng(seed + 1)
    counts = np.asarray(store.signature_counts, dtype=np.int64)
    bits, n = store.signature_bits, store.n_positions
    sizes = np.array([c.count for c in store.concepts])
    useful = np.flatnonzero((sizes > 0.0005 * n) & (sizes < 0.1 * n))
    column = lambda k: ((bits[:, k >> 3] >> (k & 7)) & 1).astype(bool)     # noqa: E731
    parts = []
    for _ in range(n_units):
        a, b = (column(int(k)) for k in rng.choice(useful, 2))
        kind = rng.integers(4)
        hit = (a, a | b, a & b, a & ~b)[kind]
        p_hit = min(0.95, 0.7 * rate * n / max(1, int(counts[hit].sum())))
        fires = np.zeros(len(counts), dtype=np.int64)
        fires[hit] = rng.binomial(counts[hit], p_hit)
        noise = rng.choice(len(counts), size=max(1, len(counts) // 200), replace=False)
        rest = rate * n - p_hit * counts[hit].sum()                       # the rest of the mask: noise
        fires[noise] += rng.binomial(counts[noise] - fires[noise], min(1.0, rest / max(1, counts[noise].sum())))
        ids = np.flatnonzero(fires)
        parts.append((ids, fires[ids]))
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in parts])])
    return indptr, np.concatenate([i for i, _ in parts]), np.concatenate([c for _, c in parts])


def attach(store: cxql.ConceptStore, hists) -> None:
    """Attach histograms as a layer (benchmark shortcut: no position masks are kept)."""
    meta = {"units": len(hists[0]) - 1, "encoding": "positions", "threshold": {"kind": "masks", "value": 0.0},
            "activations": False}
    arrays = {"hist_indptr": hists[0], "hist_sig": hists[1], "hist_count": hists[2]}
    store.layers["bench"] = Layer("bench", meta, arrays, store.n_positions)
    store.manifest["layers"]["bench"] = meta


def timed_search(session, units: list[int], length: int, beam: int, engine: str):
    session.settings["engine"] = engine
    if session.backend.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = session.searcher().search(session.search_context(), units, length=length, beam=beam, distinct=False)
    if session.backend.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def describe(store: cxql.ConceptStore, hists, seconds: float) -> None:
    backend_nnz = sum(int(np.unpackbits(store.signature_bits[a:a + 65536]).sum())
                      for a in range(0, store.n_signatures, 65536))
    sizes = np.diff(np.concatenate([[0], np.cumsum(hists[2])])[hists[0]])
    print(f"store: {store.n_samples:,} images, {store.n_positions:,} positions, {store.n_signatures:,} signatures, "
          f"{len(store.concepts):,} concepts, {backend_nnz / max(1, store.n_signatures):.1f} concepts per signature "
          f"(built in {seconds:.1f} s)")
    print(f"units: {len(sizes)}, mask {sizes.mean() / store.n_positions:.3%} of positions on average, "
          f"{np.diff(hists[0]).mean():,.0f} signatures per unit")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1600, help="probe images of 112x112 positions")
    p.add_argument("--concepts", type=int, default=1100)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--length", type=int, nargs="+", default=[3, 10])
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk-mb", type=int, default=64, help="SET chunk_mb (memory per product block)")
    p.add_argument("--plain-units", type=int, default=3, help="units run through the per-unit reference")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    start = time.perf_counter()
    store = build_store(args.images, args.concepts, args.seed)
    hists = unit_histograms(store, args.units, args.seed)
    attach(store, hists)
    describe(store, hists, time.perf_counter() - start)
    session = cxql.connect(store)
    session.execute(f"SET device = '{args.device}'; SET chunk_mb = {args.chunk_mb}")
    print(f"device: {session.backend.device} ({torch.get_num_threads()} CPU threads), chunk_mb = {args.chunk_mb}")
    for length in args.length:
        for n in sorted({min(64, args.units), args.units}):
            seconds, results = timed_search(session, list(range(n)), length, args.beam, "batched")
            print(f"LENGTH {length:>2} BEAM {args.beam}: {n:>4} units batched in {seconds:7.2f} s "
                  f"= {n / seconds:8.1f} units/s")
        few = list(range(args.plain_units))
        plain_s, plain = timed_search(session, few, length, args.beam, "plain")
        same = plain == results[:len(few)]
        ratio = (plain_s / len(few)) / (seconds / n)
        print(f"LENGTH {length:>2} BEAM {args.beam}: plain reference {plain_s / len(few):.2f} s per unit "
              f"({len(few)} units) -> batched is {ratio:,.0f}x faster per unit; results equal: {same}")
        if not same:
            raise SystemExit("batched and plain results differ")


if __name__ == "__main__":
    main()
