"""docs/architecture.md's worked examples run: adding a metric, a searcher and a builder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxql import metrics, searcher

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture
def clean_registries():
    """The examples register a metric and a searcher; put the registries back afterwards."""
    saved = dict(metrics.METRICS), dict(searcher.SEARCHERS), searcher.ENGINES
    yield
    metrics.METRICS.clear()
    metrics.METRICS.update(saved[0])
    for name in set(searcher.SEARCHERS) - set(saved[1]):
        searcher.unregister(name)
    assert searcher.ENGINES == saved[2]


def test_the_doc_has_one_example_per_part() -> None:
    text = DOC.read_text()
    for heading in ("## Adding a metric", "## Adding a searcher", "## Adding a builder"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert python_blocks(section), heading


def test_the_worked_examples_run(clean_registries) -> None:
    namespace: dict = {"__name__": "architecture_doc"}
    for number, block in enumerate(python_blocks(DOC.read_text()), 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)  # noqa: S102 - our own docs
    assert "f2" in metrics.METRICS and "single" in searcher.ENGINES
