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
