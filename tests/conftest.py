"""Shared fixtures: small random stores with the awkward cases built in."""

from __future__ import annotations

import numpy as np
import pytest

import cxql


def random_store_data(seed: int, n: int = 600, k: int = 10, u: int = 6, density: float = 0.2):
    """Dense concept masks [n, k] and unit masks [n, u] with ties, empties and full covers."""
    rng = np.random.default_rng(seed)
    concepts = rng.random((n, k)) < rng.uniform(0.02, density * 2, size=k)
    concepts[:, 1] = concepts[:, 0]          # a duplicate concept: ties everywhere
    concepts[:, 2] = False                   # an empty concept
    concepts[:, 3] = True                    # a concept covering everything
    units = rng.random((n, u)) < 0.1
    units[:, 1] = False                      # a unit that never fires
    units[:, 2] = units[:, 0]                # identical units
    units[:, 3] = concepts[:, 4] | concepts[:, 5]  # a unit with an exact length-2 formula
    names = [f"c{i}" for i in range(k)]
    return concepts, names, units


@pytest.fixture
def small_store():
    concepts, names, units = random_store_data(0)
    store = cxql.ConceptStore.from_masks(concepts, names, ["a"] * 5 + ["b"] * (len(names) - 5))
    store.add_unit_masks("layer", units)
    return store, concepts, names, units


class CancelAt:
    """Progress that cancels ``session``'s statement at the n-th advance (counting from 1); n = 0: as it starts."""

    def __init__(self, session, n: int = 1) -> None:
        self.session, self.n, self.seen = session, n, 0

    def start(self, total, description):
        if self.n == 0:
            self.session.cancel()

    def advance(self, n=1, note=None):
        self.seen += 1
        if self.seen == self.n:
            self.session.cancel()

    def finish(self):
        pass
