"""The batched SEARCH engine against the per-unit path and the numpy reference, unit by unit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cxql
import reference as ref
from conftest import CancelAt, random_store_data
from cxql.backend import Backend
from cxql.batched import BatchedSearch
from cxql.search import SearchResult

CASES = [(1, 3, False), (2, 4, False), (3, 5, False), (3, 5, True), (4, 2, True), (5, 10, False), (6, 3, True)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def awkward_store(seed: int, n: int = 517, k: int = 13, u: int = 9):
    """random_store_data plus blocky concepts (few signatures, heavy counts), more duplicates, a unit that always fires."""
    concepts, names, units = random_store_data(seed, n=n, k=k, u=u)
    rng = np.random.default_rng(seed + 100)
    concepts[:, 6] = concepts[:, 4]                       # another duplicate, later in store order
    concepts[:, 7] = np.arange(n) < rng.integers(1, n)    # a prefix: a huge signature run
    units[:, 4] = True                                    # a unit that fires everywhere
    units[:, 5] = concepts[:, 7] & ~concepts[:, 8]        # a unit with an exact AND NOT formula
    units[:, 6] = units[:, 3]                             # identical to a unit with an exact OR formula
    store = cxql.ConceptStore.from_masks(concepts, names, ["a"] * 5 + ["b"] * (k - 5))
    store.add_unit_masks("l", units)
    return store, concepts, names, units


def plain(store, units: list[int], length: int, beam: int, distinct: bool) -> list[SearchResult]:
    session = cxql.connect(store)
    session.settings["engine"] = "plain"
    return session.searcher().search(session.search_context(), units, length=length, beam=beam, distinct=distinct)


def batched(store, units: list[int], length: int, beam: int, distinct: bool, *, device: str = "cpu",
            chunk_bytes: int = 1 << 14, exact_limit: int = 60, unit_chunk: int = 4) -> list[SearchResult]:
    """The batched engine with tiny chunks: signature chunks, float64 chunks and unit chunks all get hit."""
    session = cxql.connect(store)
    backend = Backend(store, device, chunk_bytes, exact_limit)
    search = BatchedSearch(backend, session.resolver, session.unit_histograms(), length=length, beam=beam,
                           distinct=distinct, unit_chunk=unit_chunk)
    out: list[SearchResult] = []
    for chunk in search.chunks(units):
        out.extend(search.run(chunk))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("length, beam, distinct", CASES)
def test_batched_equals_plain_and_reference(device, seed, length, beam, distinct) -> None:
    store, concepts, names, units = awkward_store(seed)
    everyone = list(range(units.shape[1]))
    got = batched(store, everyone, length, beam, distinct, device=device)
    assert got == plain(store, everyone, length, beam, distinct)     # formulas, counts, IoUs, beams, by_length
    for r in got:
        want = ref.search(concepts, names, units[:, r.unit], length, beam, distinct)
        assert (str(r.best.formula) if r.best else "NONE", r.best.score if r.best else 0.0) == (want.formula, want.iou)
        assert {n: (str(v.formula), v.score) for n, v in r.by_length.items()} == want.by_length
        assert [(str(e.formula), e.score) for e in r.beam] == want.beam


@pytest.mark.parametrize("unit_chunk, chunk_bytes, exact_limit", [(1, 256, 1), (3, 100_000, 1 << 24), (64, 512, 7)])
def test_chunking_does_not_change_results(unit_chunk, chunk_bytes, exact_limit) -> None:
    store, *_ = awkward_store(7, n=389, k=11, u=8)
    units = [5, 0, 7, 2, 2 + 1]
    want = plain(store, units, 4, 4, False)
    assert batched(store, units, 4, 4, False, chunk_bytes=chunk_bytes, exact_limit=exact_limit,
                   unit_chunk=unit_chunk) == want


def test_all_concepts_empty_or_units_silent() -> None:
    concepts = np.zeros((50, 4), dtype=bool)
    concepts[:, 1] = True
    store = cxql.ConceptStore.from_masks(concepts, ["w", "x", "y", "z"])
    store.add_unit_masks("l", np.zeros((50, 3), dtype=bool))
    assert batched(store, [0, 1, 2], 3, 5, False) == plain(store, [0, 1, 2], 3, 5, False)
    assert all(r.best is None and r.by_length == {} for r in batched(store, [0, 2], 3, 5, True))


def test_session_uses_batched_engine_with_progress_and_plain_setting() -> None:
    store, *_ = awkward_store(3)
    session = cxql.connect(store)
    ticks: list[int] = []

    class Counting:
        def start(self, total, description):
            ticks.append(-total)

        def advance(self, n=1, note=None):
            ticks.append(n)

        def finish(self):
            pass

    session.progress = Counting()
    fast = session.execute("SEARCH unit * LENGTH 3 BEAM 4").rows
    assert ticks[0] == -9 and sum(ticks[1:]) == 9
    session.execute("SET engine = 'plain'")
    assert session.execute("SEARCH unit * LENGTH 3 BEAM 4").rows == fast


def test_cancel_stops_between_steps() -> None:
    store, *_ = awkward_store(4)
    session = cxql.connect(store)
    session.progress = CancelAt(session, 1)
    result = session.execute("SEARCH unit * LENGTH 5 BEAM 3")
    assert result.rows == [] and "cancelled" in result.message


def test_cancel_keeps_the_units_finished_and_the_bar_counts_units() -> None:
    """A cancelled SEARCH keeps finished units on the batched engine too, and the bar counts units, not steps."""
    concepts, names, units = random_store_data(1, n=400, u=32)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    full = cxql.connect(store).execute("SEARCH unit * LENGTH 4 BEAM 3").rows
    session = cxql.connect(store)
    events: list[tuple[int, str | None]] = []

    class CancelAtHalf:
        def start(self, total, description):
            self.done = 0

        def advance(self, n=1, note=None):
            events.append((n, note))
            self.done += n
            if self.done >= 16:
                session.cancel()

        def finish(self):
            pass

    session.progress = CancelAtHalf()
    result = session.execute("SEARCH unit * LENGTH 4 BEAM 3")
    assert 16 <= len(result.rows) < 32 and result.rows == full[:len(result.rows)]
    assert f"cancelled after {len(result.rows)} of 32 units" in result.message
    finished = [note for n, note in events if n]
    assert all(n in (0, 1) for n, _ in events) and len(finished) == len(result.rows)
    assert finished[:2] == [f"unit 0: {full[0]['formula']}", f"unit 1: {full[1]['formula']}"]
