"""Benchmark: a Broden-layout store at scale, and what it means for ADE20k.

Why: real Broden's ADE20k part (about 22k images, 280 million positions at
112x112, about 1,105 concepts) must build and query on a 24 GB machine, where
naive bit-packed masks would take N * K / 8 = 39 GB. This script measures the
signature layout on generated data with ADE20k-like label statistics
(examples/broden_synthetic.py) and extrapolates:

1. writes a Broden-layout dataset of ``--images`` images (default 2,000;
   generation runs in worker processes and is not timed);
2. builds the store with ``build_broden`` and reports images/s, bytes per
   position (all arrays on disk) and peak memory (``ru_maxrss``);
3. attaches ``--units`` units (default 64) of synthetic [images, units, 7, 7]
   activations, each the pooled mask of a random 1-3 concept formula plus
   noise, and times ``SEARCH unit * LENGTH 3 BEAM 10``;
4. extrapolates to ADE20k: signatures grow linearly with images (image-level
   scene labels make nearly every signature image-specific; the script checks
   this by comparing the first and second half), so size, build time, peak
   memory and SEARCH time are scaled by the measured per-image figures.

Run by hand (a few minutes on 2 cores, under 2 GB):
``python benchmarks/broden_build.py [--images 2000] [--units 64] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import cxql  # noqa: E402
from broden_synthetic import write_dataset  # noqa: E402
from cxql.store import signatures as sig  # noqa: E402
from cxql.store.broden import build_broden  # noqa: E402

ADE_IMAGES = 22_210
ADE_CONCEPTS = 1_105
ADE_SIDE = 112


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.npy") if "layers" not in p.parts)


def builder_bytes_per_signature(width: int, n: int = 100_000) -> float:
    """Resident bytes one signature costs in SignatureBuilder (its dict key, row and count)."""
    rng = np.random.default_rng(1)
    builder = sig.SignatureBuilder(width * 8)
    before = rss_mb()
    for start in range(0, n, 10_000):
        builder.add(rng.integers(0, 256, (10_000, width), dtype=np.uint8))
    return (rss_mb() - before) * 2**20 / n


def synthetic_activations(store: cxql.ConceptStore, n_units: int, seed: int = 0, side: int = 7) -> np.ndarray:
    """float32 [images, units, side, side]: pooled masks of random small formulas, plus noise."""
    rng = np.random.default_rng(seed)
    k = len(store.concepts)
    counts = np.array([c.count for c in store.concepts])
    common = np.flatnonzero(counts > store.n_positions * 5e-3)  # big enough to survive 7x7 pooling
    table = sig.unpack_rows(np.asarray(store.signature_bits), k)
    ids = np.asarray(store.position_signatures, dtype=np.int64)
    h, w = store.mask_shape
    acts = np.empty((store.n_samples, n_units, side, side), dtype=np.float32)
    for u in range(n_units):
        a, b, c = rng.choice(common, 3, replace=False)
        kind = u % 3
        f = table[:, a] if kind == 0 else (table[:, a] | table[:, b]) if kind == 1 else (table[:, a] & ~table[:, c])
        pooled = f[ids].reshape(store.n_samples, side, h // side, side, w // side).sum(axis=(2, 4), dtype=np.int32)
        acts[:, u] = pooled / (h * w // side // side) + rng.normal(0, 0.15, pooled.shape)
    return acts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device(s) for SEARCH: cpu, cuda or cpu,cuda")
    parser.add_argument("--keep", help="keep the dataset and store in this directory")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cxql-broden-bench-"))
    try:
        run(work, args.images, args.units, args.workers, args.device)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, n_images: int, n_units: int, workers: int, devices: str = "cpu") -> None:
    t = time.perf_counter()
    root = write_dataset(work / "broden", n_images, workers=workers)
    print(f"generated {n_images:,} images in {time.perf_counter() - t:.1f} s")
    base_rss, base_peak = rss_mb(), peak_mb()
    t = time.perf_counter()
    store = build_broden(root, work / "store")
    build_s = time.perf_counter() - t
    build_peak = peak_mb()
    n, s, k = store.n_positions, store.n_signatures, len(store.concepts)
    half = (n_images // 2) * ADE_SIDE * ADE_SIDE
    s_half = int(store.position_signatures[:half].max()) + 1
    on_disk = disk_bytes(work / "store")
    print(f"\nbuild: {n_images / build_s:,.0f} images/s ({build_s:.1f} s), {n:,} positions, {k:,} concepts, "
          f"{s:,} signatures ({s / n_images:.1f} per image; {s_half:,} after half the images)")
    layout = id_layout(work / "store")
    print(f"size:  {on_disk / 2**20:,.1f} MiB on disk = {on_disk / n:.3f} bytes/position "
          f"(ids, {layout['name']}: {layout['bytes'] / n:.3f} B; signature table {s * sig.packed_width(k) / n:.3f} B; "
          f"naive bit-packing {k / 8:.0f} B)")
    print(f"peak memory: {build_peak:,.0f} MiB (before the build: {base_rss:,.0f} MiB resident, "
          f"peak {base_peak:,.0f} MiB)")

    acts = synthetic_activations(store, n_units)
    t = time.perf_counter()
    store.add_units("synthetic", acts)
    add_s = time.perf_counter() - t
    print(f"\nadd_units: {add_s:.1f} s for {n_units} units")
    search_s = {}
    for device in devices.split(","):
        session = cxql.connect(store)
        session.execute(f"SET device = '{device}'")
        session.execute("SEARCH unit 0 LENGTH 1")  # warm-up: the signature table moves to the device once
        t = time.perf_counter()
        rows = session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows
        search_s[device] = time.perf_counter() - t
        print(f"SEARCH unit * LENGTH 3 BEAM 10 on {device}: {search_s[device]:.1f} s "
              f"({search_s[device] / n_units:.3f} s/unit), peak memory {peak_mb():,.0f} MiB")
    for r in rows[:3]:
        print(f"  unit {r['unit']}: {r['formula']}  IoU {r['iou']:.3f}")

    per_sig = builder_bytes_per_signature(sig.packed_width(ADE_CONCEPTS + 92))  # labels are numbered to 1,197
    extrapolate(n_images, n, s, s_half, k, build_s, build_peak, per_sig, {d: v / n_units for d, v in search_s.items()},
                layout)


def id_layout(store_dir: Path) -> dict:
    """How the built store keeps each position's signature id, and what that costs."""
    files = {f.stem: f for f in store_dir.glob("*.npy")}
    if "position_local" in files:
        local = np.load(files["position_local"], mmap_mode="r")
        table = np.load(files["sample_sig_table"], mmap_mode="r")
        return {"name": f"per sample, {local.dtype} local + tables", "local": local.dtype.itemsize,
                "table": len(table), "bytes": sum(files[key].stat().st_size for key in
                                                  ("position_local", "sample_sig_indptr", "sample_sig_table"))}
    plain = np.load(files["position_sig"], mmap_mode="r")
    return {"name": f"plain {plain.dtype}", "bytes": files["position_sig"].stat().st_size}


