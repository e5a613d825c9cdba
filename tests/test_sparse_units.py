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


# ------------------------------------------------------------------ the streamed path against the CSC reference


def csc_reference_masks(matrix, threshold: float) -> list[np.ndarray]:
    """The former in-memory implementation: one CSC copy, duplicates summed, entries above the threshold."""
    csc = matrix.tocsc()
    csc.sum_duplicates()
    csc.sort_indices()
    return [csc.indices[csc.indptr[u]:csc.indptr[u + 1]][csc.data[csc.indptr[u]:csc.indptr[u + 1]] > threshold]
            for u in range(matrix.shape[1])]


def messy_csr(rng, n, units, nnz):
    """A non-canonical CSR: unsorted columns, duplicate entries, empty rows and units."""
    rows = np.sort(rng.integers(0, n, nnz))
    rows = rows[rows % 7 != 3]                                  # empty rows
    cols = rng.integers(0, units, len(rows))
    cols[cols == 1] = 2                                         # unit 1 never fires
    data = rng.standard_normal(len(rows)).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    shuffled = np.concatenate([rng.permutation(np.arange(indptr[r], indptr[r + 1])) for r in range(n)])
    return sp.csr_matrix((data[shuffled], cols[shuffled], indptr), shape=(n, units))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.0, 0.4])
@pytest.mark.parametrize("block", [1, 17, 1 << 22])
def test_streamed_masks_equal_the_csc_reference(monkeypatch, seed, threshold, block):
    import cxql.store.sparse_units as su

    monkeypatch.setattr(su, "BLOCK_NNZ", block)
    rng = np.random.default_rng(seed)
    matrix = messy_csr(rng, 120, 9, 700)
    assert not matrix.has_canonical_format
    masks = sparse_unit_masks(matrix, threshold, 120)
    for u, expected in enumerate(csc_reference_masks(matrix, threshold)):
        assert np.array_equal(masks.unit(u), expected), u
    assert len(masks.unit(1)) == 0


def test_row_blocks_cover_every_row_once():
    from cxql.store.sparse_units import row_blocks

    indptr = np.array([0, 0, 5, 5, 5, 9, 30, 31])
    for block in (1, 4, 10, 100):
        spans = list(row_blocks(indptr, block))
        assert spans[0][0] == 0 and spans[-1][1] == 7
        assert all(a < b and b == c for (a, b), (c, _) in zip(spans, spans[1:] + [(7, 0)]))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_members_are_mapped_not_loaded(tmp_path, compressed):
    from cxql.store.sparse_units import open_sparse

    matrix = sp.random(40, 6, 0.3, format="csr", dtype=np.float32, random_state=1)
    sp.save_npz(tmp_path / "acts.npz", matrix, compressed=compressed)
    with open_sparse(tmp_path / "acts.npz") as csr:
        assert all(isinstance(a, np.memmap) for a in (csr.data, csr.indices, csr.indptr))
        temp = {Path(a.filename).parent for a in (csr.data, csr.indices)}
        assert (temp == {tmp_path}) != compressed  # compressed: decompressed elsewhere, never next to the input
        assert np.array_equal(csr.data, matrix.data) and np.array_equal(csr.indices, matrix.indices)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.npz"]
    assert all(not t.exists() for t in temp if t != tmp_path)


def test_a_streamed_zip64_npz_reads_back(tmp_path):
    from cxql.store.npz_members import CsrNpzWriter
    from cxql.store.sparse_units import open_sparse

    matrix = messy_csr(np.random.default_rng(4), 50, 5, 200)
    writer = CsrNpzWriter(tmp_path / "big.npz", 5)
    for a, b in ((0, 20), (20, 21), (21, 50)):
        block = matrix[a:b]
        writer.add_rows(block.indptr, block.indices, block.data)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]
    assert (sp.load_npz(tmp_path / "big.npz") != matrix).nnz == 0
    with open_sparse(tmp_path / "big.npz") as csr:
        assert np.array_equal(csr.indptr, matrix.indptr) and np.array_equal(csr.data, matrix.data)


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize("how, fault", [("garbage", "cannot read a scipy sparse matrix"),
                                        ("truncated", "cannot read a scipy sparse matrix")])
