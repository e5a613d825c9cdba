"""Completion as a pure function: many prefixes, the suggestions each must give.

The context is written out by hand (no store, no prompt_toolkit), so each row
of the table reads as "typing this offers that". ``first`` rows check the
head of the list (order matters: keywords, LET names, categories, then
concepts); ``exactly`` rows check the whole list.
"""

from __future__ import annotations

import pytest

from cxql.settings import SETTINGS
from cxql.shell.completer import CompletionContext, ConceptName, MetaInfo, Suggestion, complete, \
    meta_path_argument

CTX = CompletionContext(
    concepts=(ConceptName("water", "object", 50), ConceptName("river", "object", 20),
              ConceptName("blue", "color", 30), ConceptName("blue", "object", 3),
              ConceptName("lobby", "scene", 9), ConceptName("long", "texture", 4),
              ConceptName("traffic light", "object", 2), ConceptName("top", "object", 5),
              ConceptName("t-shirt", "object", 1)),
    lets=("wet",),
    n_units=12,
    layers=("conv1", "conv2"),
    meta={"\\help": MetaInfo("help"), "\\layer": MetaInfo("layer", ("conv1", "conv2")),
          "\\format": MetaInfo("format", ("table", "json", "jsonl", "csv")),
          "\\save": MetaInfo("save", paths=True), "\\store": MetaInfo("store", paths=True)},
)

STATEMENTS = ["ABLATE", "DESCRIBE", "EVAL", "EXPLAIN", "LET", "MATCH", "SEARCH", "SET", "SHOW", "SUMMARY"]
ALL_UNITS = ["*", "0..11"] + [str(u) for u in range(12)]
EVERY_NAME = ["wet", "object:", "color:", "scene:", "texture:", "water", "river", "color:blue", "object:blue",
              "lobby", "long", '"traffic light"', '"top"', "t-shirt"]

EXACTLY = [
    # statements
    ("S", ["SEARCH", "SET", "SHOW", "SUMMARY", "scene:"]),
    ("se", ["search", "set"]),
    ("sho", ["show"]),
    ("Ex", ["EXPLAIN"]),
    ("SEARCH ", ["UNIT"]),
    ("SEARCH u", ["unit"]),
    ("SEARCH U", ["UNIT"]),
    ("search ", ["unit"]),
    ("SEARCH unit ", ALL_UNITS),
    ("SEARCH unit 1", ["1", "10", "11"]),
    ("SEARCH unit 11", ["11"]),
    ("SEARCH unit 12", []),
    ("SEARCH unit 3 L", ["LENGTH"]),
    ("SEARCH unit 3 LENGTH ", []),
    ("SEARCH unit 1, ", ["0..11"] + [str(u) for u in range(12)]),
    ("SEARCH unit 0..", ["11"]),
    ("SEARCH unit 0..1", ["11"]),
    ("SEARCH unit x ", []),
    ("SHOW ", ["CATEGORIES", "CONCEPTS", "LETS", "SETTINGS", "STORE", "UNIT", "UNITS"]),
    ("SHOW c", ["categories", "concepts"]),
    ("SHOW C", ["CATEGORIES", "CONCEPTS"]),
    ("show con", ["concepts"]),
    ("SHOW concepts ", ["LIKE", "ORDER"]),
    ("SHOW concepts LIKE 'lo%' ", ["ORDER"]),
    ("SHOW concepts ORDER ", ["BY"]),
    ("SHOW concepts LIKE ", []),
    ("SHOW concepts LIKE 'lo", []),
    ("SHOW unit ", [str(u) for u in range(12)]),
    ("SHOW units ", []),
    ("MATCH water ", ["TOP", "AND", "OR"]),
    ("MATCH water TOP ", []),
    ("EVAL water ", ["ON", "AND", "OR"]),
    ("EVAL water O", ["ON", "OR"]),
    ("EVAL water ON ", ["UNIT"]),
    ("EVAL water ON unit 3", ["3"]),
    ("EVAL (water OR river", ["river"]),
    ("EVAL (water OR river) ", ["ON", "AND", "OR"]),
    ("EXPLAIN SEARCH unit ", ALL_UNITS),
    # formulas
    ("wa", ["water"]),
    ("WA", ["water"]),
    ("water AND r", ["river"]),
    ("water AND NOT b", ["color:blue", "object:blue"]),
    ("water OR (l", ["lobby", "long"]),
    ("NOT NOT wat", ["water"]),
    ("color:", ["color:blue"]),
    ("color:b", ["color:blue"]),
    ("COLOR:B", ["color:blue"]),
    ("object:b", ["object:blue"]),
    ("object:t", ['"object:traffic light"', "object:top", "object:t-shirt"]),
    ("scene:x", []),
    ("nothing:", []),
    ("ob", ["object:"]),
    ("lo", ["lobby", "long"]),
    ("tra", ['"traffic light"']),
    ("ligh", ['"traffic light"']),
    ("li", []),
    ('"traf', ['"traffic light"']),
    ("'traf", ["'traffic light'"]),
    ('water OR "bl', ['"color:blue"', '"object:blue"']),
    ("to", ['"top"']),
    ("t-", ["t-shirt"]),
    ("we", ["wet"]),
    ("LET x = w", ["wet", "water"]),
    ("LET ", []),
    ("LET x", []),
    ("LET x ", []),
    ("water ", ["AND", "OR"]),
    ("water AND ", ["NOT"] + EVERY_NAME),
    ("(water", ["water"]),
    ("zzz", []),
    ("NEI", []),  # only text stores offer NEIGHBORS
    # settings
    ("SET ", list(SETTINGS)),
    ("SET be", ["beam"]),
    ("SET D", ["device", "distinct"]),
    ("SET beam ", []),
    ("SET beam = ", ["5"]),
    ("SET device = ", ["cpu", "cuda"]),
    ("SET device = c", ["cpu", "cuda"]),
    ("SET device = cu", ["cuda"]),
    ("SET distinct = o", ["on", "off"]),
    ("SET layer = ", ["conv1", "conv2"]),
    ("SET layer = conv2", ["conv2"]),
    ("SET threshold = ", ["default", "'quantile:0.995'"]),
    ("SET threshold = 'q", ["'quantile:0.995'"]),
    ("SET nope = ", []),
    # several statements, comments, lines
    ("SHOW lets; SEARCH ", ["UNIT"]),
    ("SHOW lets\nSEARCH unit 1", ["1", "10", "11"]),
    ("EVAL (water OR\nriv", ["river"]),
    ("water -- wa", []),
    ("-- SEARCH ", []),
    ("water;", STATEMENTS + ["NOT"] + EVERY_NAME),
    # meta-commands
    ("\\", ["\\format", "\\help", "\\layer", "\\save", "\\store"]),
    ("\\la", ["\\layer"]),
    ("\\layer ", ["conv1", "conv2"]),
    ("\\layer conv1", ["conv1"]),
    ("\\format j", ["json", "jsonl"]),
    ("\\help ", []),
    ("\\nope ", []),
    ("  \\he", ["\\help"]),
]


