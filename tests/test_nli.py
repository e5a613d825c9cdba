"""Text stores (``cxql store build nli``) against a direct computation on hand-written pairs.

Every kind of concept (words per side, tags per side, overlap, gold label) is
recomputed here from the sentences with plain Python, independently of
cxql's builder, and SEARCH on a text store is checked against the plain numpy
reference. The spaCy parts use a tiny pipeline built in the test (a blank
English tokenizer plus a lookup tagger), so no model is ever downloaded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import cxql
import reference as ref
from cxql.cli import main
from cxql.errors import DataError
from cxql.store import nli
from cxql.store import signatures as sig

PAIRS = [
    {"sentence1": "A man is playing a guitar on stage.", "sentence2": "A man is playing music.",
     "gold_label": "entailment", "pairID": "p1"},
    {"sentence1": "Two dogs run in the park.", "sentence2": "The dogs are sleeping.", "gold_label": "contradiction"},
    {"sentence1": "A woman is reading a book.", "sentence2": "A woman is reading a book.", "gold_label": "entailment"},
    {"sentence1": "Kids play soccer in the park.", "sentence2": "Kids play a game of soccer outside.",
     "gold_label": "neutral"},
    {"sentence1": "A man sleeps.", "sentence2": "Nobody is awake.", "gold_label": "-"},
    {"sentence1": "The man is eating his food, quickly.", "sentence2": "A man eats.", "gold_label": "neutral"},
    {"sentence1": "Dogs play in the snow.", "sentence2": "Animals are outside."},
]
TAGS = {"a": "DT", "the": "DT", "man": "NN", "woman": "NN", "is": "VBZ", "are": "VBP", "playing": "VBG",
        ".": ".", ",": ",", "dogs": "NNS", "kids": "NNS", "two": "CD", "his": "PRP$"}
LEMMAS = {"is": "be", "are": "be", "playing": "play", "dogs": "dog", "kids": "kid", "sleeps": "sleep",
          "eats": "eat", "eating": "eat", "sleeping": "sleep", "reading": "read"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tokens(sentence: str) -> list[str]:
    """The hand-written pairs tokenize by spaces once '.' and ',' stand apart."""
    return sentence.lower().replace(".", " .").replace(",", " ,").split()


def direct_concepts(rows: list[dict], n_words: int, form=lambda t: t, tags=None):
    """(names, categories, masks [N, K]) computed straight from the sentences, as the SPEC says."""
    sides = [[[form(t) for t in tokens(r[key])] for key in ("sentence1", "sentence2")] for r in rows]
    counts: Counter[str] = Counter()
    for pre, hyp in sides:
        counts.update(pre + hyp)  # insertion order = first appearance, which breaks ties
    words = [w for w, _ in counts.most_common() if w not in {"a", "an", "the", "of"} and any(c.isalnum() for c in w)]
    words = words[:n_words]
    surface = [tokens(r[k]) for r in rows for k in ("sentence1", "sentence2")]
    tag_names = sorted({tags[t] for sentence in surface for t in sentence}) if tags else []
    labels = [lab for lab in ("entailment", "neutral", "contradiction")
              if any(r.get("gold_label") == lab for r in rows)]
    names, cats, cols = [], [], []
    for s, key in enumerate(("sentence1", "sentence2")):
        side = ("pre", "hyp")[s]
        for w in words:
            names.append(w), cats.append(side), cols.append([w in sd[s] for sd in sides])
        for t in tag_names:
            names.append(f"pos:{t}"), cats.append(side)
            cols.append([t in {tags[x] for x in tokens(r[key])} for r in rows])
    for level in (25, 50, 75):
        names.append(f"overlap-{level}"), cats.append("overlap")
        cols.append([_overlap(set(pre), set(hyp)) > level / 100 for pre, hyp in sides])
    for lab in labels:
        names.append(lab), cats.append("label"), cols.append([r.get("gold_label") == lab for r in rows])
    return names, cats, np.array(cols, dtype=bool).T


def _overlap(pre: set, hyp: set) -> float:
    both, one = len(pre & hyp), len(pre ^ hyp)
    return (float("inf") if both else 0.0) if one == 0 else both / one


def store_masks(store: cxql.ConceptStore) -> np.ndarray:
    """Dense [N, K] concept masks read back from the store's signatures."""
    return sig.unpack_rows(np.asarray(store.signature_bits), len(store.concepts))[
        np.asarray(store.position_signatures, dtype=np.int64)]


