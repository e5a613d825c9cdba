"""Mutated queries thrown at a session: every one must give a Result or a CxqlError.

Seeds come from the golden query file, the README and a few statements over
the store's own names; mutations insert, delete, duplicate and swap tokens,
blow numbers up, nest deeply, splice seeds together and drop in random bytes
and unicode. Each query runs under a wall-clock alarm, so a hang fails with
the query that hung instead of stalling the suite.

The suite runs a few thousand (tests/test_fuzz.py); for a bigger run by hand::

    PYTHONPATH=. python tests/fuzzing.py 20000 --seed 1 [--store PATH] [--per-query 30]
"""

from __future__ import annotations

import random
import re
import resource
import signal
import sys
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

import cxql
from cxql.errors import CxqlError

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = ["EVAL", "ON", "unit", "SEARCH", "LENGTH", "BEAM", "DISTINCT", "MATCH", "TOP", "LET", "SHOW", "SET",
            "EXPLAIN", "AND", "OR", "NOT", "NEIGHBORS", "WITH", "accuracy", "concepts", "units", "store", "lets",
            "settings", "categories", "LIKE", "ORDER", "BY", "DESC", "*", "..", ",", ";", "(", ")", "=", ":", "\n",
            "--", "'", '"']
NUMBERS = ["0", "1", "2", "3", "5", "-1", "1.5", "1e309", "99", "4294967296", "9" * 18, "1" + "0" * 19,
           "1" + "0" * 5000]
ODD = ["\x00", "\x07", "\u202e", "\u0301", "\ufeff", "é", "ß", "İ", "😀", "\\", "\t", "\r", "%", "_", "`", "$",
       "\udcff", "\x85", "\u2028", "/*", "\xa0"]
SETTINGS = ["SET beam = 3", "SET length = 2", "SET engine = 'plain'", "SET engine = 'batched'",
            "SET distinct = on", "SET threshold = 0", "SET threshold = 'quantile:0.9'", "SET threshold = 'default'",
            "SET memory_limit = '1KB'", "SET memory_limit = '512MB'", "SET top = 2", "SET chunk_mb = 1",
            "SET min_active = 0", "SET device = 'cuda'", "SET layer = 'conv'"]
_TOKEN = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|--[^\n]*|\.\.|[A-Za-z0-9_:.]+|\S|\n")


def golden_seeds() -> list[str]:
    path = ROOT / "tests" / "fixtures" / "queries.golden"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [line for line in lines if line and not line.startswith(("=>", "-- "))]


def readme_seeds() -> list[str]:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    out = re.findall(r'-c "([^"]+)"', text)
    for line in text.splitlines():
        line = line.split("  --")[0].strip()
        if re.match(r"(EVAL|SEARCH|MATCH|LET|SHOW|SET|EXPLAIN)\b", line):
            out.append(line)
    return out


def store_seeds(names: list[str], n_units: int) -> list[str]:
    a, b, c = (names * 3)[:3]
    last = max(0, n_units - 1)
    return [f"{a}", f"{a} OR {b} AND NOT {c}", f"EVAL {a} AND NOT {b} ON unit 0", f"EVAL {a} ON unit *",
            f"SEARCH unit 0..{min(2, last)} LENGTH 2 BEAM 3", f"SEARCH unit {last} LENGTH 3 DISTINCT",
            f"MATCH {a} OR {b} TOP 3", f"LET w = {a} OR {b}", "w AND NOT w", f"SHOW concepts LIKE '{a[:2]}%'",
            "SHOW units", f"SHOW unit {last}", "SHOW store", "SHOW lets", "SHOW settings", "SHOW categories",
            f"EXPLAIN SEARCH unit * LENGTH 2", f"EXPLAIN EVAL {a} ON unit 0", f"NEIGHBORS({a}, 2)"] + SETTINGS


