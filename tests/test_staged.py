"""Arrays written straight into a staging directory are ordinary .npy files, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from cxql.store.staged import NpyAppender, new_npy


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.float32])
@pytest.mark.parametrize("chunks", [[], [0], [5], [3, 0, 1_000_003]])
def test_an_appended_file_is_what_np_save_writes(tmp_path, dtype, chunks):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 1000, n).astype(dtype) for n in chunks]
    writer = NpyAppender(tmp_path / "a.npy", dtype)
    for part in parts:
        writer.append(part)
    staged = writer.close()
    whole = np.concatenate(parts) if parts else np.zeros(0, dtype)
    np.save(tmp_path / "b.npy", whole)
    assert staged.file.read_bytes() == (tmp_path / "b.npy").read_bytes()


@pytest.mark.parametrize("shape", [(0,), (7,), (3, 4)])
def test_a_new_memory_mapped_file_is_what_np_save_writes(tmp_path, shape):
    out = new_npy(tmp_path / "sub" / "a.npy", np.uint8, shape)
    out[...] = np.arange(int(np.prod(shape))).reshape(shape)
    if isinstance(out, np.memmap):
        out.flush()
    np.save(tmp_path / "b.npy", np.asarray(out))
    assert (tmp_path / "sub" / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
