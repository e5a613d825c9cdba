"""Token stores from raw text: the no-pipeline concepts, and the pipeline path with a stand-in pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from cxql.errors import DataError
from cxql.store.text_tokens import build_text_store, flags, shape

from token_reference import position_masks

TEXTS = ["The cat sat on 3 mats.", "THE dog, the Cat!", "1999 was a year"]


def write(tmp_path, texts):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    return path


@pytest.mark.parametrize("text, want", [("Apple", "Xxxxx"), ("1999", "dddd"), ("U.S.", "X.X."),
                                        ("hello-world", "xxxx-xxxx")])
def test_shape(text, want):
    assert shape(text) == want


def test_no_pipeline_concepts_match_a_direct_computation(tmp_path):
    store = build_text_store(write(tmp_path, TEXTS), min_count=2)
    got = position_masks(store)
    tokens = [["The", "cat", "sat", "on", "3", "mats", "."], ["THE", "dog", ",", "the", "Cat", "!"],
              ["1999", "was", "a", "year"]]
    flat = [t for s in tokens for t in s]
    assert store.n_positions == len(flat) and list(store.sample_offsets) == [0, 7, 13, 17]
    lower = [t.lower() for t in flat]
    for k, t in enumerate(flat):
        assert got["word:" + (lower[k] if lower.count(lower[k]) >= 2 else "<rare>")][k]
        assert got["shape:" + shape(t)][k]
    for flag in ("punct", "digit", "title", "lower", "upper"):
        want = np.array([flag in flags(t) for t in flat])
        assert np.array_equal(got.get("kind:" + flag, np.zeros(len(flat), bool)), want), flag
    assert np.array_equal(got["kind:punct"], np.array([t in ".,!" for t in flat]))
    assert np.flatnonzero(got["sent:start"]).tolist() == [0, 7, 13]
    assert np.flatnonzero(got["sent:end"]).tolist() == [6, 12, 16]


@dataclass
class FakeToken:
    text: str
    pos_: str
    tag_: str = "X"
    dep_: str = "dep"
    lemma_: str = ""
    morph: str = ""
    ent_iob_: str = "O"
    ent_type_: str = ""
    is_stop: bool = False


def fake_nlp(text: str):
    """A stand-in for a spaCy pipeline: same token attributes."""
    return [FakeToken(w, "PROPN" if w.istitle() else "NOUN", lemma_=w.lower(), morph="Number=Sing",
                      ent_iob_="B" if w.istitle() else "O", ent_type_="PERSON" if w.istitle() else "",
                      is_stop=w.lower() == "the") for w in text.split()]


def test_pipeline_concepts(tmp_path):
    store = build_text_store(write(tmp_path, ["Ann met the Bob", "the cat"]), nlp=fake_nlp, min_count=1)
    got = position_masks(store)
    assert np.flatnonzero(got["upos:PROPN"]).tolist() == [0, 3]
    assert np.flatnonzero(got["ent:B"]).tolist() == [0, 3] and np.flatnonzero(got["ent:PERSON"]).tolist() == [0, 3]
    assert np.flatnonzero(got["kind:stop"]).tolist() == [2, 4]
    assert got["feat:Number=Sing"].all() and np.flatnonzero(got["lemma:the"]).tolist() == [2, 4]


def test_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": 3}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: no non-empty string 'text'"):
        build_text_store(path)
    store = build_text_store(path, skip_bad=True, min_count=1)
    assert [s["line"] for s in store.metadata["skipped"]] == [2, 3] and store.n_positions == 1
