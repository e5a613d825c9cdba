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


def interrupted_after(command: list[str], delay: float, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``command`` and send SIGINT ``delay`` seconds after cxql's entry module started to load.

    A Ctrl-C before that moment lands in Python's own start-up or in the
    one-line wrapper pip writes, which cxql cannot catch; so the clock starts
    when an audit hook (installed by a ``sitecustomize`` on the path) sees the
    import of ``cxql._entry`` or ``cxql.__main__``.
    """
    ready = tmp_path / "ready"
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "def _seen(event, args):\n"
        "    if event == 'import' and args[0] in ('cxql._entry', 'cxql.__main__'):\n"
        f"        open({str(ready)!r}, 'w').close()\n"
        "sys.addaudithook(_seen)\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.Popen([*command, "-c", "SHOW store"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("command, delay", [
    *[(console_script(), d) for d in (0.02, 0.05, 0.1, 0.25)],
    *[([sys.executable, "-m", "cxql"], d) for d in (0.02, 0.15)],
])
def test_ctrl_c_during_start_up_prints_no_traceback(command, delay, tmp_path) -> None:
    done = interrupted_after(command, delay, tmp_path)
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
