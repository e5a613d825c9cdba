"""The shell's config file and where the shell keeps its files.

People set the shell up once, in a TOML file in their config directory
(``$XDG_CONFIG_HOME/cxql/config.toml``, else ``~/.config/cxql/config.toml``;
``%APPDATA%\\cxql\\config.toml`` on Windows). On first run the shell writes
:data:`DEFAULT_CONFIG` there: every setting, commented out at its default,
with a line on what it does, so the file documents itself. History lives in
the data directory (``$XDG_DATA_HOME/cxql/history``, else
``~/.local/share/cxql/history``).

A bad value never stops the shell: :func:`load_config` keeps the default for
it and returns a warning the shell prints.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

from ..render import FORMATS

DEFAULT_CONFIG = '''\
# cxql shell configuration (TOML). Uncomment a line to change it.
# This file was written by cxql on its first run; cxql never overwrites it.

# Colours of the query as you type: any Pygments style name,
# e.g. "default", "monokai", "native", "friendly", "solarized-dark".
# style = "default"

# How many past statements to keep in the history file (Up, Ctrl-R search).
# history_size = 10000

# The store the shell opens when cxql is started without -s
# ("" means the bundled demo store).
# default_store = ""

# How results print: "table", "json", "jsonl" or "csv" (\\format changes it).
# format = "table"

# Show how long each statement took (\\timing toggles it).
# timing = false

# Page results taller than the terminal through $PAGER (less by default).
# pager = true

# Offer completions while typing (Tab completes either way).
# complete_while_typing = true
'''


@dataclass(frozen=True)
class ShellConfig:
    """The shell's settings (see :data:`DEFAULT_CONFIG` for what each one does)."""

    style: str = "default"
    history_size: int = 10000
    default_store: str = ""
    format: str = "table"
    timing: bool = False
    pager: bool = True
    complete_while_typing: bool = True


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file lives."""
    return _base_dir(env, "XDG_CONFIG_HOME", ".config") / "cxql"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the history file lives."""
    return _base_dir(env, "XDG_DATA_HOME", ".local/share") / "cxql"


def _base_dir(env: Mapping[str, str] | None, variable: str, fallback: str) -> Path:
    env = os.environ if env is None else env
    if env.get(variable):
        return Path(env[variable])
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"])
    return Path(env.get("HOME") or Path.home()) / fallback


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "config.toml"


def history_path(env: Mapping[str, str] | None = None) -> Path:
    return data_dir(env) / "history"


def parse_config(values: Mapping[str, Any]) -> tuple[ShellConfig, list[str]]:
    """A config from parsed TOML values, and a warning for each value it could not use."""
    config, warnings = ShellConfig(), []
    types = {f.name: type(getattr(config, f.name)) for f in fields(ShellConfig)}
    for key, value in values.items():
        if key not in types:
            warnings.append(f"unknown setting {key!r} (known: {', '.join(types)})")
        elif type(value) is not types[key]:
            warnings.append(f"{key} should be a {types[key].__name__}, got {value!r}")
        else:
            config = replace(config, **{key: value})
    if config.format not in FORMATS:
        warnings.append(f"format should be one of {', '.join(FORMATS)}, got {config.format!r}")
        config = replace(config, format="table")
    if config.history_size < 0:
        warnings.append(f"history_size should be 0 or more, got {config.history_size}")
        config = replace(config, history_size=ShellConfig.history_size)
    return config, warnings


def load_config(path: Path | None = None, *, create: bool = True) -> tuple[ShellConfig, list[str]]:
    """The config at ``path`` (default: :func:`config_path`), writing the commented default if missing."""
    path = path or config_path()
    if not path.exists():
        if create:
            _write_default(path)
        return ShellConfig(), []
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        return ShellConfig(), [f"{path}: reading TOML needs Python 3.11 or the tomli package"]
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return ShellConfig(), [f"{path}: {exc}; using the defaults"]
    config, warnings = parse_config(values)
    return config, [f"{path}: {w}" for w in warnings]


def _write_default(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_CONFIG, encoding="utf-8")
    except OSError:
        pass  # a read-only home is no reason not to start


def trim_history(path: Path, keep: int) -> None:
    """Keep only the last ``keep`` entries of a prompt_toolkit FileHistory file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return
    starts = [i for i, line in enumerate(lines) if line.startswith("# ") and (i == 0 or lines[i - 1] == "\n")]
    if len(starts) <= keep:
        return
    first = starts[len(starts) - keep] - 1 if keep else len(lines)
    try:
        path.write_text("".join(lines[max(first, 0):]), encoding="utf-8")
    except OSError:
        pass


__all__ = ["DEFAULT_CONFIG", "ShellConfig", "config_path", "data_dir", "history_path", "load_config",
           "parse_config", "trim_history"]
