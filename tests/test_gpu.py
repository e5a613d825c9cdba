"""The GPU path is the same code on another device: it must give the very same answers."""

from __future__ import annotations

import pytest
import torch

import cxql
from conftest import random_store_data

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("seed", range(3))
def test_cuda_answers_equal_cpu_answers(seed: int) -> None:
    concepts, names, units = random_store_data(seed, n=5000, k=40, u=12)
    store = cxql.ConceptStore.from_masks(concepts, names)
    store.add_unit_masks("l", units)
    queries = ["SEARCH unit * LENGTH 4 BEAM 5", "SEARCH unit * LENGTH 3 BEAM 3 DISTINCT",
               "EVAL c4 OR c5 AND NOT c7 ON unit *", "MATCH c4 AND NOT c3 TOP 5", "c1 OR c9"]
    cpu, gpu = cxql.connect(store), cxql.connect(store)
    gpu.execute("SET device = 'cuda'")
    for q in queries:
        assert gpu.execute(q).rows == cpu.execute(q).rows, q