def test_a_damaged_npz_is_named(tmp_path, how, fault):
    store = build_conllu_store(SAMPLE)
    sp.save_npz(tmp_path / "acts.npz", sp.random(store.n_positions, 3, 0.2, format="csr", random_state=0),
                compressed=False)
    _corrupt(tmp_path / "acts.npz", how)
    with pytest.raises(DataError, match=fault) as info:
        add_sparse_units(store, "x", tmp_path / "acts.npz")
    assert str(tmp_path / "acts.npz") in info.value.message


@pytest.mark.parametrize("value, fault", [(np.nan, "NaN or infinite values \\(row 7\\)"),
                                          (np.inf, "NaN or infinite values \\(row 7\\)")])
def test_bad_values_name_the_row(tmp_path, value, fault):
    store = build_conllu_store(SAMPLE)
    dense = np.zeros((store.n_positions, 3), dtype=np.float32)
    dense[2, 1], dense[7, 2] = 1.0, value
    sp.save_npz(tmp_path / "acts.npz", sp.csr_matrix(dense), compressed=False)
    with pytest.raises(DataError, match=fault) as info:
        add_sparse_units(store, "x", tmp_path / "acts.npz")
    assert info.value.message.startswith(str(tmp_path / "acts.npz"))


def test_a_column_index_out_of_range_names_the_row():
    store = build_conllu_store(SAMPLE)
    n = store.n_positions
    bad = sp.csr_matrix((np.ones(2, np.float32), np.array([0, 5]), np.r_[0, 1, np.full(n - 1, 2)]), shape=(n, 3))
    with pytest.raises(DataError, match="row 1 has column index 5, but the matrix has 3 columns"):
        add_sparse_units(store, "x", bad)


@pytest.mark.parametrize("density, encoding", [(0.02, "positions"), (0.6, "bits")])
def test_a_streamed_layer_is_the_in_memory_layer(tmp_path, monkeypatch, density, encoding):
    """Written file by file into the staging directory, the layer has the same arrays, and the store is intact."""
    import cxql.store.unit_masks as um
    from cxql.store.check import check_store

    monkeypatch.setattr(um, "HIST_CHUNK", 7)  # many unit chunks
    store = build_conllu_store(SAMPLE)
    rng = np.random.default_rng(5)
    _, matrix = random_sparse(rng, store.n_positions, 11, density)
    sp.save_npz(tmp_path / "acts.npz", matrix, compressed=False)
    store.save(tmp_path / "s")
    on_disk = cxql.ConceptStore.open(tmp_path / "s")
    add_sparse_units(on_disk, "sae", tmp_path / "acts.npz", "value:0.1")
    add_sparse_units(store, "sae", matrix, "value:0.1")
    staged, memory = on_disk.layers["sae"], store.layers["sae"]
    assert staged.meta["encoding"] == memory.meta["encoding"] == encoding
    assert set(staged.arrays) == set(memory.arrays)
    for key, arr in memory.arrays.items():
        assert staged.arrays[key].dtype == arr.dtype and np.array_equal(staged.arrays[key], arr), key
    assert check_store(tmp_path / "s") == ([], [])
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".cxql-tmp")]


def test_a_failed_streamed_add_leaves_the_store_as_it_was(tmp_path):
    store = build_conllu_store(SAMPLE)
    store.save(tmp_path / "s")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "s").rglob("*"))
    dense = np.ones((store.n_positions, 2), dtype=np.float32)
    dense[-1, 1] = np.nan  # found in pass 1, before anything is staged
    with pytest.raises(DataError, match="NaN"):
        add_sparse_units(cxql.ConceptStore.open(tmp_path / "s"), "x", sp.csr_matrix(dense))
    after = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "s").rglob("*"))
    assert after == before


