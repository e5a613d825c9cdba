"""What the README shows works on what ships: every query it prints, the error it shows, its Python example.

A README that answers nothing (or errors) on the bundled data costs a new
user their first hour, so its queries run here against the demo store and
against a store built from the shipped NLI pairs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import cxql
from cxql.cli import main
from cxql.resources import demo_store_path

README = Path(__file__).resolve().parent.parent / "README.md"
PAIRS = README.parent / "examples" / "data" / "pairs.jsonl"
TEXT = README.read_text(encoding="utf-8")
COMMAND = re.compile(r'cxql (?:-s (\S+) )?-c "([^"]+)"')


def readme_queries(store: str | None) -> list[str]:
    """Every ``cxql [-s STORE] -c "QUERY"`` of the README for that store (None: the demo store)."""
    return [query for s, query in COMMAND.findall(TEXT) if (s or None) == store]


def section(title: str) -> str:
    start = TEXT.index(f"## {title}")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start:end if end > 0 else None]


def shown_error() -> tuple[str, str]:
    """(the query, the error text) of the README's error example."""
    block = re.search(r'```\n\$ cxql -c "([^"]+)"\n(.*?)```', TEXT, re.S)
    return block.group(1), block.group(2)


DEMO_QUERIES = [q for q in readme_queries(None) if q != shown_error()[0]]


@pytest.fixture(scope="module")
def nli_store(tmp_path_factory) -> cxql.ConceptStore:
    """The README's NLI store: the shipped pairs, --words 300, word vectors, a 16-unit layer and its classifier."""
    from cxql.store.nli import build_nli_store
    from cxql.text_record import attach_classifier

    gensim = pytest.importorskip("gensim.models")
    work = tmp_path_factory.mktemp("nli")
    words = sorted({w for line in PAIRS.read_text().splitlines()
                    for w in re.findall(r"[a-z]+", line.split('"sentence1"')[1].lower())})
    vectors = gensim.KeyedVectors(8)
    vectors.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32))
    vectors.save_word2vec_format(str(work / "words.txt"))
    store = build_nli_store(PAIRS, words=300, vectors=work / "words.txt", tagger="none")
    store = store.save(work / "nli")
    rng = np.random.default_rng(1)
    store.add_units("head", np.maximum(rng.normal(size=(store.n_samples, 16)), 0).astype(np.float32))
    attach_classifier(store, "head", rng.normal(size=(3, 16)), rng.integers(0, 3, store.n_samples))
    return cxql.ConceptStore.open(work / "nli")


def answered(result) -> bool:
    """A result with something in it (a SET has no rows and counts as answered)."""
    return result.kind == "set" or bool(result.rows)


def test_the_readme_has_queries_for_both_stores():
    assert len(DEMO_QUERIES) >= 3 and len(readme_queries("nli")) >= 3


@pytest.mark.parametrize("query", DEMO_QUERIES)
def test_readme_demo_queries_answer_on_the_demo_store(query):
    session = cxql.connect(demo_store_path())
    results = list(session.stream(query))
    assert results and all(answered(r) for r in results), query


@pytest.mark.parametrize("query", readme_queries("nli"))
def test_readme_nli_queries_answer_on_the_shipped_pairs(nli_store, query):
    session = cxql.connect(nli_store)
    results = list(session.stream(query))
    assert results and all(answered(r) for r in results), query


EVAL_QUERIES = [(store, query) for store in (None, "nli") for query in readme_queries(store)
                if "EVAL " in query and query != shown_error()[0]]


@pytest.mark.parametrize("store, query", EVAL_QUERIES)
def test_readme_eval_examples_find_some_overlap(request, store, query):
    """An EVAL example that answers IoU 0 teaches nothing: each must overlap its unit."""
    session = cxql.connect(request.getfixturevalue("nli_store") if store else demo_store_path())
    evals = [r for r in session.stream(query) if r.kind == "eval"]
    assert evals and all(max(row["iou"] for row in r.rows) > 0 for r in evals), query


def test_readme_error_example_is_what_cxql_prints(capsys):
    query, expected = shown_error()
    assert main(["-c", query]) == 1
    assert capsys.readouterr().err == expected


