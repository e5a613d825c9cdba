"""The syntax tree prints canonical text that parses back to the same tree."""

from __future__ import annotations

import random

import pytest

from cxql import parse
from cxql import syntax as s

NAMES = ["water", "river", "color:blue", "traffic light", "object:traffic light", "pre:pos:NN", "t-shirt",
         "3", "label:3", "top", "store", 'say "hi"', "it's", "a.b", "NOT", "x_1"]


def random_formula(rng: random.Random, depth: int) -> s.Formula:
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.1:
            return s.Neighbors(s.Concept(rng.choice(NAMES)), rng.choice([None, 1, 7]))
        return s.Concept(rng.choice(NAMES))
    kind = rng.choice(["not", "and", "or"])
    if kind == "not":
        return s.Not(random_formula(rng, depth - 1))
    node = s.And if kind == "and" else s.Or
    return node(random_formula(rng, depth - 1), random_formula(rng, depth - 1))


def random_units(rng: random.Random) -> s.Units:
    if rng.random() < 0.2:
        return s.Units()
    items = []
    for _ in range(rng.randint(1, 3)):
        a = rng.randint(0, 600)
        items.append(a if rng.random() < 0.5 else s.UnitRange(a, a + rng.randint(0, 50)))
    return s.Units(tuple(items))


def random_statement(rng: random.Random) -> s.Statement:
    f = random_formula(rng, rng.randint(0, 4))
    choices = [
        s.FormulaStmt(f),
        s.Eval(f, random_units(rng)),
        s.Search(random_units(rng), rng.choice([None, 1, 10]), rng.choice([None, 5]), rng.random() < 0.5),
        s.Match(f, rng.choice([None, 3])),
        s.Let(rng.choice(["wet", "x1"]), f),
        s.Show(rng.choice(["concepts", "categories", "units", "store", "lets", "settings"])),
        s.Show("concepts", pattern=rng.choice(["wat%", "it's_"])),
        s.Show("concepts", pattern=rng.choice([None, "a%"]), order=rng.choice(["count", "name"]),
               descending=rng.random() < 0.5),
        s.Show("unit", unit=rng.randint(0, 9)),
        s.Set(rng.choice(["beam", "device", "threshold"]), rng.choice([3, 0.25, "cuda", "quantile:0.99"])),
    ]
    stmt = rng.choice(choices)
    return s.Explain(stmt) if rng.random() < 0.1 else stmt


@pytest.mark.parametrize("seed", range(300))
def test_random_statements_round_trip(seed: int) -> None:
    stmt = random_statement(random.Random(seed))
    assert parse(str(stmt)) == stmt


def test_script_round_trips() -> None:
    rng = random.Random(7)
    script = s.Script(tuple(random_statement(rng) for _ in range(20)))
    assert parse(str(script)) == script


@pytest.mark.parametrize("formula, n", [("a", 1), ("a AND NOT b", 2), ("(a OR b) AND NOT (c OR d)", 4),
                                        ("NOT NOT a", 1)])
def test_length_counts_leaves(formula: str, n: int) -> None:
    assert s.length(parse(formula).formula) == n


@pytest.mark.parametrize("name, printed", [("water", "water"), ("color:blue", "color:blue"),
                                           ("traffic light", '"traffic light"'), ("and", '"and"'),
                                           ("a.b", '"a.b"'), ("label:3", "label:3")])
def test_names_print_bare_only_when_they_lex_back(name: str, printed: str) -> None:
    assert str(s.Concept(name)) == printed