def extrapolate(n_images: int, n: int, s: int, s_half: int, k: int, build_s: float, build_peak: float,
                per_sig: float, search_per_unit: dict[str, float], layout: dict) -> None:
    growth = (s - s_half) / max(n_images - n_images // 2, 1)
    s_ade = int(s + growth * (ADE_IMAGES - n_images))
    n_ade = ADE_IMAGES * ADE_SIDE * ADE_SIDE
    width = sig.packed_width(ADE_CONCEPTS)
    if "local" in layout:  # per-sample ids: a local index per position, a small table per image
        ids_total = n_ade * layout["local"] + ADE_IMAGES * (8 + 4 * layout["table"] / n_images)
    else:
        ids_total = n_ade * (4 if s_ade > 65_536 else 2)
    ids_b = ids_total / n_ade
    total = ids_total + s_ade * (width + 4)
    print(f"\nADE20k extrapolation ({ADE_IMAGES:,} images at {ADE_SIDE}x{ADE_SIDE} = {n_ade / 1e6:,.0f} M positions, "
          f"{ADE_CONCEPTS:,} concepts; {growth:.1f} new signatures per image):")
    print(f"  signatures {s_ade / 1e6:,.2f} M; store {total / 2**30:,.2f} GiB = {total / n_ade:.2f} bytes/position "
          f"(ids {ids_total / 2**30:.2f} GiB + table {s_ade * (width + 4) / 2**30:.2f} GiB) "
          f"vs naive {n_ade * ADE_CONCEPTS / 8 / 2**30:,.1f} GiB")
    grow = (s_ade - s) * (per_sig + 2 * sig.packed_width(ADE_CONCEPTS + 92)) / 2**20  # builder + table copies
    print(f"  build {ADE_IMAGES / (n_images / build_s) / 60:,.1f} min; peak memory about "
          f"{(build_peak + grow) / 1024:,.1f} GiB ({per_sig:.0f} B per signature in the builder, measured), "
          f"plus {n_ade * 4 / 2**30:.2f} GiB of file-backed, reclaimable memmap pages while building")
    for device, seconds in search_per_unit.items():
        per_unit = seconds * (s_ade * ADE_CONCEPTS) / (s * k)
        print(f"  SEARCH LENGTH 3 BEAM 10 on {device}: about {per_unit:,.2f} s per unit "
              f"({per_unit * 512 / 60:,.1f} min for 512 units), scaled by signatures x concepts")


if __name__ == "__main__":
    main()