def test_readme_nli_fields_are_what_the_builder_reads(tmp_path):
    """The JSONL table's fields: sentence1/2 required, gold_label and pairID optional."""
    from cxql.store.nli import build_nli_store

    table = section("Text neurons (NLI)")
    fields = re.findall(r"^\| `(\w+)` \| (required|optional)", table, re.M)
    assert dict(fields) == {"sentence1": "required", "sentence2": "required",
                            "gold_label": "optional", "pairID": "optional"}
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"sentence1": "A dog runs.", "sentence2": "A dog sleeps.", "pairID": "p1"}\n'
                    '{"sentence1": "A cat.", "sentence2": "A cat sits.", "gold_label": "neutral", "x": 1}\n')
    store = build_nli_store(path, words=10, tagger="none")
    assert store.sample_names == ["p1", "line2"]
    assert "label:neutral" in {c.qualified for c in store.concepts}
    path.write_text('{"sentence1": "A dog runs."}\n')
    with pytest.raises(cxql.CxqlError, match="sentence2 is missing"):
        build_nli_store(path, words=10, tagger="none")


def test_readme_python_example_runs(tmp_path):
    code = re.search(r"## Python API\n\n```python\n(.*?)```", TEXT, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: None})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "my-store" / "manifest.json").is_file()


def metadata_keys_cxql_reads() -> set[str]:
    """Every ``metadata.get("KEY")`` / ``metadata["KEY"]`` in cxql's own code."""
    package = README.parent / "cxql"
    pattern = re.compile(r"metadata(?:\.get\(|\[)\"(\w+)\"")
    return {key for path in package.rglob("*.py") for key in pattern.findall(path.read_text(encoding="utf-8"))}


def test_every_metadata_key_cxql_reads_is_documented():
    docs = (README.parent / "docs" / "stores.md").read_text(encoding="utf-8")
    keys = metadata_keys_cxql_reads()
    assert {"image_root", "image_size", "classifiers", "word_vectors"} <= keys
    assert sorted(k for k in keys if f"`{k}`" not in docs) == []
    assert "`images.npy`" in docs and "`sample_names`" in docs


@pytest.mark.parametrize("path", [README, *sorted((README.parent / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_user_docs_point_to_files_that_ship(path):
    """No "SPEC section N" (no SPEC ships); every relative link resolves to a file in the repository."""
    text = path.read_text(encoding="utf-8")
    assert "SPEC" not in text
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (path.parent / link).exists(), link


def test_readme_your_model_snippet_runs_on_the_examples_data(tmp_path):
    """The README's *Explaining your own model* code, given the data examples/your_model.py makes."""
    import sys
    from collections import OrderedDict

    import torch

    sys.path.insert(0, str(README.parent / "examples"))
    from your_model import make_data, model_input

    code = re.search(r"## Explaining your own model\n.*?```python\n(.*?)```", TEXT, re.S).group(1)
    pictures, masks = make_data(n=12)
    torch.manual_seed(0)
    model = torch.nn.Sequential(OrderedDict(layer3=torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {"masks": masks, "pictures": pictures, "N": len(pictures),
                                                  "model": model, "x": model_input(pictures)})
    finally:
        os.chdir(cwd)
    store = cxql.ConceptStore.open(tmp_path / "my-store")
    assert store.layers["layer3"].n_units == 4 and store.n_samples == 12
    assert (tmp_path / "report" / "layer3.html").is_file()


def test_shell_docs_session_shows_what_the_demo_store_answers():
    """docs/shell.md's recorded session: each SEARCH/EVAL row has the live formula, IoU, precision, recall."""
    doc = (README.parent / "docs" / "shell.md").read_text(encoding="utf-8")
    session = cxql.connect(demo_store_path())
    checked = 0
    for layer, block in re.findall(r"cxql> \\layer (\w+)\n(.*?)(?=cxql> \\layer|\Z)", doc, re.S):
        session.execute(f"SET layer = '{layer}'")
        for statement, table in re.findall(r"cxql> ((?:SEARCH|EVAL) [^\n]*(?:\n \.\.\.> [^\n]*)*)\n(unit [^\n]*\n[^\n]*)",
                                           block):
            query = statement.replace("\n ...> ", " ")
            row = table.split("\n")[1]
            [live] = session.execute(query).rows
            assert f"  {live['formula']}  " in row, query
            numbers = re.findall(r"[0-9][0-9.,]*", row.split(live["formula"], 1)[1])   # iou precision recall ... size
            expected = [f"{live[k]:.4f}" for k in ("iou", "precision", "recall")]
            assert numbers[:3] == expected and numbers[-1] == f"{live['mask_size']:,}", query
            checked += 1
    assert checked >= 2
