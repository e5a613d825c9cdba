"""A writer killed (SIGKILL) at every step of a change leaves the old store or the new one.

Each operation runs in a forked child whose commit steps are counted; the
child kills itself at step k, for every k until it runs to the end. After
each kill the store must open with exactly the old or the new answers, and
running the operation again must finish it and leave no leftovers.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import cxql
from cxql.store import commit
from cxql.store.manifest import referenced_files

RNG = np.random.default_rng(21)
CONCEPTS = RNG.random((300, 7)) < 0.3
NAMES = [f"c{i}" for i in range(7)]
OLD_UNITS = RNG.random((300, 3)) < 0.2
NEW_UNITS = RNG.random((300, 4)) < 0.4
ACTS = RNG.normal(size=(300, 2)).astype(np.float32)


def base_store() -> cxql.ConceptStore:
    store = cxql.ConceptStore.from_masks(CONCEPTS, NAMES, sample_ids=[f"s{i}" for i in range(300)])
    store.add_unit_masks("l", OLD_UNITS)
    return store


def other_store() -> cxql.ConceptStore:
    store = cxql.ConceptStore.from_masks(CONCEPTS[:, ::-1], NAMES[::-1])
    store.add_units("acts", ACTS, threshold=0.5)
    return store


OPERATIONS: dict[str, Callable[[Path], object]] = {
    "replace a layer": lambda p: cxql.ConceptStore.open(p).add_unit_masks("l", NEW_UNITS, replace=True),
    "add a layer": lambda p: cxql.ConceptStore.open(p).add_unit_masks("m", NEW_UNITS, replace=True),
    "replace the store": lambda p: other_store().save(p),
    "build a new store": lambda p: base_store().save(p.parent / "fresh"),
    "write metadata": lambda p: _metadata(cxql.ConceptStore.open(p)),
}


def _metadata(store: cxql.ConceptStore) -> None:
    store.metadata["note"] = "new"
    store.write_manifest()


def answers(path: Path) -> tuple | None:
    """What queries see: concept counts, ids, every layer's unit masks, metadata (None: no store)."""
    if not path.exists():
        return None
    store = cxql.ConceptStore.open(path)
    layers = {name: [layer.unit_positions(u).tolist() for u in range(layer.n_units)] + [layer.mask_sizes.tolist()]
              for name, layer in store.layers.items()}
    return ([c.qualified for c in store.concepts], [c.count for c in store.concepts],
            np.asarray(store.position_signatures).tolist(), layers, store.sample_names, store.metadata.get("note"))


def _child(path: str, op: str, kill_at: int) -> None:
    calls = [0]

    def step(name: str) -> None:
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    commit._step = step
    OPERATIONS[op](Path(path))
    os._exit(0)


def run_killed(path: Path, op: str, kill_at: int) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(str(path), op, kill_at))
    proc.start()
    proc.join(30)
    return proc.exitcode


def leftovers(path: Path) -> list[str]:
    """Files in the store that its manifest does not name (besides the manifest and the lock)."""
    store = cxql.ConceptStore.open(path)
    named = referenced_files(store.manifest) | {"manifest.json", ".cxql.lock"}
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
                  and p.relative_to(path).as_posix() not in named)


KILLS: dict[str, list[int]] = {}


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_a_kill_at_any_step_leaves_the_old_or_the_new_store(tmp_path, op) -> None:
    template = base_store().save(tmp_path / "template").path
    target = tmp_path / "fresh" if op == "build a new store" else tmp_path / "s"
    old_done = tmp_path / "done"
    shutil.copytree(template, old_done)
    OPERATIONS[op](old_done)
    new = answers(old_done.parent / "fresh" if op == "build a new store" else old_done)
    shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
    old = None if op == "build a new store" else answers(template)
    assert new != old
    outcomes = []
    for k in range(1, 100):
        shutil.rmtree(tmp_path / "s", ignore_errors=True)
        shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
        shutil.copytree(template, tmp_path / "s")
        code = run_killed(tmp_path / "s", op, k)
        seen = answers(target)
        assert seen in (old, new), f"kill at step {k}: neither the old nor the new store"
        outcomes.append("old" if seen == old else "new")
        OPERATIONS[op](tmp_path / "s")  # the next run finishes the change and cleans up
        assert answers(target) == new
        assert leftovers(target) == []
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        if code == 0:
            break
        assert code == -signal.SIGKILL
    KILLS[op] = outcomes
    assert len(outcomes) > 2 and outcomes[-1] == "new"
    print(f"{op}: {len(outcomes) - 1} kills, ended as {outcomes}")