@pytest.mark.parametrize("text, expected", EXACTLY, ids=[repr(t) for t, _ in EXACTLY])
def test_completions(text, expected):
    assert [s.text for s in complete(text, CTX)] == expected


FIRST = [
    ("", STATEMENTS + ["NOT", "wet", "object:"]),
    ("EXPLAIN ", STATEMENTS + ["NOT"]),
    ("EVAL ", ["NOT", "wet", "object:"]),
    ("MATCH (", ["NOT", "wet"]),
]


@pytest.mark.parametrize("text, expected", FIRST, ids=[repr(t) for t, _ in FIRST])
def test_completions_start_with(text, expected):
    assert [s.text for s in complete(text, CTX)][:len(expected)] == expected


@pytest.mark.parametrize("text", ["SEARCH unit 3 ", "SEARCH unit 3 LENGTH 3 ", "search unit * beam 4 "])
def test_search_options(text):
    """Whatever options the grammar grows, these stay, in the case the statement was typed in."""
    offered = [s.text for s in complete(text, CTX)]
    expected = ["BEAM", "DISTINCT", "LENGTH"]
    assert set(expected if text[0] == "S" else [e.lower() for e in expected]) <= set(offered)
    assert all(s.meta == "keyword" for s in complete(text, CTX))


def test_replacement_covers_the_typed_word():
    assert complete("water AND NOT b", CTX)[0] == Suggestion("color:blue", 1, "color:blue", "color")
    assert complete("color:b", CTX)[0].replace == len("color:b")
    assert complete('"traf', CTX)[0].replace == len('"traf')
    assert complete("SEARCH unit 1", CTX)[1].replace == 1


def test_concepts_show_their_category():
    metas = {s.text: s.meta for s in complete("water AND ", CTX)}
    assert metas["water"] == "object" and metas["lobby"] == "scene" and metas["wet"] == "LET"
    assert metas["object:"] == "category, 6 concepts" and metas["scene:"] == "category, 1 concept"


def test_neighbors_on_text_stores():
    ctx = CompletionContext(concepts=(ConceptName("dog", "pre"),), neighbors=True)
    assert [s.text for s in complete("NEI", ctx)] == ["NEIGHBORS"]
    assert [s.text for s in complete("NEIGHBORS(", ctx)] == ["pre:", "dog"]


def test_no_units_no_unit_numbers():
    assert complete("SEARCH unit ", CompletionContext()) == []


def test_path_arguments():
    assert meta_path_argument("\\save out.c", CTX) == "out.c"
    assert meta_path_argument("\\store ", CTX) == ""
    assert meta_path_argument("\\layer c", CTX) is None
    assert meta_path_argument("\\save", CTX) is None
    assert meta_path_argument("SEARCH unit 3", CTX) is None


@pytest.mark.parametrize("text, statement", [("SEARCH unit * ORDER BY ", "SEARCH unit * LENGTH 1"),
                                             ("SHOW concepts ORDER BY ", "SHOW concepts")])
def test_order_by_offers_the_result_columns(text, statement, small_store) -> None:
    import cxql

    offered = [s.text for s in complete(text, CTX)]
    store, *_ = small_store
    columns = cxql.connect(store).execute(statement).columns
    assert offered and set(offered) <= set(columns) | {"samples"} and "water" not in offered
    assert [s.text for s in complete(text + "pre", CTX)] == (["precision"] if "precision" in columns else [])
