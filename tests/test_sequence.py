"""PREV / NEXT / WITHIN and SEARCH ... USING against plain loops, sample boundaries included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from token_reference import next_, position_masks, prev, within

import cxql
from cxql import syntax as s
from cxql.errors import CxqlError
from cxql.parser import parse
from cxql.sequence import shift
from cxql.sequence import within as seq_within
from cxql.store.conllu import build_conllu_store

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tokens" / "sample.conllu"


def random_offsets(rng, n):
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(0, n // 2), replace=False))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_shifts_match_plain_loops(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    offsets = random_offsets(rng, n) if n > 1 else np.array([0, 1])
    mask = rng.random(n) < 0.5
    assert np.array_equal(shift(mask, offsets, 1), prev(mask, offsets))
    assert np.array_equal(shift(mask, offsets, 2), prev(mask, offsets, 2))
    assert np.array_equal(shift(mask, offsets, -1), next_(mask, offsets))
    for k in (1, 3, 50):
        assert np.array_equal(seq_within(mask, offsets, k), within(mask, offsets, k))


def test_within_a_huge_k_is_within_the_longest_sample():
    # k beyond every sample reaches nothing more: answered at once (k = 10**11 used to loop for minutes)
    rng = np.random.default_rng(0)
    offsets = random_offsets(rng, 30)
    mask = rng.random(30) < 0.3
    assert np.array_equal(seq_within(mask, offsets, 10**11), within(mask, offsets, 30))


@pytest.fixture(scope="module")
def tokens():
    store = build_conllu_store(SAMPLE)
    m = position_masks(store)
    off = store.sample_offsets
    units = np.stack([m["upos:NOUN"] & prev(m["upos:DET"], off),          # unit 0: a noun after a determiner
                      next_(m["upos:PUNCT"], off),                          # unit 1: the token before punctuation
                      within(m["upos:ADJ"], off, 2) & m["upos:NOUN"]], 1)   # unit 2: a noun shortly after an adjective
    store.add_unit_masks("toy", units)
    return store, m, units


def counts(formula_mask, unit_mask):
    inter = int((formula_mask & unit_mask).sum())
    return inter, int(formula_mask.sum()), inter / int((formula_mask | unit_mask).sum())


@pytest.mark.parametrize("text, unit", [
    ("upos:NOUN AND PREV(upos:DET)", 0), ("NEXT(upos:PUNCT)", 1), ("PREV(upos:PUNCT)", 1),
    ("WITHIN(upos:ADJ, 2) AND upos:NOUN", 2), ("NOT PREV(NOT upos:DET OR NEXT(upos:NOUN))", 0),
    ("WITHIN(PREV(upos:DET), 3)", 2)])
def test_eval_matches_a_direct_computation(tokens, text, unit):
    store, m, units = tokens
    off = store.sample_offsets
    direct = {  # the same formulas written with the reference functions
        "upos:NOUN AND PREV(upos:DET)": m["upos:NOUN"] & prev(m["upos:DET"], off),
        "NEXT(upos:PUNCT)": next_(m["upos:PUNCT"], off),
        "PREV(upos:PUNCT)": prev(m["upos:PUNCT"], off),
        "WITHIN(upos:ADJ, 2) AND upos:NOUN": within(m["upos:ADJ"], off, 2) & m["upos:NOUN"],
        "NOT PREV(NOT upos:DET OR NEXT(upos:NOUN))":
            ~prev(~m["upos:DET"] | next_(m["upos:NOUN"], off), off),
        "WITHIN(PREV(upos:DET), 3)": within(prev(m["upos:DET"], off), off, 3),
    }[text]
    [row] = cxql.connect(store).execute(f"EVAL {text} ON unit {unit}").rows
    inter, size, iou = counts(direct, units[:, unit])
    assert (row["intersection"], row["formula_size"], row["iou"]) == (inter, size, iou)


def test_prev_never_crosses_a_sentence(tokens):
    store, m, _ = tokens
    # every sentence ends with punctuation, so a shift across sentences would mark every start
    [row] = cxql.connect(store).execute("EVAL PREV(upos:PUNCT) ON unit 1").rows
    assert row["formula_size"] == 0
    [row] = cxql.connect(store).execute("EVAL NEXT(sent:start) ON unit 1").rows
    assert row["formula_size"] == 0


def test_search_using_restricts_and_extends_candidates(tokens):
    store, _, _ = tokens
    session = cxql.connect(store)
    [row] = session.execute("SEARCH unit 0 LENGTH 2 USING upos, PREV(upos)").rows
    assert row["iou"] == 1.0 and "PREV(DET)" in row["formula"]
    formula = parse(row["formula"]).formula  # prints as typed, and parses back to the operators
    assert any(isinstance(leaf, s.Concept) for leaf in s.leaves(formula))
    [again] = session.execute(f"EVAL {row['formula']} ON unit 0").rows
    assert again["iou"] == 1.0
    [only] = session.execute("SEARCH unit 1 LENGTH 3 USING dep").rows
    assert all(leaf.name.startswith("dep:") or ":" not in leaf.name for leaf in s.leaves(parse(only["formula"]).formula))
    names = {c.qualified for c in store.concepts if c.category == "dep"} | \
            {c.name for c in store.concepts if c.category == "dep"}
    assert {leaf.name for leaf in s.leaves(parse(only["formula"]).formula)} <= names


def test_explain_shows_the_operator(tokens):
    store, _, _ = tokens
    text = str(cxql.connect(store).execute("EXPLAIN EVAL PREV(upos:DET) ON unit 0").rows)
    assert "PREV(DET)" in text


@pytest.mark.parametrize("query", ["EVAL (PREV(upos:NOUN) AND NOT WITHIN((lemma:the OR NEXT(x)), 3)) ON unit 1",
                                   "SEARCH unit 3 LENGTH 3 USING upos, PREV(upos), WITHIN(lemma, 2)"])
def test_round_trip(query):
    assert str(parse(query)) == query and parse(str(parse(query))) == parse(query)


@pytest.mark.parametrize("query, fault", [("EVAL WITHIN(upos:DET, 0) ON unit 0", "at least 1"),
                                          ("SEARCH unit 0 USING nothing", "USING nothing"),
                                          ("EVAL PREV(nope) ON unit 0", "unknown concept 'nope'")])
def test_errors(tokens, query, fault):
    with pytest.raises(CxqlError, match=fault):
        cxql.connect(tokens[0]).execute(query)


def test_vision_store_shifts_stay_inside_each_image():
    rng = np.random.default_rng(1)
    concepts = rng.random((4 * 6, 3)) < 0.4
    store = cxql.ConceptStore.from_masks(concepts, ["a", "b", "c"], sample_ids=[f"i{k}" for k in range(4)],
                                         mask_shape=(2, 3))
    units = rng.random((24, 1)) < 0.5
    store.add_unit_masks("l", units)
    [row] = cxql.connect(store).execute("EVAL PREV(a) ON unit 0").rows
    direct = prev(concepts[:, 0], np.arange(0, 25, 6))
    assert row["formula_size"] == int(direct.sum()) and row["intersection"] == int((direct & units[:, 0]).sum())


def test_shell_offers_sequence_operators_on_token_stores_only():
    from dataclasses import replace as dc_replace

    from cxql.shell.completer import CompletionContext, complete

    ctx = CompletionContext()
    assert "PREV" not in [c.text for c in complete("EVAL ", ctx)]
    assert {"PREV", "NEXT", "WITHIN"} <= {c.text for c in complete("EVAL ", dc_replace(ctx, sequences=True))}
    assert "WITHIN" in [c.text for c in complete("SEARCH unit 0 EXACT ", ctx)]


def test_sequence_operators_follow_set_threshold_and_explain_search(tokens):
    store, m, _ = tokens
    rng = np.random.default_rng(5)
    acts = rng.random((store.n_positions, 3)).astype(np.float32)
    store.add_units("acts", acts, "value:0.5")
    session = cxql.connect(store)
    session.execute("SET layer = 'acts'; SET threshold = 'value:0.8'")
    [row] = session.execute("EVAL PREV(upos:DET) ON unit 1").rows
    direct = prev(m["upos:DET"], store.sample_offsets)
    assert row["intersection"] == int((direct & (acts[:, 1] > 0.8)).sum())
    assert row["mask_size"] == int((acts[:, 1] > 0.8).sum())
    [first, *_] = session.execute("EXPLAIN SEARCH unit 0 LENGTH 2 USING upos, PREV(upos)").rows
    assert "derived store: 10 of" in first["plan"] and "PREV(DET)" in first["plan"]
    exact = session.execute("SEARCH unit 0 LENGTH 2 EXACT USING upos, PREV(upos)").rows[0]
    beam = session.execute("SEARCH unit 0 LENGTH 2 USING upos, PREV(upos)").rows[0]
    assert exact["iou"] >= beam["iou"]


@pytest.mark.parametrize("query", ["SEARCH unit 0 LENGTH 2 USING a, b", "SEARCH unit 0 LENGTH 2 EXACT USING a, b"])
def test_search_using_a_unit_that_never_fires_answers_none(query):
    """The derived session's NONE is not a concept name to map back (it raised "unknown concept 'NONE'")."""
    store = cxql.ConceptStore.from_masks(np.eye(4, dtype=bool), ["a", "b", "c", "d"])
    store.add_unit_masks("l", np.zeros((4, 1), dtype=bool))
    [row] = cxql.connect(store).execute(query).rows
    assert row["formula"] == "NONE" and row["iou"] == 0.0
