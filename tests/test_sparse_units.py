"""Sparse activations (scipy CSR .npz) give the same layer as the dense path, without densifying."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

import cxql  # noqa: E402
from cxql.errors import DataError  # noqa: E402
from cxql.store.conllu import build_conllu_store  # noqa: E402
from cxql.store.sparse_units import add_sparse_units, sparse_unit_masks  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tokens" / "sample.conllu"


def random_sparse(rng, n, units, density=0.1):
    dense = np.where(rng.random((n, units)) < density, rng.random((n, units)).astype(np.float32), 0)
    return dense, sp.csr_matrix(dense)


@pytest.mark.parametrize("seed, threshold", [(0, 0.0), (1, 0.5), (2, 0.9)])
def test_masks_equal_the_dense_rule(seed, threshold):
    rng = np.random.default_rng(seed)
    dense, matrix = random_sparse(rng, 200, 17)
    dense[:, 3] = 0  # a unit that never fires
    matrix = sp.csr_matrix(dense)
    masks = sparse_unit_masks(matrix, threshold, 200)
    for u in range(17):
        assert np.array_equal(masks.unit(u), np.flatnonzero(dense[:, u] > threshold))


def test_layer_and_search_equal_the_dense_path(tmp_path):
    store = build_conllu_store(SAMPLE)
    rng = np.random.default_rng(0)
    dense, matrix = random_sparse(rng, store.n_positions, 6, 0.3)
    add_sparse_units(store, "sparse", matrix, "value:0.2")
    store.add_units("dense", dense, "value:0.2")
    session = cxql.connect(store)
    rows = {}
    for layer in ("sparse", "dense"):
        session.execute(f"SET layer = '{layer}'; SET min_active = 0")
        rows[layer] = session.execute("SEARCH unit * LENGTH 2").rows
    assert rows["sparse"] == rows["dense"]
    session.execute("SET min_active = 5; SET layer = 'sparse'")
    result = session.execute("SEARCH unit * LENGTH 1")
    sizes = [int((dense[:, u] > 0.2).sum()) for u in range(6)]
    assert [r["unit"] for r in result.rows] == [u for u in range(6) if sizes[u] >= 5]


@pytest.mark.parametrize("threshold, fault", [("quantile:0.9", "absolute threshold only"),
                                              ("value:-1", "below 0")])
def test_refused_thresholds(threshold, fault):
    store = build_conllu_store(SAMPLE)
    with pytest.raises(DataError, match=fault):
        add_sparse_units(store, "x", sp.csr_matrix((store.n_positions, 3), dtype=np.float32), threshold)


def test_cli_units_add_sparse(tmp_path, capsys):
    from cxql.cli import main

    store = build_conllu_store(SAMPLE)
    store.save(tmp_path / "s")
    rng = np.random.default_rng(3)
    _, matrix = random_sparse(rng, store.n_positions, 4, 0.2)
    sp.save_npz(tmp_path / "acts.npz", matrix)
    assert main(["units", "add", str(tmp_path / "s"), "sae", str(tmp_path / "acts.npz")]) == 0
    assert cxql.ConceptStore.open(tmp_path / "s").layers["sae"].n_units == 4
    sp.save_npz(tmp_path / "short.npz", matrix[:-1])
    assert main(["units", "add", str(tmp_path / "s"), "bad", str(tmp_path / "short.npz")]) != 0
    assert "54 rows but the store has 55 positions" in capsys.readouterr().err
