"""NEIGHBORS on token stores: word vectors kept by the CoNLL-U and text builders, checked against numpy cosines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.cli import main
from cxql.errors import DataError
from cxql.store.conllu import build_conllu_store
from cxql.store.text_tokens import build_text_store

pytest.importorskip("gensim")

SENTENCES = [  # (form, lemma, upos)
    [("The", "the", "DET"), ("dog", "dog", "NOUN"), ("runs", "run", "VERB")],
    [("Dogs", "dog", "NOUN"), ("chase", "chase", "VERB"), ("cats", "cat", "NOUN")],
    [("A", "a", "DET"), ("cat", "cat", "NOUN"), ("sleeps", "sleep", "VERB"), ("quietly", "quietly", "ADV")],
    [("The", "the", "DET"), ("car", "car", "NOUN"), ("stops", "stop", "VERB"), ("zzyzx", "zzyzx", "X")],
    [("Puppies", "puppy", "NOUN"), ("run", "run", "VERB")],
]
#: Words with a vector: every form and lemma but "zzyzx", plus words the store lacks.
VECTOR_WORDS = sorted({w.lower() for s in SENTENCES for f, lemma, _ in s for w in (f, lemma)} - {"zzyzx"}
                      | {"horse", "truck"})


def write_conllu(path: Path) -> Path:
    lines = []
    for k, sentence in enumerate(SENTENCES):
        lines.append(f"# sent_id = s{k}")
        lines += [f"{i}\t{f}\t{lemma}\t{upos}\t_\t_\t0\tdep\t_\t_" for i, (f, lemma, upos) in enumerate(sentence, 1)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_vectors(path: Path, dim: int = 5) -> dict[str, np.ndarray]:
    """A GloVe text file of random vectors; returns them by word."""
    rng = np.random.default_rng(11)
    vectors = {w: rng.normal(size=dim).astype(np.float32) for w in VECTOR_WORDS}
    path.write_text("".join(w + " " + " ".join(repr(float(x)) for x in v) + "\n" for w, v in vectors.items()),
                    encoding="utf-8")
    return vectors


def nearest(vectors: dict[str, np.ndarray], word: str, family: list[str], k: int) -> list[str]:
    """The k words of ``family`` (with a vector, ``word`` excluded) nearest ``word`` by numpy cosine."""
    unit = {w: v.astype(np.float64) / np.linalg.norm(v.astype(np.float64)) for w, v in vectors.items()}
    others = [w for w in family if w != word and w in unit]
    sims = np.array([unit[w] @ unit[word] for w in others])
    return [others[i] for i in np.argsort(-sims, kind="stable")[:k]]


@pytest.fixture
def built(tmp_path):
    vectors = write_vectors(tmp_path / "v.txt")
    warned: list[str] = []
    store = build_conllu_store(write_conllu(tmp_path / "s.conllu"), min_count=1, vectors=tmp_path / "v.txt",
                               on_warning=warned.append)
    return store, vectors, warned


def family(store, category: str) -> list[str]:
    return [c.name for c in store.concepts if c.category == category]


def test_conllu_store_keeps_vectors_of_its_words_and_lemmas(built) -> None:
    store, vectors, warned = built
    meta = store.metadata["word_vectors"]
    assert meta["missing"] == ["zzyzx"] and "zzyzx" in warned[0]
    assert set(meta["vocabulary"]) == (set(family(store, "word")) | set(family(store, "lemma"))) - {"zzyzx"}
    for row, word in zip(store.arrays["word_vectors"], meta["vocabulary"]):
        np.testing.assert_array_equal(row, vectors[word])


@pytest.mark.parametrize("category, word, k", [("word", "dog", 5), ("word", "cats", 2), ("word", "the", 1),
                                               ("lemma", "dog", 5), ("lemma", "run", 3)])
def test_neighbors_are_the_nearest_words_of_the_same_family(built, category, word, k) -> None:
    store, vectors, _ = built
    names = family(store, category)
    index = {c.qualified: c.index for c in store.concepts}
    near = nearest(vectors, word, names, k)
    assert len(near) == k
    session = cxql.connect(store)
    assert session.compiler.neighbors(index[f"{category}:{word}"], k) == \
        [index[f"{category}:{w}"] for w in [word] + near]
    query = f"NEIGHBORS({category}:{word})" if k == 5 else f"NEIGHBORS({category}:{word}, {k})"
    expect = session.execute(" OR ".join(f"{category}:{w}" for w in [word] + near)).rows[0]["positions"]
    assert session.execute(query).rows[0]["positions"] == expect
    plan = [r["plan"].strip() for r in session.execute(f"EXPLAIN {query}").rows]
    assert any(line.startswith("formula NEIGHBORS(") and line.endswith("(length 1)") for line in plan)
    loads = next(line for line in plan if line.startswith("t0 = ")).removeprefix("t0 = ").split(" | ")
    assert sorted(loads) == sorted(f"concept[{index[f'{category}:{w}']}]" for w in [word] + near)


def test_neighbors_survive_save_and_open(tmp_path, built) -> None:
    store, vectors, _ = built
    store.save(tmp_path / "st")
    (tmp_path / "v.txt").unlink()
    session = cxql.connect(tmp_path / "st")
    assert session.compiler.neighbors.words("dog", 5, "word") == nearest(vectors, "dog", family(store, "word"), 5)


def test_neighbors_errors_on_token_stores(tmp_path, built) -> None:
    store, _, _ = built
    session = cxql.connect(store)
    with pytest.raises(cxql.CxqlError, match="the word 'zzyzx' has no vector"):
        session.execute("NEIGHBORS(word:zzyzx)")
    with pytest.raises(cxql.CxqlError, match="needs a word concept.*upos:NOUN"):
        session.execute("NEIGHBORS(upos:NOUN)")
    with pytest.raises(cxql.CxqlError):
        session.execute("NEIGHBORS(word:unicorn)")
    bare = cxql.connect(build_conllu_store(tmp_path / "s.conllu", min_count=1))
    with pytest.raises(cxql.CxqlError, match="needs word vectors"):
        bare.execute("NEIGHBORS(word:dog)")


def test_rare_pool_has_no_neighbors_and_is_no_neighbor(tmp_path) -> None:
    write_vectors(tmp_path / "v.txt")
    store = build_conllu_store(write_conllu(tmp_path / "s.conllu"), min_count=2, vectors=tmp_path / "v.txt",
                               on_warning=lambda m: None)
    assert "<rare>" not in store.metadata["word_vectors"]["vocabulary"]
    with pytest.raises(cxql.CxqlError, match="needs a word concept"):
        cxql.connect(store).execute('NEIGHBORS(word:"<rare>")')


def test_text_store_keeps_vectors_too(tmp_path) -> None:
    vectors = write_vectors(tmp_path / "v.txt")
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps({"text": " ".join(f for f, _, _ in s)}) + "\n" for s in SENTENCES))
    store = build_text_store(texts, min_count=1, vectors=tmp_path / "v.txt", on_warning=lambda m: None)
    index = {c.qualified: c.index for c in store.concepts}
    near = nearest(vectors, "cat", family(store, "word"), 5)
    assert cxql.connect(store).compiler.neighbors(index["word:cat"], 5) == [index[f"word:{w}"] for w in ["cat"] + near]


def test_bad_vectors_file_is_refused(tmp_path) -> None:
    (tmp_path / "junk.txt").write_text("dog 0.1 zz\n")
    with pytest.raises(DataError, match="junk.txt: not a glove word-vectors file"):
        build_conllu_store(write_conllu(tmp_path / "s.conllu"), vectors=tmp_path / "junk.txt")
    (tmp_path / "other.txt").write_text("horse 1 2\n")
    with pytest.raises(DataError, match="none of the store's"):
        build_conllu_store(tmp_path / "s.conllu", min_count=1, vectors=tmp_path / "other.txt")


@pytest.mark.parametrize("builder", ["conllu", "text"])
def test_cli_builds_with_vectors(tmp_path, capsys, builder) -> None:
    write_vectors(tmp_path / "v.txt")
    source = write_conllu(tmp_path / "s.conllu")
    if builder == "text":
        source = tmp_path / "t.jsonl"
        source.write_text("".join(json.dumps({"text": " ".join(f for f, _, _ in s)}) + "\n" for s in SENTENCES))
    code = main(["store", "build", builder, str(source), "--out", str(tmp_path / "st"), "--min-count", "1",
                 "--vectors", str(tmp_path / "v.txt"), "--vectors-format", "glove"])
    assert code == 0 and "vectors:" in capsys.readouterr().err
    assert cxql.connect(tmp_path / "st").execute("NEIGHBORS(word:dog, 2)").rows[0]["positions"] > 0
