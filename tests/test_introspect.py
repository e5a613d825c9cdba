"""SHOW and EXPLAIN: LIKE patterns, and SHOW unit when cancelled."""

from __future__ import annotations

import random
import re

import pytest

import cxql
from conftest import CancelAt
from cxql.introspect import like


def regex_like(text: str, pattern: str) -> bool:
    """The reference: LIKE as a regular expression (exponential on some patterns, fine on these)."""
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, flags=re.IGNORECASE | re.DOTALL) is not None


@pytest.mark.parametrize("text, pattern, expected", [
    ("water", "wat%", True), ("water", "WAT%", True), ("water", "%ter", True), ("water", "w_t_r", True),
    ("water", "w_t", False), ("water", "%", True), ("", "%", True), ("", "_", False), ("a%b", "a%b", True),
    ("color:blue", "color:%", True), ("water", "%a%e%", True), ("water", "%e%a%", False),
])
def test_like_examples(text, pattern, expected) -> None:
    assert like(text, pattern) is expected


@pytest.mark.parametrize("seed", range(5))
def test_like_agrees_with_the_regex_reference(seed) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        text = "".join(rng.choice("abAB:%_") for _ in range(rng.randrange(8)))
        pattern = "".join(rng.choice("abB%%__") for _ in range(rng.randrange(7)))
        assert like(text, pattern) is regex_like(text, pattern), (text, pattern)


def test_like_with_many_wildcards_finishes(small_store) -> None:
    # '%%%...%zz' made the regex engine backtrack exponentially (and Ctrl-C could not stop it).
    store, *_ = small_store
    long_name = "a" * 60
    assert not like(long_name, "%" * 40 + "zz")
    assert not like(long_name, "%a" * 40 + "z")
    result = cxql.connect(store).execute("SHOW concepts LIKE '" + "%" * 200 + "zz'")
    assert result.rows == []


def test_show_unit_cancelled_returns_a_clean_message(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.progress = CancelAt(session, 0)
    result = session.execute("SHOW unit 0")
    assert result.rows == [] and "cancelled" in result.message
    session.progress = cxql.engine.Quiet()
    assert session.execute("SHOW unit 0").rows[0]["unit"] == 0


def test_explain_search_gives_the_memory_estimate_and_the_clipped_beam(small_store) -> None:
    store, *_ = small_store
    plan = [r["plan"] for r in cxql.connect(store).execute("EXPLAIN SEARCH unit * LENGTH 2 BEAM 1000000").rows]
    [line] = [p for p in plan if p.strip().startswith("memory:")]
    assert "memory_limit" in line and "BEAM clipped to 252" in line  # 9 non-empty concepts: 9 x 28
