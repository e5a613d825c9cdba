"""SEARCH ... EXACT as a statement: parsing, rows, errors, budget, cancel, EXPLAIN, beam bounds."""

from __future__ import annotations

import numpy as np
import pytest

import cxql
from cxql import exact_pool
from cxql.errors import QueryError
from cxql.memory import format_size
from conftest import CancelAt
from test_exact import enumerate_best


def tiny_session(seed: int = 0, n: int = 60, k: int = 8, u: int = 6):
    rng = np.random.default_rng(seed)
    dense = rng.random((n, k)) < rng.uniform(0.1, 0.5, size=k)
    dense[:, 1] = dense[:, 0]                    # duplicate
    dense[:, 2] = False                          # empty
    units = rng.random((n, u)) < 0.3
    units[:, 0] = False                          # never fires
    units[:, 1] = (dense[:, 3] & dense[:, 4]) | dense[:, 5]
    store = cxql.ConceptStore.from_masks(dense, [f"c{i}" for i in range(k)])
    store.add_unit_masks("l", units)
    return cxql.connect(store), dense, units


def key_text(key: tuple) -> str:
    """A key (c1, c2, op2, ...) as canonical text, by hand."""
    text = f"c{key[0]}"
    for c, op in zip(key[1::2], key[2::2]):
        text = f"({text} {('OR', 'AND', 'AND NOT')[op]} c{c})"
    return text


@pytest.mark.parametrize("text", ["SEARCH unit 1..3 LENGTH 3 EXACT", "SEARCH unit * EXACT WITHIN 30 s",
                                  "SEARCH unit 2 LENGTH 4 EXACT WITHIN 0.25 s"])
def test_exact_statements_print_canonically_and_parse_back(text):
    tree = cxql.parse(text)
    assert str(tree) == text and cxql.parse(str(tree)) == tree
    assert tree.exact


def test_rows_are_the_enumerated_optimum_with_proof():
    session, dense, units = tiny_session()
    result = session.execute("SEARCH unit * LENGTH 3 EXACT")
    assert result.columns[:5] == ["unit", "formula", "iou", "optimal", "bound"]
    for row in result.rows:
        want_iou, want_key = enumerate_best(dense, units[:, row["unit"]], 3)
        assert row["optimal"] and row["bound"] == row["iou"] == want_iou
        if want_key is None:
            assert row["formula"] == "NONE"
            continue
        assert row["formula"] == key_text(want_key)
        check = session.execute(f"EVAL {row['formula']} ON unit {row['unit']}").rows[0]
        assert check["iou"] == row["iou"]
    assert result.rows[0]["formula"] == "NONE" and result.rows[0]["optimal"]
    assert result.rows[1]["iou"] == 1.0


@pytest.mark.parametrize("query, message", [
    ("SEARCH unit 1 LENGTH 3 EXACT BEAM 5", "EXACT and BEAM do not combine"),
    ("SEARCH unit 1 LENGTH 3 EXACT WITHIN 0 s", "WITHIN must be a positive number of seconds, got 0"),
    ("SEARCH unit 1 LENGTH 3 EXACT WITHIN -2 s", "WITHIN must be a positive number of seconds, got -2"),
    ("SEARCH unit 1 LENGTH 9 EXACT", "LENGTH 9 is above the 8 concepts of this store"),
    ("SEARCH unit 1 LENGTH 0 EXACT", "LENGTH must be at least 1"),
    ("SEARCH unit 1 WITHIN 5 s", "add EXACT"),
])
def test_bad_exact_searches_get_one_clear_error(query, message):
    session, _, _ = tiny_session()
    with pytest.raises(QueryError, match=message) as info:
        session.execute(query)
    assert info.value.span is not None            # points into the query
    with pytest.raises(QueryError, match=message):
        session.execute("EXPLAIN " + query)


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_reports_best_found_with_a_bound_above_the_optimum(workers):
    session, dense, units = tiny_session(seed=3, k=8, u=6 * workers)
    session.execute(f"SET workers = {workers}")
    session.progress = CancelAt(session, 0)
    rows = session.execute("SEARCH unit * LENGTH 3 EXACT").rows
    assert len(rows) == units.shape[1]            # every unit answers, as when the budget runs out
    for row in rows:
        want, _ = enumerate_best(dense, units[:, row["unit"]], 3)
        assert row["bound"] >= want >= row["iou"]
        assert row["optimal"] == (row["bound"] == row["iou"])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tiny_budget_still_answers_every_unit_with_a_valid_bound(workers):
    session, dense, units = tiny_session(seed=5, u=6 * workers)
    session.execute(f"SET workers = {workers}")
    rows = session.execute("SEARCH unit * LENGTH 3 EXACT WITHIN 0.000001 s").rows
    assert len(rows) == units.shape[1]
    for row in rows:
        want, _ = enumerate_best(dense, units[:, row["unit"]], 3)
        assert row["bound"] >= want >= row["iou"]


