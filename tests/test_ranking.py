"""Stable top-k: the same order as a stable descending sort of each row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxql.ranking import top_stable


def test_top_stable_breaks_ties_by_index() -> None:
    scores = torch.tensor([[0.5, 0.7, 0.5, 0.7, -1.0, 0.5], [-1.0, -1.0, 0.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    assert top_stable([scores], 4).tolist() == [[1, 3, 0, 2], [2, -1, -1, -1]]
    assert top_stable([scores[:, :2], scores[:, 2:]], 3).tolist() == [[1, 3, 0], [2, -1, -1]]
    assert top_stable([scores], 9).tolist() == [[1, 3, 0, 2, 5, -1, -1, -1, -1], [2] + [-1] * 8]


@pytest.mark.parametrize("seed", range(20))
def test_top_stable_equals_a_stable_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.integers(-1, 4, size=(6, 30)) / 4, dtype=torch.float64)  # many ties, some negative
    k = int(rng.integers(1, 12))
    split = int(rng.integers(1, 29))
    got = top_stable([scores[:, :split], scores[:, split:]], k)
    for row, picks in zip(scores.numpy(), got.tolist()):
        order = [i for i in np.argsort(-row, kind="stable") if row[i] >= 0][:k]
        assert picks == order + [-1] * (k - len(order))


def test_no_candidates_pads_every_row() -> None:
    empty = torch.zeros(3, 0, dtype=torch.float64)
    assert top_stable([empty, empty], 2).tolist() == [[-1, -1]] * 3
