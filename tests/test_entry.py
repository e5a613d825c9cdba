"""The ``cxql`` command's entry: Ctrl-C at any moment of start-up exits quietly (no traceback).

The console script is run as pip's wrapper runs it (``from MODULE import FN;
sys.exit(FN())``, read from pyproject.toml), and as ``python -m cxql``; each is
sent SIGINT at several moments of its start-up, in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def console_script() -> list[str]:
    """What pip's ``cxql`` wrapper runs, from the ``[project.scripts]`` entry."""
    module, fn = re.search(r'^cxql = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M).groups()
    return [sys.executable, "-c", f"import sys; from {module} import {fn}; sys.exit({fn}())"]


def interrupted_after(command: list[str], delay: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([*command, "-c", "SHOW store"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("command, delay", [
    *[(console_script(), d) for d in (0.03, 0.08, 0.15, 0.25)],
    *[([sys.executable, "-m", "cxql"], d) for d in (0.06, 0.2)],
])
def test_ctrl_c_during_start_up_prints_no_traceback(command, delay) -> None:
    done = interrupted_after(command, delay)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    # 130 after "interrupted"; 0 if it finished first; -SIGINT if the signal beat Python's own handler
    assert done.returncode in (0, 130, -signal.SIGINT), done.stderr


def test_python_dash_m_cxql_is_the_cxql_command() -> None:
    done = subprocess.run([sys.executable, "-m", "cxql", "--version"], capture_output=True, text=True, env=ENV,
                          timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "cxql 0.1.0")


def test_importing_cxql_loads_no_submodule_until_a_name_is_used() -> None:
    code = ("import sys, cxql; print(sorted(m for m in sys.modules if m.startswith('cxql')));"
            "import cxql.record; print(callable(cxql.record), cxql.connect.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         timeout=60).stdout.splitlines()
    assert out == ["['cxql', 'cxql.version']", "True cxql.engine"]
