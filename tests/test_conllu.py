"""CoNLL-U token stores: every concept kind against a direct reading of the file, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.errors import DataError
from token_reference import position_masks

from cxql.store.conllu import BUCKETS, RARE, build_conllu_store, bucket, read_conllu

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tokens" / "sample.conllu"


def expected(path: Path, min_count: int) -> dict[str, np.ndarray]:
    """The concepts' masks computed straight from the file's columns (no shared code with the builder)."""
    words = []  # (form, lemma, upos, xpos, feats, dep, index, length)
    sentence: list[list[str]] = []
    for line in path.read_text().splitlines() + [""]:
        if not line.strip():
            for i, cols in enumerate(sentence):
                words.append((cols, i, len(sentence)))
            sentence = []
        elif not line.startswith("#"):
            cols = line.split("\t")
            if "-" not in cols[0] and "." not in cols[0]:
                sentence.append(cols)
    forms = [c[1].lower() for c, _, _ in words]
    lemmas = [c[2] for c, _, _ in words]
    out: dict[str, list[bool]] = {}

    def mark(name: str, k: int) -> None:
        out.setdefault(name, [False] * len(words))[k] = True

    for k, (cols, i, n) in enumerate(words):
        mark("word:" + (forms[k] if forms.count(forms[k]) >= min_count else RARE), k)
        mark("lemma:" + (lemmas[k] if lemmas.count(lemmas[k]) >= min_count else RARE), k)
        mark("upos:" + cols[3], k)
        mark("xpos:" + cols[4], k)
        mark("dep:" + cols[7], k)
        for f in cols[5].split("|") if cols[5] != "_" else []:
            mark("feat:" + f, k)
        if i == 0:
            mark("sent:start", k)
        if i == n - 1:
            mark("sent:end", k)
        mark("position:" + bucket(i), k)
    return {name: np.array(v) for name, v in out.items()}


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_every_concept_matches_the_file(min_count):
    store = build_conllu_store(SAMPLE, min_count=min_count)
    want = expected(SAMPLE, min_count)
    got = position_masks(store)
    assert set(got) == set(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert store.kind == "tokens" and store.n_samples == 10
    assert list(store.sample_offsets[:3]) == [0, 4, 8]
    assert store.sample_names[0] == "s1"


def test_buckets_cover_every_index_once():
    for i in range(100):
        assert sum(lo <= i and (hi is None or i <= hi) for _, lo, hi in BUCKETS) == 1


def test_query_on_a_token_store(tmp_path):
    store = build_conllu_store(SAMPLE)
    masks = position_masks(store)
    store.add_unit_masks("toy", np.stack([masks["upos:NOUN"] & masks["feat:Number=Plur"]], axis=1))
    store.save(tmp_path / "s")
    [row] = cxql.connect(tmp_path / "s").execute("SEARCH unit 0 LENGTH 1").rows
    assert row["formula"] in ("xpos:NNS", "NNS") and row["iou"] == 1.0
    [row] = cxql.connect(tmp_path / "s").execute('EVAL upos:NOUN AND feat:"Number=Plur" ON unit 0').rows
    assert row["iou"] == 1.0


MULTI = "# sent_id = fr1\n1-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t3\tcase\t_\t_\n" \
        "2\tle\tle\tDET\t_\tDefinite=Def\t3\tdet\t_\t_\n2.1\tx\tx\tX\t_\t_\t_\t_\t_\t_\n" \
        "3\tchat\tchat\tNOUN\t_\tGender=Masc\t0\troot\t_\t_\n\n"


def test_multiword_ranges_and_empty_nodes_give_no_position(tmp_path):
    path = tmp_path / "fr.conllu"
    path.write_text(MULTI)
    corpus = read_conllu(path)
    assert [w.form for w in corpus.sentences[0].words] == ["de", "le", "chat"]
    store = build_conllu_store(path, min_count=1)
    assert store.n_positions == 3 and "word:du" not in position_masks(store)


@pytest.mark.parametrize("line, fault", [
    ("1\tde\tde\tADP\t_\t_\t3\tcase\t_", "expected 10 tab-separated columns, found 9"),
    ("x\tde\tde\tADP\t_\t_\t3\tcase\t_\t_", "bad word id 'x'"),
    ("5\tde\tde\tADP\t_\t_\t3\tcase\t_\t_", "word id 5 out of order"),
    ("3-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_", "multi-word token range '3-2'"),
    ("2\tle\tle\tDET\t_\tDefinite\t3\tdet\t_\t_", "bad FEATS item 'Definite'"),
])
def test_bad_lines_are_refused_with_file_and_line_or_skipped(tmp_path, line, fault):
    path = tmp_path / "bad.conllu"
    good = "1\tA\ta\tDET\t_\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
    path.write_text(good + "1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n" + line + "\n\n" + good)
    with pytest.raises(DataError) as err:
        build_conllu_store(path)
    assert f"{path}:5: " in str(err.value) and fault in str(err.value)
    warnings = []
    store = build_conllu_store(path, skip_bad=True, on_warning=warnings.append)
    assert store.n_samples == 2 and store.n_positions == 4
    assert store.metadata["skipped"] == [{"line": 5, "reason": store.metadata["skipped"][0]["reason"],
                                          "sentence_line": 4}]
    assert fault in store.metadata["skipped"][0]["reason"] and len(warnings) == 1


def test_cli_builds_and_refuses_to_overwrite_a_non_store(tmp_path, capsys):
    from cxql.cli import main

    out = tmp_path / "tok"
    assert main(["store", "build", "conllu", str(SAMPLE), "--out", str(out)]) == 0
    assert cxql.ConceptStore.open(out).n_positions == 55
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["store", "build", "conllu", str(SAMPLE), "--out", str(other)]) != 0
    assert (other / "keep.txt").read_text() == "mine"
