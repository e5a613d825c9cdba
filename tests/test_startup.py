"""Start-up: ``cxql --help``, ``--version`` and opening a session do not import torch (issue 11, item 8).

Torch takes most of cxql's start-up time; it is imported when the first
statement runs. Each check runs in a fresh interpreter, since this test
process has long imported torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fresh_python(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("argv, shows", [(["--help"], "usage: cxql"), (["--version"], "cxql 0.1.0")])
def test_help_and_version_do_not_import_torch(argv, shows) -> None:
    out = fresh_python(f"import sys; from cxql.cli import main; code = main({argv!r}); "
                       "print(code, 'torch' in sys.modules)")
    assert shows in "\n".join(out) and out[-1] == "0 False"


def test_a_session_opens_without_torch_and_loads_it_for_the_first_statement() -> None:
    out = fresh_python("import sys, cxql, cxql.shell.app; from cxql.resources import demo_store_path; "
                       "s = cxql.connect(demo_store_path()); print('torch' in sys.modules); "
                       "print(s.execute('EVAL ink ON unit 0').rows[0]['unit'], 'torch' in sys.modules)")
    assert out == ["False", "0 True"]


def test_version_matches_the_package_metadata() -> None:
    import cxql

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{cxql.__version__}"' in pyproject
