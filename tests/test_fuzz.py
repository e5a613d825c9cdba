"""Seeded fuzzing: mutated queries give a Result or a CxqlError, never another exception, a hang or a blow-up.

The mutations and the runner live in tests/fuzzing.py (which also runs bigger
fuzzes by hand). Each query runs under a 10 s alarm (a hang, not a slow
query: the slowest takes about 1 s) and a 256 MB memory_limit, whatever the
machine; the whole test stays a few seconds on two cores.
"""

from __future__ import annotations

import pytest

import cxql
from cxql.resources import demo_store_path
from fuzzing import fuzz, random_store


def check(report, n: int) -> None:
    shown = "\n\n".join(f"{q!r}\n{tb}" for q, tb in report.failures[:5])
    assert not report.failures, f"{report.summary()}\n{shown}"
    assert report.queries == n == report.results + sum(report.errors.values())
    assert report.results > n // 20 and len(report.errors) >= 3  # the mix reaches past the parser
    assert report.rss_growth_mb < 512, report.summary()


@pytest.mark.parametrize("seed", [11, 12])
def test_fuzz_small_random_store(seed) -> None:
    store = random_store(seed)
    check(fuzz(lambda: cxql.connect(store), 700, seed, per_query_s=10), 700)


def test_fuzz_demo_store() -> None:
    path = demo_store_path()
    check(fuzz(lambda: cxql.connect(path), 150, 5, per_query_s=10, fresh_every=75), 150)
