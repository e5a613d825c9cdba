"""How long opening a store takes (it must stay header-only): python benchmarks/store_open.py [STORE ...]

Prints the median of 50 opens per store. Opening checks every array's header
and size and maps it; it reads no data except the last entry of pointer
arrays (and recomputes concept counts when the signature table is under
256 KB). Run it against the code before a change to compare.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cxql
from cxql.resources import demo_store_path


def median_open_ms(path: Path, repeats: int = 50) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cxql.ConceptStore.open(path)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def synthetic(root: Path) -> Path:
    """200k positions, 300 concepts, three layers of 512 units: a mid-sized store."""
    rng = np.random.default_rng(0)
    masks = rng.random((200_000, 300)) < 0.02
    store = cxql.ConceptStore.from_masks(masks, [f"c{i}" for i in range(300)], mask_shape=(20, 20))
    for name in ("a", "b", "c"):
        store.add_units(name, rng.normal(size=(500, 512)).astype(np.float32), threshold=2.5)
    return store.save(root / "synthetic").path


def main(paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stores = [Path(p) for p in paths] or [demo_store_path(), synthetic(Path(tmp))]
        for path in stores:
            print(f"{path}: {median_open_ms(path):.2f} ms per open")


if __name__ == "__main__":
    main(sys.argv[1:])
