"""Several processes on one store: writers keep each other's layers, readers see whole generations."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest

import cxql
from cxql.errors import StoreError

RNG = np.random.default_rng(31)
CONCEPTS = RNG.random((400, 6)) < 0.3
VERSIONS = [RNG.random((400, 3)) < 0.2, RNG.random((400, 5)) < 0.5]  # two contents of layer "l"
FORK = multiprocessing.get_context("fork")


def _layer_answer(layer) -> list:
    return [layer.unit_positions(u).tolist() for u in range(layer.n_units)] + [layer.mask_sizes.tolist()]


def _expected(masks: np.ndarray) -> list:
    return [np.flatnonzero(masks[:, u]).tolist() for u in range(masks.shape[1])] + [masks.sum(axis=0).tolist()]


def _add_after_barrier(path: str, name: str, barrier, seed: int) -> None:
    store = cxql.ConceptStore.open(path)  # every writer starts from the same, soon stale, manifest
    barrier.wait(timeout=20)
    store.add_unit_masks(name, np.random.default_rng(seed).random((400, 2)) < 0.3)


@pytest.mark.parametrize("trial", range(3))
def test_concurrent_writers_keep_every_layer(tmp_path, trial) -> None:
    path = tmp_path / "s"
    cxql.ConceptStore.from_masks(CONCEPTS, [f"c{i}" for i in range(6)]).save(path)
    barrier = FORK.Barrier(4)
    procs = [FORK.Process(target=_add_after_barrier, args=(str(path), f"w{i}", barrier, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = cxql.ConceptStore.open(path)
    assert sorted(store.layers) == ["w0", "w1", "w2", "w3"]
    for i in range(4):
        assert _layer_answer(store.layers[f"w{i}"]) == _expected(np.random.default_rng(i).random((400, 2)) < 0.3)


def _rewrite(path: str, seconds: float, counter) -> None:
    """Alternate layer "l" between two versions, and now and then replace the whole store."""
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        if i % 5 == 0:
            store = cxql.ConceptStore.from_masks(CONCEPTS, [f"c{i}" for i in range(6)])
            store.add_unit_masks("l", VERSIONS[i % 2])
            store.save(path)
        else:
            cxql.ConceptStore.open(path).add_unit_masks("l", VERSIONS[i % 2], replace=True)
    counter.value = i


def _read(path: str, seconds: float, results) -> None:
    expected = [_expected(v) for v in VERSIONS]
    end, counts = time.monotonic() + seconds, {"opens": 0, "old-or-new": 0, "mixed": 0, "errors": 0}
    while time.monotonic() < end:
        counts["opens"] += 1
        try:
            answer = _layer_answer(cxql.ConceptStore.open(path).layers["l"])
        except StoreError:
            counts["errors"] += 1
            continue
        counts["old-or-new" if answer in expected else "mixed"] += 1
    results.put(counts)


def test_readers_during_rewrites_see_the_old_or_the_new_store(tmp_path) -> None:
    path = tmp_path / "s"
    store = cxql.ConceptStore.from_masks(CONCEPTS, [f"c{i}" for i in range(6)])
    store.add_unit_masks("l", VERSIONS[0])
    store.save(path)
    results, writes = FORK.Queue(), FORK.Value("i", 0)
    procs = [FORK.Process(target=_rewrite, args=(str(path), 1.5, writes))]
    procs += [FORK.Process(target=_read, args=(str(path), 1.5, results)) for _ in range(2)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=30) for _ in range(2)]
    for p in procs:
        p.join(30)
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    print(f"{writes.value} rewrites, readers: {total}")
    assert procs[0].exitcode == 0 and writes.value >= 2
    assert total["opens"] > 10 and total["mixed"] == 0 and total["errors"] == 0
