"""One cancel token per statement: every long statement stops cleanly and keeps only whole work.

SEARCH on both engines and SHOW unit have their own cancel tests (test_engine,
test_batched, test_introspect); here: the token itself, EVAL over ``*``,
re-thresholding under ``SET threshold``, ``add_units``, and a shell buffer.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cxql
from conftest import CancelAt, random_store_data
from cxql import statements
from cxql.cancel import CancelToken, Cancelled
from cxql.shell.runner import run_statements


def test_a_token_is_one_way_and_thread_safe() -> None:
    token = CancelToken()
    assert not token.cancelled and not token()
    token.check()  # nothing to raise yet
    other = threading.Thread(target=token.cancel)
    other.start()
    other.join()
    assert token.cancelled and token()
    with pytest.raises(Cancelled, match="building cancelled"):
        token.check("building")


def test_each_statement_gets_a_fresh_token(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.cancel()  # between statements: stops nothing that comes later
    assert session.execute("EVAL c4 ON unit 0").rows


@pytest.mark.parametrize("engine", ["batched", "plain"])
def test_a_search_cancelled_before_it_starts_returns_no_unit(small_store, engine) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    token = CancelToken()
    token.cancel()
    result = session.run(cxql.parse("SEARCH unit * LENGTH 3"), token)
    assert result.rows == [] and "cancelled after 0 of 6 units" in result.message


def test_eval_over_all_units_keeps_the_rows_it_finished(monkeypatch) -> None:
    concepts, names, units = random_store_data(3, u=10)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    full = cxql.connect(store).execute("EVAL c4 OR c5 ON unit *").rows
    monkeypatch.setattr(statements, "ROWS_PER_CHECK", 3)
    session = cxql.connect(store)
    session.progress = CancelAt(session, 2)
    result = session.execute("EVAL c4 OR c5 ON unit *")
    assert result.rows == full[:6] and result.message == "cancelled after 6 of 10 units"
    session.progress = cxql.engine.Quiet()
    assert session.execute("EVAL c4 OR c5 ON unit *").rows == full


def test_rethresholding_cancelled_keeps_nothing_half_done() -> None:
    rng = np.random.default_rng(0)
    store = cxql.ConceptStore.from_masks(rng.random((10 * 16, 3)) < 0.3, ["a", "b", "c"], mask_shape=(4, 4))
    store.add_units("conv", rng.normal(size=(10, 2, 4, 4)).astype(np.float32))
    want = cxql.connect(store).execute("SET threshold = 0.5; EVAL a ON unit *").rows
    session = cxql.connect(store)
    session.execute("SET threshold = 0.5")
    session.progress = CancelAt(session)
    result = session.execute("EVAL a ON unit *")
    assert result.kind == "cancelled" and result.rows == []
    assert result.message == "re-thresholding layer 'conv' cancelled; nothing half-done was kept"
    session.progress = cxql.engine.Quiet()
    assert session.execute("EVAL a ON unit *").rows == want  # recomputed whole, not from a half cache


def test_add_units_stopped_by_a_token_attaches_nothing(small_store) -> None:
    store, *_ = small_store
    token = CancelToken()

    def step(n: int) -> None:  # the should_stop protocol of builders: report, then check the token
        token.cancel()
        token.check("adding layer 'acts'")

    acts = np.random.default_rng(1).normal(size=(store.n_samples, 3)).astype(np.float32)
    with pytest.raises(Cancelled):
        store.add_units("acts", acts, progress=step)
    assert "acts" not in store.layers


def test_a_cancelled_buffer_starts_no_further_statement(small_store) -> None:
    """The shell's buffer runs under one token: cancelled once, nothing after it starts (no re-sending)."""
    store, *_ = small_store
    session = cxql.connect(store)
    session.progress = CancelAt(session)
    outcome = run_statements(session, "SEARCH unit * LENGTH 3; LET w = c4; EVAL c4 ON unit 0")
    assert [r.statement.split()[0] for r in outcome.results] == ["SEARCH"]
    assert "cancelled after" in outcome.results[0].message and "w" not in session.lets