def test_units_add_shows_each_phase(tmp_path):
    from cxql.progress import Quiet

    class Phases(Quiet):
        def __init__(self):
            self.seen = []

        def start(self, total, label):
            self.seen.append([label, total, 0])

        def advance(self, n=1, note=None):
            self.seen[-1][2] += n

    store = build_conllu_store(SAMPLE)
    store.save(tmp_path / "s")
    _, matrix = random_sparse(np.random.default_rng(2), store.n_positions, 4, 0.2)
    progress = Phases()
    add_sparse_units(cxql.ConceptStore.open(tmp_path / "s"), "sae", matrix, progress=progress)
    n = store.n_positions
    assert progress.seen == [["counting sae's active tokens", n, n], ["placing sae's positions", n, n],
                             ["histograms of sae", 4, 4]]


@pytest.mark.parametrize("compressed", [False, True])
def test_cli_units_add_streams_without_loading_the_matrix(tmp_path, monkeypatch, compressed):
    from cxql.cli import main

    store = build_conllu_store(SAMPLE)
    store.save(tmp_path / "s")
    _, matrix = random_sparse(np.random.default_rng(6), store.n_positions, 5, 0.2)
    sp.save_npz(tmp_path / "acts.npz", matrix, compressed=compressed)

    def refuse(*args, **kwargs):
        raise AssertionError("the whole matrix was loaded")
    monkeypatch.setattr(sp, "load_npz", refuse)
    assert main(["units", "add", str(tmp_path / "s"), "sae", str(tmp_path / "acts.npz")]) == 0
    layer = cxql.ConceptStore.open(tmp_path / "s").layers["sae"]
    for u, expected in enumerate(csc_reference_masks(matrix, 0.0)):
        assert np.array_equal(layer.unit_positions(u), expected)


@pytest.mark.parametrize("layout", ["csc", "coo"])
def test_cli_units_add_takes_other_scipy_layouts(tmp_path, layout):
    """A CSC or COO save_npz archive is a sparse matrix too (converted in memory), not 'several arrays'."""
    from cxql.cli import main

    store = build_conllu_store(SAMPLE).save(tmp_path / "s")
    dense, matrix = random_sparse(np.random.default_rng(3), store.n_positions, 9, 0.2)
    sp.save_npz(tmp_path / "acts.npz", matrix.asformat(layout), compressed=False)
    assert main(["units", "add", str(tmp_path / "s"), "sae", str(tmp_path / "acts.npz")]) == 0
    layer = cxql.ConceptStore.open(tmp_path / "s").layers["sae"]
    for u in range(9):
        assert np.array_equal(layer.unit_positions(u), np.flatnonzero(dense[:, u] > 0))


def test_a_vision_store_needs_an_explicit_threshold_for_sparse_units():
    """Its dense units default to the top 0.5 %, which a sparse matrix cannot take: no silent other rule."""
    rng = np.random.default_rng(4)
    store = cxql.ConceptStore.from_masks(rng.random((120, 4)) < 0.3, list("abcd"))
    matrix = sp.random(120, 5, density=0.2, format="csr", random_state=4, dtype=np.float32)
    with pytest.raises(DataError, match="default to the threshold quantile:0.995") as info:
        add_sparse_units(store, "v", matrix)
    assert "value:0" in (info.value.hint or "")
    assert add_sparse_units(store, "v", matrix, "value:0").n_units == 5


def test_a_zip_that_is_neither_torch_nor_npz_is_named(tmp_path):
    import zipfile

    from cxql.store.activation_files import load_activations

    with zipfile.ZipFile(tmp_path / "acts.pt", "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(DataError, match="neither a torch.save file nor an .npz") as info:
        load_activations(tmp_path / "acts.pt")
    assert "save_npz" in (info.value.hint or "")


@pytest.mark.parametrize("shape_rows, start, fault", [
    (None, 1, "indptr starts at 1, not 0"),
    (7, 0, "its shape says 7 rows, so indptr should have 8 entries; it has"),
])
def test_an_inconsistent_csr_says_which_part_disagrees(shape_rows, start, fault):
    from cxql.store.sparse_units import CsrArrays, _checked

    matrix = sp.random(12, 3, density=0.3, format="csr", random_state=2)
    indptr = matrix.indptr.copy()
    indptr[0] = start
    shape = (shape_rows or 12, 3)
    with pytest.raises(DataError, match=fault):
        _checked(CsrArrays(shape, indptr, matrix.indices, matrix.data, "acts.npz"), "acts.npz: ")
