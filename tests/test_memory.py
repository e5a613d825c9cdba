"""SET memory_limit: statements estimate their memory first and refuse past the limit."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
from cxql import memory
from cxql.errors import QueryError
from cxql.memory import MemoryLimitError


@pytest.mark.parametrize("text, expected", [
    ("4GB", 4 * 10**9), ("512MB", 512 * 10**6), ("512 mb", 512 * 10**6), ("1.5GiB", 3 << 29), ("10KB", 10_000),
    ("2048", 2048), (2048, 2048), ("1TB", 10**12),
])
def test_sizes_parse(text, expected) -> None:
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4 parsecs", "-1GB", "0", 0, True, "", "1e3GB"])
def test_bad_sizes_are_refused(text) -> None:
    with pytest.raises(QueryError, match="memory_limit"):
        memory.parse_size(text)


def test_default_is_half_the_machine() -> None:
    assert memory.physical_memory() > 1 << 20
    assert memory.parse_size("auto") == memory.default_limit() == int(memory.physical_memory() * 0.5)
    assert cxql.settings.defaults()["memory_limit"] == memory.default_limit()


@pytest.mark.parametrize("query", [
    "c0 OR c4", "EVAL c0 OR c4 ON unit *", "MATCH c0 TOP 3", "SEARCH unit * LENGTH 3 BEAM 5",
    "SEARCH unit 0 LENGTH 2 BEAM 5 DISTINCT", "SHOW unit 0", "SHOW units",
])
@pytest.mark.parametrize("engine", ["plain", "batched"])
def test_a_tiny_limit_refuses_with_the_numbers(small_store, query, engine) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    expected = session.execute(query).rows
    session.execute(f"SET engine = '{engine}'")
    session.execute("SET memory_limit = '1KB'")
    with pytest.raises(MemoryLimitError) as info:
        session.execute(query)
    text = str(info.value)
    assert "would need about" in text and "memory_limit of 1 KB" in text and "SET memory_limit = '" in text
    assert "^" in text  # points at the statement
    session.execute("SET memory_limit = '64MB'")
    assert session.execute(query).rows == expected


def test_the_suggested_limit_is_enough(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("SET memory_limit = 1000")
    with pytest.raises(MemoryLimitError) as info:
        session.execute("SEARCH unit * LENGTH 3")
    suggested = info.value.hint.split("SET memory_limit = ")[1].split()[0]
    session.execute(f"SET memory_limit = {suggested}")
    assert len(session.execute("SEARCH unit * LENGTH 3").rows) == store.layers["layer"].n_units


@pytest.mark.parametrize("distinct", ["", " DISTINCT"])
def test_a_billion_beam_is_refused_before_allocating(small_store, distinct) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute("SET memory_limit = '1GB'")
    with pytest.raises(MemoryLimitError, match="BEAM"):
        session.execute(f"SEARCH unit * LENGTH 10 BEAM 1000000000{distinct}")


def test_rethresholding_is_estimated_before_the_masks_exist() -> None:
    rng = np.random.default_rng(0)
    store = cxql.ConceptStore.from_masks(rng.random((40 * 16, 3)) < 0.3, ["a", "b", "c"], mask_shape=(4, 4))
    acts = rng.normal(size=(40, 4, 4, 4)).astype(np.float32)
    store.add_units("conv", acts)
    session = cxql.connect(store)
    session.execute("SET threshold = 0")
    session.execute("SET memory_limit = '20KB'")
    with pytest.raises(MemoryLimitError, match="threshold"):
        session.execute("EVAL a ON unit 0")
    session.execute("SET memory_limit = 'auto'")
    assert session.execute("EVAL a ON unit 0").rows[0]["mask_size"] == int((acts[:, 0] > 0).sum())


def test_rethreshold_estimate_grows_with_the_active_fraction() -> None:
    acts = np.random.default_rng(1).normal(size=(100, 3, 2, 2)).astype(np.float32)
    low = memory.rethreshold_bytes(acts, np.full(3, 2.0), 100 * 64, 1 << 20)
    high = memory.rethreshold_bytes(acts, np.full(3, -2.0), 100 * 64, 1 << 20)
    assert high > 10 * (low - 3 * acts.size * 8) > 0
    assert high >= 32 * 0.9 * 3 * 100 * 64  # about 97 % of 3 x 6,400 positions active


def test_show_settings_lists_the_limit(small_store) -> None:
    store, *_ = small_store
    rows = {r["name"]: r for r in cxql.connect(store).execute("SHOW settings").rows}
    assert rows["memory_limit"]["value"] == memory.default_limit()


def test_only_the_latest_threshold_of_a_layer_stays_in_memory() -> None:
    rng = np.random.default_rng(0)
    store = cxql.ConceptStore.from_masks(rng.random((10 * 16, 3)) < 0.3, ["a", "b", "c"], mask_shape=(4, 4))
    store.add_units("conv", rng.normal(size=(10, 2, 4, 4)).astype(np.float32))
    session = cxql.connect(store)
    sizes = []
    for threshold in ("0", "0.5", "'quantile:0.9'", "0"):
        session.execute(f"SET threshold = {threshold}")
        sizes.append(session.execute("EVAL a ON unit 0").rows[0]["mask_size"])
        assert len(session._unit_cache) == 1
    assert sizes[0] == sizes[3] > sizes[1]