def test_explain_names_the_exact_engine():
    session, _, _ = tiny_session()
    plan = [r["plan"] for r in session.execute("EXPLAIN SEARCH unit * LENGTH 3 EXACT WITHIN 5 s").rows]
    assert any("exact search (branch and bound" in line for line in plan)
    assert any("two-leaf prefixes screened in one batch" in line for line in plan)
    estimate = session.searcher("exact").estimate_bytes(session.search_context(), [0], 0)
    assert any(line.strip().startswith("memory: about") and format_size(estimate) in line for line in plan)
    assert not any("can take hours" in line for line in plan)
    long = [r["plan"] for r in session.execute("EXPLAIN SEARCH unit * LENGTH 5 EXACT").rows]
    assert any("at LENGTH 5 a proof can take hours" in line and "WITHIN" in line for line in long)


@pytest.mark.parametrize("seed", range(4))
def test_beam_rows_carry_a_bound_above_every_formula(seed):
    session, dense, units = tiny_session(seed=seed)
    beam = session.execute("SEARCH unit * LENGTH 3 BEAM 3").rows
    for row in beam:
        want, _ = enumerate_best(dense, units[:, row["unit"]], 3)
        assert row["bound"] >= want >= row["iou"]


def test_with_accuracy_goes_through_the_same_analysis_as_beam():
    session, _, _ = tiny_session()
    with pytest.raises(cxql.CxqlError) as beam_error:
        session.execute("SEARCH unit 1 LENGTH 2 WITH accuracy")
    with pytest.raises(cxql.CxqlError) as exact_error:
        session.execute("SEARCH unit 1 LENGTH 2 EXACT WITH accuracy")
    assert str(exact_error.value.message) == str(beam_error.value.message)


def test_exact_is_refused_past_the_memory_limit():
    session, _, _ = tiny_session()
    estimate = session.searcher("exact").estimate_bytes(session.search_context(), [0], 0)
    session.execute(f"SET memory_limit = {estimate}")
    assert session.execute("SEARCH unit 1 LENGTH 3 EXACT").rows[0]["optimal"]
    session.execute(f"SET memory_limit = {estimate - 1}")
    with pytest.raises(QueryError, match="SEARCH ... EXACT over 8 concepts would need about"):
        session.execute("SEARCH unit 1 LENGTH 3 EXACT")


@pytest.mark.skipif(not exact_pool.available(), reason="this platform cannot fork workers")
def test_workers_give_the_same_rows_in_the_same_order():
    """Units are independent: spread over forked processes, every row is what one process answers."""
    session, dense, units = tiny_session(seed=9, k=8, u=14)
    rows = {}
    for workers in (1, 2, 3):
        session.execute(f"SET workers = {workers}")
        rows[workers] = session.execute("SEARCH unit * LENGTH 3 EXACT").rows
    assert rows[1] == rows[2] == rows[3]
    assert [r["unit"] for r in rows[2]] == list(range(14))
    for row in rows[3]:
        want, _ = enumerate_best(dense, units[:, row["unit"]], 3)
        assert row["optimal"] and row["iou"] == pytest.approx(want, abs=0)


@pytest.mark.parametrize("setting, units, want", [(1, 100, 1), (2, 100, 2), (4, 9, 2), (3, 3, 1), (None, 4, 1)])
def test_workers_are_capped_by_the_units(setting, units, want):
    if not exact_pool.available():
        want = 1
    assert exact_pool.workers_for(setting, units) == want


@pytest.mark.parametrize("value", ["0", "-1", "'many'"])
def test_bad_workers_settings_are_refused(value):
    session, _, _ = tiny_session()
    with pytest.raises(QueryError, match="workers"):
        session.execute(f"SET workers = {value}")


@pytest.mark.skipif(not exact_pool.available(), reason="this platform cannot fork workers")
def test_two_threads_searching_with_workers_keep_their_own_answers(monkeypatch):
    """Each statement's workers inherit its own job, also when two sessions search from two threads (the
    pool starts late here, so without the lock the second thread's job would replace the first's)."""
    import threading
    import time

    runs = [tiny_session(seed=s, k=8, u=10) for s in (21, 22)]
    alone = []
    for session, _, _ in runs:
        session.execute("SET workers = 2")
        alone.append(session.execute("SEARCH unit * LENGTH 3 EXACT").rows)
    collect = exact_pool._collect
    monkeypatch.setattr(exact_pool, "_collect", lambda *a: (time.sleep(0.3), collect(*a)))
    together: list = [None, None]

    def search(i: int) -> None:
        together[i] = runs[i][0].execute("SEARCH unit * LENGTH 3 EXACT").rows

    threads = [threading.Thread(target=search, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert together == alone


@pytest.mark.skipif(not exact_pool.available(), reason="this platform cannot fork workers")
def test_a_worker_that_dies_is_an_error_not_a_hang():
    """A worker killed mid-unit (the OOM killer, kill -9) lost its unit: the statement used to wait forever."""
    import os
    import signal
    import threading

    from cxql.errors import CxqlError
    from cxql.exact_search import space_of, units_of

    session, _, _ = tiny_session(u=12)
    store = session.store
    space = space_of(store)
    hists = session.search_context().hists
    parent = os.getpid()

    def unit_of(i: int):
        if i == 5 and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return units_of(hists, space, [i])[0]

    outcome: list = []

    def work() -> None:
        try:
            exact_pool.run(space, unit_of, 12, 3, None, lambda: False, 2, lambda i, a: None)
            outcome.append("returned")
        except CxqlError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "EXACT waited forever on a dead worker"
    [error] = outcome
    assert isinstance(error, CxqlError) and "worker" in str(error) and "workers = 1" in str(error)