def assert_concepts(store: cxql.ConceptStore, names, cats, masks) -> None:
    assert [(c.name, c.category) for c in store.concepts] == list(zip(names, cats))
    np.testing.assert_array_equal(store_masks(store), masks)


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIRS)


# ---------------------------------------------------------------- concepts


@pytest.mark.parametrize("n_words", [3, 6, 2000])
def test_words_overlap_labels_match_direct_computation(pairs_file, n_words) -> None:
    store = nli.build_nli_store(pairs_file, words=n_words, tagger=None)
    assert_concepts(store, *direct_concepts(PAIRS, n_words))
    assert store.kind == "text" and store.n_positions == store.n_samples == len(PAIRS)
    meta = store.metadata
    assert meta["pos"] is None and "turned off" in meta["pos_note"]
    assert meta["words"]["form"] == "surface" and meta["tokenizer"] == "regex"
    assert meta["labels"] == {"entailment": 2, "neutral": 2, "contradiction": 1} and meta["unlabelled"] == 2


def test_identical_sentences_overlap_fully_and_no_label_gets_no_concept(pairs_file) -> None:
    store = nli.build_nli_store(pairs_file, words=5, tagger=None)
    masks = store_masks(store)
    col = {c.qualified: c.index for c in store.concepts}
    assert masks[2, col["overlap:overlap-75"]]                     # the same sentence twice
    assert not masks[4, [col["label:entailment"], col["label:neutral"], col["label:contradiction"]]].any()
    assert store.sample_names[:2] == ["p1", "line2"]


def test_store_round_trips_and_formulas_print_qualified(tmp_path, pairs_file) -> None:
    nli.build_nli_store(pairs_file, words=10, tagger=None).save(tmp_path / "st")
    session = cxql.connect(tmp_path / "st")
    row = session.execute("pre:man AND NOT hyp:man OR overlap-75").rows[0]
    assert row["formula"] == "((pre:man AND NOT hyp:man) OR overlap-75)"
    names, cats, masks = direct_concepts(PAIRS, 10)
    k = {f"{c}:{n}": i for i, (n, c) in enumerate(zip(names, cats))}
    expect = (masks[:, k["pre:man"]] & ~masks[:, k["hyp:man"]]) | masks[:, k["overlap:overlap-75"]]
    assert row["positions"] == int(expect.sum())
    with pytest.raises(cxql.CxqlError, match="ambiguous concept 'man'.*pre:man, hyp:man"):
        session.execute("man")


# ---------------------------------------------------------------- spaCy tags (a tiny pipeline built here)


def tiny_pipeline():
    spacy = pytest.importorskip("spacy")
    from spacy.language import Language

    if "cxql_test_lookup" not in Language.factories:
        @Language.component("cxql_test_lookup")
        def lookup(doc):
            for t in doc:
                t.tag_ = TAGS.get(t.lower_, "NN")
                t.lemma_ = LEMMAS.get(t.lower_, t.lower_)
            return doc
    nlp = spacy.blank("en")
    nlp.add_pipe("cxql_test_lookup")
    nlp.meta.update(name="cxql_test", version="1.2.3")
    return nlp


def test_pos_tags_per_side_match_direct_computation(pairs_file) -> None:
    nlp = tiny_pipeline()
    store = nli.build_nli_store(pairs_file, words=6, tagger=cxql.text.SpacyTagger(nlp))
    tags = {t: TAGS.get(t, "NN") for r in PAIRS for k in ("sentence1", "sentence2") for t in tokens(r[k])}
    assert_concepts(store, *direct_concepts(PAIRS, 6, tags=tags))
    pos = store.metadata["pos"]
    assert (pos["pipeline"], pos["version"]) == ("en_cxql_test", "1.2.3") and pos["spacy"]
    assert store.metadata["pos_note"] is None and store.metadata["tokenizer"] == "spacy"
    session = cxql.connect(store)
    assert session.execute('"pre:pos:PRP$" OR pre:pos:NNS').rows[0]["formula"] == '("pre:pos:PRP$" OR pre:pos:NNS)'
    assert {c.category for c in store.concepts} == {"pre", "hyp", "overlap", "label"}
    with pytest.raises(cxql.CxqlError, match="ambiguous concept 'pos:NN'.*pre:pos:NN, hyp:pos:NN"):
        session.execute("pos:NN")


