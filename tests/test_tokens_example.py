"""examples/tokens_demo.py runs offline, prints what the README shows, and its formulas evaluate back."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cxql
from cxql.cli import main as cxql_main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def load_demo():
    spec = importlib.util.spec_from_file_location("tokens_demo", ROOT / "examples" / "tokens_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_prints_the_readme_lines_and_formulas_evaluate_back(tmp_path, capsys):
    results = load_demo().main(["--out", str(tmp_path / "tok")])
    printed = capsys.readouterr().out
    block = re.search(r"```text\n(SEARCH unit 0 LENGTH 2\n.*?)```", README, re.S).group(1)
    assert printed == block
    session = cxql.connect(tmp_path / "tok")
    for layer, result in (("planted", results[2]), ("tiny", results[5])):
        session.execute(f"SET layer = '{layer}'")
        for row in result.rows:
            [again] = session.execute(f"EVAL {row['formula']} ON unit {row['unit']}").rows
            assert again["iou"] == row["iou"]
    for query in re.findall(r'cxql -s tok -c "([^"]+)"', README):
        assert cxql_main(["-s", str(tmp_path / "tok"), "-c", query]) in (0, None), query
