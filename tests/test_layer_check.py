"""First-use histogram checks read a layer unit chunk by unit chunk and still name the first fault."""

from __future__ import annotations

import numpy as np
import pytest

import cxql.store.unit_masks as um
from cxql.errors import StoreError
from cxql.store.layer_check import checked_histograms
from cxql.store.unit_masks import csr_from_lists, histograms


def layer_arrays(seed: int) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    position_sig = rng.integers(0, 40, 500)
    masks = csr_from_lists([np.sort(rng.choice(500, rng.integers(0, 60), replace=False)) for _ in range(12)])
    indptr, sig, cnt = histograms(masks, position_sig)
    arrays = {"hist_indptr": indptr, "hist_sig": sig, "hist_count": cnt, "mask_indptr": masks.indptr,
              "mask_positions": masks.positions}
    return arrays, np.bincount(position_sig, minlength=40)


def damaged(arrays: dict, how: str, rng) -> dict:
    out = {k: v.copy() for k, v in arrays.items()}
    sig, cnt = out["hist_sig"], out["hist_count"]
    e = int(rng.integers(len(sig) // 2, len(sig)))  # late: found in a later chunk
    if how == "range":
        sig[e] = 40
    elif how == "negative":
        sig[e] = -3
    elif how == "order":
        sig[e] = sig[e - 1]
    elif how == "count-zero":
        cnt[e] = 0
    elif how == "count-high":
        cnt[e] = 10_000
    elif how == "sum":
        cnt[e] += 1
    elif how == "two-faults":  # an order fault early and a range fault late: range is named, as before
        sig[3], sig[e] = sig[2], 99
    return out


def message(arrays: dict, counts: np.ndarray) -> str | None:
    try:
        checked_histograms("l", arrays, "positions", counts, {})
    except StoreError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("how", ["range", "negative", "order", "count-zero", "count-high", "sum", "two-faults"])
def test_chunked_checks_name_what_one_pass_names(monkeypatch, seed, how):
    arrays, counts = layer_arrays(seed)
    bad = damaged(arrays, how, np.random.default_rng(seed))
    whole = message(bad, counts)
    assert whole is not None
    monkeypatch.setattr(um, "HIST_CHUNK", 5)
    assert message(bad, counts) == whole
    assert message(arrays, counts) is None
    if how == "two-faults":
        assert "holds signature id 99" in whole