def test_lemma_option_uses_the_pipeline_lemmas(pairs_file) -> None:
    nlp = tiny_pipeline()
    store = nli.build_nli_store(pairs_file, words=2000, lemma=True, tagger=cxql.text.SpacyTagger(nlp))
    tags = {t: TAGS.get(t, "NN") for r in PAIRS for k in ("sentence1", "sentence2") for t in tokens(r[k])}
    assert_concepts(store, *direct_concepts(PAIRS, 2000, form=lambda t: LEMMAS.get(t, t), tags=tags))
    assert store.metadata["words"]["form"] == "lemma"


def test_lemma_without_a_pipeline_is_a_clear_error(pairs_file) -> None:
    with pytest.raises(DataError, match="--lemma needs a spaCy pipeline"):
        nli.build_nli_store(pairs_file, lemma=True, tagger=None)


def test_missing_pipeline_builds_without_tags_and_says_so(pairs_file, monkeypatch) -> None:
    monkeypatch.setattr(cxql.text, "DEFAULT_PIPELINE", "cxql_no_such_pipeline")
    store = nli.build_nli_store(pairs_file, words=4, tagger="auto")
    assert store.metadata["pos"] is None and "no tag concepts" in store.metadata["pos_note"]
    assert not any(c.name.startswith("pos:") for c in store.concepts)
    with pytest.raises(DataError, match="not installed"):
        nli.build_nli_store(pairs_file, tagger="cxql_no_such_pipeline")


# ---------------------------------------------------------------- bad input


def bad_file(tmp_path: Path) -> Path:
    lines = [json.dumps(PAIRS[0]).encode(), b"{not json", json.dumps({"sentence1": "A dog."}).encode(),
             json.dumps({"sentence1": "A dog.", "sentence2": "  "}).encode(), b"",
             '{"sentence1": "Caf\u00e9.", "sentence2": "x"}'.encode("latin-1"), json.dumps(PAIRS[1]).encode(),
             b"[1, 2]"]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_lines_refuse_the_build_listing_each_with_its_line(tmp_path) -> None:
    path = bad_file(tmp_path)
    with pytest.raises(DataError) as err:
        nli.build_nli_store(path, tagger=None)
    text = str(err.value)
    for fault in (":2: not JSON", ":3: sentence2 is missing", ":4: sentence2 is empty", ":6: not UTF-8",
                  ":8: expected a JSON object"):
        assert f"{path}{fault}" in text
    assert "5 bad line(s)" in text and "--skip-bad" in text


def test_skip_bad_keeps_the_rest_warns_and_records_lines(tmp_path) -> None:
    warned: list[str] = []
    store = nli.build_nli_store(bad_file(tmp_path), tagger=None, skip_bad=True, on_warning=warned.append)
    assert store.n_samples == 2 and store.metadata["skipped_lines"] == [2, 3, 4, 6, 8]
    assert len(warned) == 5 and all("skipped" in w for w in warned)
    with pytest.warns(UserWarning) as caught:
        nli.build_nli_store(bad_file(tmp_path), tagger=None, skip_bad=True)
    assert [str(w.message) for w in caught] == warned


def test_empty_or_all_bad_file_is_an_error(tmp_path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence pairs"):
        nli.build_nli_store(tmp_path / "empty.jsonl", tagger=None)
    with pytest.raises(DataError, match="cannot read pairs"):
        nli.build_nli_store(tmp_path / "missing.jsonl", tagger=None)


def test_cli_build_and_bad_input_exit_codes(tmp_path, pairs_file, capsys) -> None:
    out = tmp_path / "st"
    assert main(["store", "build", "nli", str(pairs_file), "--out", str(out), "--words", "5",
                 "--pipeline", "none"]) == 0
    assert "7 pairs" in capsys.readouterr().err
    assert [c.name for c in cxql.ConceptStore.open(out).concepts][:5] == direct_concepts(PAIRS, 5)[0][:5]
    bad = bad_file(tmp_path)
    assert main(["store", "build", "nli", str(bad), "--out", str(tmp_path / "b"), "--pipeline", "none"]) == 1
    assert f"{bad}:2: not JSON" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["store", "build", "nli", str(bad), "--out", str(tmp_path / "b"), "--pipeline", "none",
                 "--skip-bad"]) == 0
    assert "warning:" in capsys.readouterr().err