class Mutator:
    """Seeded query mutations (one to three per query)."""

    def __init__(self, rng: random.Random, seeds: list[str], names: list[str]) -> None:
        self.rng, self.seeds, self.names = rng, seeds, names

    def query(self) -> str:
        text = self.rng.choice(self.seeds)
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            text = self.rng.choice(self.MUTATIONS)(self, text)
        return text

    def _tokens(self, text: str) -> list[str]:
        return _TOKEN.findall(text) or [""]

    def _word(self) -> str:
        pool = self.rng.choice((KEYWORDS, NUMBERS, self.names, ODD))
        return self.rng.choice(pool)

    def insert(self, text: str) -> str:
        t = self._tokens(text)
        t.insert(self.rng.randrange(len(t) + 1), self._word())
        return " ".join(t)

    def delete(self, text: str) -> str:
        t = self._tokens(text)
        del t[self.rng.randrange(len(t))]
        return " ".join(t)

    def duplicate(self, text: str) -> str:
        t = self._tokens(text)
        i = self.rng.randrange(len(t))
        j = min(len(t), i + self.rng.randrange(1, 4))
        return " ".join(t[:j] + t[i:j] * self.rng.randrange(1, 4) + t[j:])

    def swap(self, text: str) -> str:
        t = self._tokens(text)
        i, j = self.rng.randrange(len(t)), self.rng.randrange(len(t))
        t[i], t[j] = t[j], t[i]
        return " ".join(t)

    def rename(self, text: str) -> str:
        t = self._tokens(text)
        i = self.rng.randrange(len(t))
        t[i] = self.rng.choice(self.names)
        return " ".join(t)

    def huge_number(self, text: str) -> str:
        t = self._tokens(text)
        spots = [i for i, w in enumerate(t) if w.isdigit()] or [len(t)]
        i = self.rng.choice(spots)
        t[i:i + 1] = [self.rng.choice(NUMBERS[5:] + ["1000000000", "12", "101"])]
        return " ".join(t)

    def nest(self, text: str) -> str:
        n = self.rng.choice((3, 50, 127, 128, 129, 300, 1000))
        name = self.rng.choice(self.names)
        kind = self.rng.randrange(4)
        if kind == 0:
            return text + " " + "NOT " * n + name
        if kind == 1:
            return "(" * n + name + ")" * n + " " + text
        if kind == 2:
            return " OR ".join([name] * n)
        return "EXPLAIN " * n + text

    def splice(self, text: str) -> str:
        return text + self.rng.choice((";", "\n", "; ", "")) + self.rng.choice(self.seeds)

    def odd_bytes(self, text: str) -> str:
        i = self.rng.randrange(len(text) + 1)
        junk = "".join(self.rng.choice(ODD) for _ in range(self.rng.randrange(1, 4)))
        if self.rng.random() < 0.3:
            junk = bytes(self.rng.randrange(256) for _ in range(4)).decode("latin-1")
        return text[:i] + junk + text[i:]

    def truncate(self, text: str) -> str:
        return text[:self.rng.randrange(len(text) + 1)]

    def self_let(self, text: str) -> str:
        name = self.rng.choice(self.names)
        return f"LET d = {name}" + "; LET d = d OR d" * self.rng.choice((3, 12, 13, 20)) + "; " + text

    MUTATIONS = [insert, delete, duplicate, swap, rename, huge_number, nest, splice, odd_bytes, truncate, self_let]


class Hang(Exception):
    """A query ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def ring(signum, frame):
        raise Hang(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Report:
    queries: int = 0
    results: int = 0
    errors: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    rss_growth_mb: float = 0.0

    def summary(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common())
        return (f"{self.queries} queries: {self.results} results, {sum(self.errors.values())} cxql errors "
                f"({errors}); {len(self.failures)} failures; slowest {self.slowest[0]:.2f} s; "
                f"peak RSS grew {self.rss_growth_mb:.0f} MB")


def fuzz(session_factory, n: int, seed: int, per_query_s: float = 5.0, fresh_every: int = 50,
         memory_limit: str = "256MB") -> Report:
    """Run ``n`` mutated queries; a new session every ``fresh_every`` queries so state stays varied but small."""
    rng = random.Random(seed)
    session = session_factory()
    names = [c.qualified if rng.random() < 0.3 else c.name for c in session.store.concepts][:40]
    layer = next(iter(session.store.layers.values()), None)
    seeds = golden_seeds() + readme_seeds() + store_seeds(names, layer.n_units if layer else 1)
    mutator = Mutator(rng, seeds, names)
    report = Report()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(n):
        if i % fresh_every == 0:
            session = session_factory()
            session.execute(f"SET memory_limit = '{memory_limit}'")
        query = mutator.query()
        report.queries += 1
        started = time.perf_counter()
        try:
            with time_limit(per_query_s):
                session.execute(query)
            report.results += 1
        except CxqlError as exc:
            report.errors[type(exc).__name__] += 1
            str(exc)  # rendering the error must not fail either
        except Exception:  # noqa: BLE001 - the point: anything else is a failure
            report.failures.append((query, traceback.format_exc(limit=-3)))
        elapsed = time.perf_counter() - started
        if elapsed > report.slowest[0]:
            report.slowest = (elapsed, query[:200])
    report.rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    return report


def random_store(seed: int = 0) -> cxql.ConceptStore:
    """A small store with two layers, one keeping activations (so SET threshold re-thresholds)."""
    rng = np.random.default_rng(seed)
    n_samples, k = 40, 10
    concepts = rng.random((n_samples * 16, k)) < rng.uniform(0.02, 0.4, size=k)
    concepts[:, 2] = False
    concepts[:, 3] = True
    names = [f"c{i}" for i in range(k - 2)] + ["top", "water"]
    store = cxql.ConceptStore.from_masks(concepts, names, ["a"] * 5 + ["b"] * (k - 5), mask_shape=(4, 4))
    store.add_unit_masks("layer", rng.random((n_samples * 16, 6)) < 0.1)
    store.add_units("conv", rng.normal(size=(n_samples, 4, 2, 2)).astype(np.float32))
    return store


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", help="a store path (default: a small random store)")
    parser.add_argument("--per-query", type=float, default=30.0, help="seconds before a query counts as hung")
    args = parser.parse_args(argv)
    store = args.store or random_store()
    report = fuzz(lambda: cxql.connect(store), args.n, args.seed, per_query_s=args.per_query)
    print(report.summary())
    print("slowest:", repr(report.slowest[1]))
    for query, tb in report.failures[:20]:
        print("\nQUERY:", repr(query[:300]), "\n", tb)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
