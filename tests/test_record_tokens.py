"""record_tokens on a tiny transformer built from torch.nn, against activations taken by hand with a hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cxql
from cxql.errors import DataError
from cxql.record_tokens import record_tokens, store_words
from cxql.store.conllu import build_conllu_store

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tokens" / "sample.conllu"


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, dim)
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, batch_first=True, dropout=0.0)
        self.mlp = nn.Sequential(nn.Linear(dim, 24), nn.GELU(), nn.Linear(24, dim))

    def forward(self, input_ids):
        return self.mlp(self.block(self.embed(input_ids)))


def chunk_tokenizer(text, return_offsets_mapping=True):
    """Words cut into pieces of at most 3 characters, after a [CLS] token with an empty span."""
    ids, offsets, start = [1], [(0, 0)], 0
    for word in text.split(" "):
        for a in range(0, len(word), 3):
            piece = word[a:a + 3]
            ids.append(2 + sum(map(ord, piece)) % 60)
            offsets.append((start + a, start + a + len(piece)))
        start += len(word) + 1
    return {"input_ids": ids, "offset_mapping": offsets}


def by_hand(model, words, module, pooling):
    """The same rows, with a hook and the pooling written out per word."""
    rows = []
    for sentence in words:
        text = " ".join(sentence)
        enc = chunk_tokenizer(text)
        seen = []
        h = module.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
        with torch.no_grad():
            model(input_ids=torch.tensor([enc["input_ids"]]))
        h.remove()
        acts = seen[0][0].numpy()
        t = 1  # after [CLS]
        for w in sentence:
            n = (len(w) + 2) // 3
            piece = acts[t:t + n]
            rows.append({"max": piece.max(0), "mean": piece.mean(0), "first": piece[0]}[pooling])
            t += n
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["max", "mean", "first"])
@pytest.mark.parametrize("layer", ["mlp.1", "block"])
def test_rows_match_a_hook_by_hand(tmp_path, pooling, layer):
    store = build_conllu_store(SAMPLE)
    model = TinyTransformer()
    rows = record_tokens(model, chunk_tokenizer, layer, store, name="tiny", pooling=pooling,
                         out=tmp_path / "acts.npy", threshold="quantile:0.9")
    want = by_hand(model, store_words(store), model.get_submodule(layer), pooling)
    np.testing.assert_allclose(np.asarray(rows), want, rtol=1e-5, atol=1e-6)
    assert np.load(tmp_path / "acts.npy").shape == (store.n_positions, want.shape[1])
    assert store.layers["tiny"].n_units == want.shape[1]
    result = cxql.connect(store).execute("SEARCH unit 0 LENGTH 2")
    assert result.rows[0]["mask_size"] > 0


def test_misaligned_tokenizer_names_the_sentence():
    store = build_conllu_store(SAMPLE)

    def bad(text, return_offsets_mapping=True):
        return {"input_ids": [1, 2], "offset_mapping": [(0, 0), (0, 2)]}

    with pytest.raises(DataError, match="sentence 0: word 1"):
        record_tokens(TinyTransformer(), bad, "mlp", store)


def test_token_count_mismatch_is_named():
    store = build_conllu_store(SAMPLE)
    with pytest.raises(DataError, match="but the token store has 55 tokens"):
        store.add_units("x", np.zeros((54, 3), np.float32))
    with pytest.raises(DataError, match="has 55 tokens in 10 sentences"):
        record_tokens(TinyTransformer(), chunk_tokenizer, "mlp", store, words=[["a"]])


def test_unknown_module():
    with pytest.raises(DataError, match="no module 'nope'"):
        record_tokens(TinyTransformer(), chunk_tokenizer, "nope", build_conllu_store(SAMPLE))


def test_cli_hf_model_without_transformers_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import transformers  # noqa: F401
        pytest.skip("transformers is installed")
    except ImportError:
        pass
    from cxql.cli import main

    build_conllu_store(SAMPLE).save(tmp_path / "s")
    code = main(["units", "record", str(tmp_path / "s"), "encoder.layer.0", "--model", f"hf:{tmp_path}/model"])
    assert code != 0 and "transformers" in capsys.readouterr().err


def test_a_token_layer_is_replaced_only_when_asked(tmp_path):
    """The name is checked before the model runs; with replace=True the new rows take the layer's place."""
    store = cxql.ConceptStore.open(build_conllu_store(SAMPLE).save(tmp_path / "s").path)
    model = TinyTransformer()
    record_tokens(model, chunk_tokenizer, "mlp.1", store, name="tiny", threshold="quantile:0.9")
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(DataError, match="already has a layer 'tiny'"):
        record_tokens(model, chunk_tokenizer, "mlp.1", store, name="tiny")
    assert not calls  # refused before recording anything
    handle.remove()
    before = store.layers["tiny"].n_units
    record_tokens(model, chunk_tokenizer, "block", store, name="tiny", threshold="quantile:0.9", replace=True)
    reopened = cxql.ConceptStore.open(tmp_path / "s")
    assert reopened.layers["tiny"].n_units == 16 != before == 24
