"""NEIGHBORS against gensim's own most_similar, text activations, and the NLI accuracy analysis.

Word vectors are random and written here in each format gensim reads; the
expected neighbours come from ``KeyedVectors.most_similar`` restricted to the
store's words. Recording is checked on a tiny torch model against the pooled
outputs computed by hand; ``SEARCH ... WITH accuracy`` against numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cxql
from cxql import text_record as tr
from cxql.cli import main
from cxql.errors import DataError
from cxql.store import nli
from test_nli import PAIRS, direct_concepts, tiny_pipeline, write_jsonl

WORDS = 2000


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIRS)


def store_vocabulary() -> list[str]:
    names, cats, _ = direct_concepts(PAIRS, WORDS)
    return [n for n, c in zip(names, cats) if c == "pre"]


def write_vectors(tmp_path: Path, fmt: str, missing: str = "outside", dim: int = 6):
    """A vectors file (all store words but ``missing``, plus words the store lacks) and its KeyedVectors."""
    gensim = pytest.importorskip("gensim")
    words = [w for w in store_vocabulary() if w != missing] + ["cat", "puppy", "car"]
    kv = gensim.models.KeyedVectors(dim)
    kv.add_vectors(words, np.random.default_rng(7).normal(size=(len(words), dim)).astype(np.float32))
    path = tmp_path / {"glove": "v.txt", "word2vec": "v.w2v.txt", "word2vec-binary": "v.bin"}[fmt]
    if fmt == "glove":
        path.write_text("".join(w + " " + " ".join(repr(float(x)) for x in kv[w]) + "\n" for w in words),
                        encoding="utf-8")
    else:
        kv.save_word2vec_format(str(path), binary=fmt == "word2vec-binary")
    return path, kv


def expected_neighbors(kv, word: str, k: int) -> list[str]:
    vocab = set(store_vocabulary()) & set(kv.key_to_index)
    return [w for w, _ in kv.most_similar(word, topn=len(kv)) if w in vocab][:k]


@pytest.mark.parametrize("fmt", ["glove", "word2vec", "word2vec-binary"])
def test_neighbors_match_gensim_most_similar(tmp_path, pairs_file, fmt) -> None:
    path, kv = write_vectors(tmp_path, fmt)
    store = nli.build_nli_store(pairs_file, words=WORDS, tagger=None, vectors=path, on_warning=lambda m: None)
    provider = cxql.text.neighbors_for(store)
    index = {c.qualified: c.index for c in store.concepts}
    for word in ("man", "dogs", "playing"):
        for k in (1, 3, 5):
            assert provider.words(word, k) == expected_neighbors(kv, word, k)
            for side in ("pre", "hyp"):
                got = provider(index[f"{side}:{word}"], k)
                assert got == [index[f"{side}:{w}"] for w in [word] + expected_neighbors(kv, word, k)]
    assert store.metadata["word_vectors"]["missing"] == ["outside"]


def test_neighbors_formula_is_the_or_of_the_words(tmp_path, pairs_file) -> None:
    path, kv = write_vectors(tmp_path, "glove")
    store = nli.build_nli_store(pairs_file, words=WORDS, tagger=None, vectors=path, on_warning=lambda m: None)
    names, cats, masks = direct_concepts(PAIRS, WORDS)
    col = {f"{c}:{n}": i for i, (n, c) in enumerate(zip(names, cats))}
    session = cxql.connect(store)
    for query, k in (("NEIGHBORS(hyp:man)", 5), ("NEIGHBORS(pre:dogs, 2)", 2)):
        side, word = query[len("NEIGHBORS("):].rstrip(")").split(",")[0].split(":")
        expect = np.logical_or.reduce([masks[:, col[f"{side}:{w}"]] for w in [word] + expected_neighbors(kv, word, k)])
        row = session.execute(query).rows[0]
        assert row["formula"] == query and row["positions"] == int(expect.sum())


def test_vectors_live_in_the_store_after_the_file_is_gone(tmp_path, pairs_file) -> None:
    path, kv = write_vectors(tmp_path, "word2vec")
    nli.build_nli_store(pairs_file, tagger=None, vectors=path, on_warning=lambda m: None).save(tmp_path / "st")
    path.unlink()
    session = cxql.connect(tmp_path / "st")
    assert session.compiler.neighbors.words("woman", 3) == expected_neighbors(kv, "woman", 3)
    assert session.execute("NEIGHBORS(pre:woman, 3)").rows[0]["positions"] > 0


def test_neighbors_errors_name_the_fault(tmp_path, pairs_file) -> None:
    path, _ = write_vectors(tmp_path, "glove")
    warned: list[str] = []
    session = cxql.connect(nli.build_nli_store(pairs_file, tagger=None, vectors=path, on_warning=warned.append))
    assert "1 of" in warned[0] and "outside" in warned[0]
    with pytest.raises(cxql.CxqlError, match="the word 'outside' has no vector"):
        session.execute("NEIGHBORS(hyp:outside)")
    with pytest.raises(cxql.CxqlError, match="needs a word concept.*label:entailment"):
        session.execute("NEIGHBORS(entailment)")
    bare = cxql.connect(nli.build_nli_store(pairs_file, tagger=None))
    with pytest.raises(cxql.CxqlError, match="needs word vectors"):
        bare.execute("NEIGHBORS(pre:man)")


def test_neighbors_of_a_tag_is_an_error_and_tags_are_no_neighbors(tmp_path, pairs_file) -> None:
    path, kv = write_vectors(tmp_path, "glove")
    store = nli.build_nli_store(pairs_file, tagger=cxql.text.SpacyTagger(tiny_pipeline()), vectors=path,
                                on_warning=lambda m: None)
    session = cxql.connect(store)
    with pytest.raises(cxql.CxqlError, match="needs a word concept.*pre:pos:NN"):
        session.execute("NEIGHBORS(pre:pos:NN)")
    index = {c.qualified: c.index for c in store.concepts}
    assert session.compiler.neighbors(index["hyp:man"], 4) == [index[f"hyp:{w}"] for w in
                                                              ["man"] + expected_neighbors(kv, "man", 4)]


def test_bad_vectors_files(tmp_path, pairs_file) -> None:
    pytest.importorskip("gensim")
    (tmp_path / "none.txt").write_text("zebra 0.1 0.2\n", encoding="utf-8")
    with pytest.raises(DataError, match="none of the store's .* words has a vector"):
        nli.build_nli_store(pairs_file, tagger=None, vectors=tmp_path / "none.txt")
    (tmp_path / "junk.txt").write_bytes(b"man 0.1 zz\n")
    with pytest.raises(DataError, match="not a glove word-vectors file"):
        nli.build_nli_store(pairs_file, tagger=None, vectors=tmp_path / "junk.txt")
    with pytest.raises(DataError, match="no such word-vectors file"):
        nli.build_nli_store(pairs_file, tagger=None, vectors=tmp_path / "nope.txt")


# ---------------------------------------------------------------- recording a text model


class TinyEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(50, 8)
        self.proj = torch.nn.Linear(8, 4)
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())

    def forward(self, input_ids, attention_mask):
        hidden = self.proj(self.emb(input_ids))
        return self.head(hidden[:, 0])


def encode(batch) -> dict:
    ids = [[hash(w) % 50 for w in (p + " " + h).split()] for p, h in batch]
    width = max(map(len, ids))
    return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])}


PAIR_TEXT = [(r["sentence1"], r["sentence2"]) for r in PAIRS]


@pytest.mark.parametrize("pool", ["mean", "max", "first", "last"])
def test_record_pools_token_outputs_over_real_tokens(pool) -> None:
    model = TinyEncoder()
    acts = tr.record_text(model, "proj", PAIR_TEXT, encode, pool=pool, batch_size=3)
    assert acts.shape == (len(PAIRS), 4) and acts.dtype == np.float32
    with torch.no_grad():
        for i, pair in enumerate(PAIR_TEXT):
            inputs = encode([pair])  # alone: no padding at all
            hidden = model.proj(model.emb(inputs["input_ids"]))[0].numpy()
            want = {"mean": hidden.mean(0), "max": hidden.max(0), "first": hidden[0], "last": hidden[-1]}[pool]
            np.testing.assert_allclose(acts[i], want, rtol=1e-5, atol=1e-6)


def test_record_unpooled_layer_and_custom_pool() -> None:
    model = TinyEncoder()
    acts = tr.record_text(model, model.head[1], PAIR_TEXT, encode, pool="none", batch_size=4)
    with torch.no_grad():
        np.testing.assert_allclose(acts, model(**encode(PAIR_TEXT)).numpy(), rtol=1e-5, atol=1e-6)
    summed = tr.record_text(model, "proj", PAIR_TEXT, encode, pool=lambda out, inputs: out.sum(dim=1))
    assert summed.shape == (len(PAIRS), 4)
    assert not any(m._forward_hooks for m in model.modules())   # hooks are removed
    with pytest.raises(DataError, match="no module 'nope'"):
        tr.record_text(model, "nope", PAIR_TEXT, encode)
    with pytest.raises(DataError, match="pool='none' needs a \\[batch, units\\]"):
        tr.record_text(model, "proj", PAIR_TEXT, encode, pool="none")


def test_units_add_cli_on_pair_activations_thresholds_at_zero(tmp_path, pairs_file) -> None:
    nli.build_nli_store(pairs_file, tagger=None).save(tmp_path / "st")
    acts = np.random.default_rng(3).normal(size=(len(PAIRS), 5)).astype(np.float32)
    np.save(tmp_path / "acts.npy", acts)
    assert main(["units", "add", str(tmp_path / "st"), "mlp", str(tmp_path / "acts.npy")]) == 0
    rows = cxql.connect(tmp_path / "st").execute("SHOW units").rows
    assert [r["mask_size"] for r in rows] == list((acts > 0).sum(axis=0))


# ---------------------------------------------------------------- SEARCH ... WITH accuracy


def test_search_with_accuracy_matches_numpy(tmp_path, pairs_file, capsys) -> None:
    store = nli.build_nli_store(pairs_file, tagger=None).save(tmp_path / "st")
    rng = np.random.default_rng(5)
    acts = rng.normal(size=(len(PAIRS), 4)).astype(np.float32)
    acts[:, 3] = -1.0                                          # a unit that never fires
    store.add_units("mlp", acts)
    weights, preds = rng.normal(size=(3, 4)), rng.integers(0, 3, len(PAIRS))
    np.save(tmp_path / "w.npy", weights)
    np.save(tmp_path / "p.npy", preds)
    assert main(["nli", "classifier", str(tmp_path / "st"), "mlp", "--weights", str(tmp_path / "w.npy"),
                 "--predictions", str(tmp_path / "p.npy")]) == 0
    session = cxql.connect(tmp_path / "st")
    session.execute("SET min_active = 0")
    classes = ["entailment", "neutral", "contradiction"]
    gold = np.array([classes.index(r["gold_label"]) if r.get("gold_label") in classes else -1 for r in PAIRS])
    for setting, threshold in (("'default'", 0.0), ("0.5", 0.5)):     # stored masks, then SET threshold
        session.execute(f"SET threshold = {setting}")
        result = session.execute("SEARCH unit * LENGTH 2 WITH accuracy")
        for row in result.rows:
            u = row["unit"]
            fires = (acts[:, u] > threshold) & (gold >= 0)
            assert row["favours"] == classes[int(np.argmax(weights[:, u]))]
            assert row["weights"] == {c: float(weights[i, u]) for i, c in enumerate(classes)}
            assert row["accuracy"] == ((preds[fires] == gold[fires]).mean() if fires.any() else None)
    session.execute("SET threshold = 'default'")
    result = session.execute("SEARCH unit * LENGTH 2 WITH accuracy")
    assert result.columns[:5] == ["unit", "formula", "iou", "favours", "accuracy"]
    assert cxql.parse("search unit * length 2 with accuracy") == cxql.parse(str(result.statement))
    # [units, classes] weights and score predictions are accepted too
    cxql.text_record.attach_classifier(session.store, "mlp", weights.T, np.eye(3)[preds])
    assert session.execute("SEARCH unit 0 WITH accuracy").rows[0]["favours"] == result.rows[0]["favours"]


def test_with_accuracy_without_a_classifier_and_bad_shapes(pairs_file) -> None:
    store = nli.build_nli_store(pairs_file, tagger=None)
    store.add_units("mlp", np.ones((len(PAIRS), 2), np.float32))
    session = cxql.connect(store)
    with pytest.raises(cxql.CxqlError, match="no classifier attached"):
        session.execute("SEARCH unit 0 WITH accuracy")
    with pytest.raises(DataError, match="weights must be"):
        cxql.text_record.attach_classifier(store, "mlp", np.zeros((4, 2)), np.zeros(len(PAIRS), int))
    with pytest.raises(DataError, match="predictions must be"):
        cxql.text_record.attach_classifier(store, "mlp", np.zeros((3, 2)), np.zeros(3, int))
    with pytest.raises(DataError, match=r"weights must be finite numbers; found inf at \[1, 0\]"):
        cxql.text_record.attach_classifier(store, "mlp", np.array([[0, 1], [np.inf, 0], [1, 1]]),
                                           np.zeros(len(PAIRS), int))
    scores = np.zeros((len(PAIRS), 3))
    scores[2, 1] = np.nan
    with pytest.raises(DataError, match=r"prediction scores must be finite numbers; found nan at \[2, 1\]"):
        cxql.text_record.attach_classifier(store, "mlp", np.zeros((3, 2)), scores)
    assert "classifiers" not in store.metadata


def test_search_statement_round_trips() -> None:
    for text in ("SEARCH unit * WITH accuracy", "SEARCH unit 1, 4..6 LENGTH 5 BEAM 10 DISTINCT WITH accuracy"):
        tree = cxql.parse(text)
        assert tree.accuracy and str(tree) == text and cxql.parse(str(tree)) == tree
    assert json.dumps(str(cxql.parse("pre:with OR hyp:accuracy"))) == '"(pre:with OR hyp:accuracy)"'


@pytest.mark.parametrize("content, message", [
    ("", "empty word-vectors file"),
    ("3000000000000 300\ndog 1 2\n", "its header promises 3,000,000,000,000 vectors of 300 numbers"),  # was MemoryError
    ("dog nan 1\ncat 1 2\n", "the vector of 'dog' holds NaN or inf (1 word(s) in all)"),
    ("dog 1 2\ncat inf 2\n", "the vector of 'cat' holds NaN or inf"),
    ("dog 1 2\ncat 1\n", ":2: a word and 1 numbers, but the vectors have 2 numbers each"),  # gensim padded it
    ("2 2\ndog 1 2\ncat 1 2 3\n", ":3: a word and 3 numbers, but the vectors have 2 numbers each"),
])
def test_bad_word_vector_files_are_refused_by_name(tmp_path, content, message) -> None:
    pytest.importorskip("gensim")
    from cxql.text import load_vectors

    path = tmp_path / "vectors.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:") as err:   # the file, and the line where one is at fault
        load_vectors(path)
    assert message in str(err.value)
