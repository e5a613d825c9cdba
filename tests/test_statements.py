"""Statement handlers refuse what cannot finish before doing the work."""

from __future__ import annotations

import pytest

import cxql
from cxql.errors import QueryError


class Recorder:
    def __init__(self) -> None:
        self.started = 0

    def start(self, total, description):
        self.started += 1

    def advance(self, n=1, note=None):
        pass

    def finish(self):
        pass


@pytest.mark.parametrize("engine", ["plain", "batched"])
def test_with_accuracy_without_a_classifier_fails_before_searching(small_store, engine) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    session.execute(f"SET engine = '{engine}'")
    session.progress = progress = Recorder()
    with pytest.raises(QueryError, match="no classifier"):
        session.execute("SEARCH unit * LENGTH 3 WITH accuracy")
    assert progress.started == 0


@pytest.mark.parametrize("name", ["c4", "C4"])
def test_a_let_name_that_is_a_concept_is_refused(small_store, name) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    before = session.execute("EVAL c4 ON unit 3").rows
    with pytest.raises(QueryError, match=f"{name} is a concept; choose another LET name") as caught:
        session.execute(f"LET {name} = c5")
    assert str(caught.value).splitlines()[0].startswith("line 1, column 5")
    assert session.lets == {} and session.execute("EVAL c4 ON unit 3").rows == before


def test_a_let_name_may_be_reused_for_another_formula(small_store) -> None:
    store, *_ = small_store
    session = cxql.connect(store)
    assert session.execute("LET w = c4; LET w = c5; EVAL w ON unit 3").rows == \
        session.execute("EVAL c5 ON unit 3").rows


def test_search_bounds_in_unit_chunks_equal_all_at_once(small_store, monkeypatch):
    """Beam rows' root bounds are computed a chunk of units at a time (memory), with the same values."""
    from cxql import statements

    session = cxql.connect(small_store[0])
    whole = session.execute("SEARCH unit * LENGTH 2 BEAM 3").rows
    monkeypatch.setattr(statements, "BOUND_CHUNK", 3)
    chunked = session.execute("SEARCH unit * LENGTH 2 BEAM 3").rows
    assert len(whole) > 3 and chunked == whole and all("bound" in row for row in whole)