# ---------------------------------------------------------------- SEARCH on a text store


def random_pairs(seed: int, n: int = 240) -> list[dict]:
    rng = np.random.default_rng(seed)
    who, what = ["man", "woman", "dog", "kid", "nobody"], ["sleeps", "runs", "eats", "sits", "plays"]
    where = ["outside", "inside", "on a couch", "in the park"]
    rows = []
    for _ in range(n):
        s1 = f"A {rng.choice(who)} {rng.choice(what)} {rng.choice(where)}."
        s2 = f"The {rng.choice(who)} {rng.choice(what)}." if rng.random() < 0.6 else s1
        rows.append({"sentence1": s1, "sentence2": s2,
                     "gold_label": str(rng.choice(["entailment", "neutral", "contradiction", "-"]))})
    return rows


def test_search_matches_the_numpy_reference(tmp_path) -> None:
    rows = random_pairs(0)
    store = nli.build_nli_store(write_jsonl(tmp_path / "p.jsonl", rows), words=12, tagger=None)
    names, cats, masks = direct_concepts(rows, 12)
    rng = np.random.default_rng(1)
    k = {f"{c}:{n}": i for i, (n, c) in enumerate(zip(names, cats))}
    signal = np.stack([masks[:, k["pre:sleeps"]] | masks[:, k["hyp:nobody"]],
                       masks[:, k["overlap:overlap-50"]] & ~masks[:, k["hyp:dog"]],
                       masks[:, k["label:contradiction"]], np.zeros(len(rows), bool)], axis=1)
    acts = np.where(signal, 1.0, -1.0) + rng.normal(0, 0.6, signal.shape)
    store.add_units("mlp", acts.astype(np.float32))
    session = cxql.connect(store)
    session.execute("SET min_active = 0")
    result = session.execute("SEARCH unit * LENGTH 3 BEAM 5")
    display = ref.display_names(names, cats)
    for row in result.rows:
        expect = ref.search(masks, display, acts[:, row["unit"]] > 0, length=3, beam=5)
        assert (row["formula"], row["iou"]) == (expect.formula, expect.iou)


def test_min_active_skips_rare_units_for_star_with_a_note(pairs_file) -> None:
    store = nli.build_nli_store(pairs_file, words=5, tagger=None)
    acts = np.zeros((len(PAIRS), 3), np.float32)
    acts[:5, 0], acts[:2, 1] = 1.0, 1.0            # unit 0 fires on 5 pairs, unit 1 on 2, unit 2 never
    store.add_units("mlp", acts)
    session = cxql.connect(store)
    assert session.settings["min_active"] == 500
    session.execute("SET min_active = 3")
    result = session.execute("SEARCH unit * LENGTH 1")
    assert [r["unit"] for r in result.rows] == [0]
    assert "skipped 2 of 3 units active on fewer than 3 pairs" in result.message
    assert [r["unit"] for r in session.execute("SEARCH unit 0..2 LENGTH 1").rows] == [0, 1, 2]
    session.execute("SET min_active = 0")
    assert len(session.execute("SEARCH unit * LENGTH 1").rows) == 3
    with pytest.raises(cxql.CxqlError, match="at least 0"):
        session.execute("SET min_active = -1")


@pytest.mark.parametrize("line, fault", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ('{"sentence1": "a", "sentence2": "b", "pairID": ' + "1" * 5000 + "}", "not usable JSON (Exceeds the limit"),
])
def test_a_pathological_line_is_a_bad_line_not_a_crash(tmp_path, line, fault) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f":2: {re.escape(fault)}"):
        nli.read_pairs(path)
    pairs, skipped = nli.read_pairs(path, skip_bad=True, on_warning=lambda message: None)
    assert len(pairs) == 1 and skipped == [2]
