"""The shell's config file: defaults, the commented default file, bad values, history trimming."""

from __future__ import annotations

import re
from pathlib import Path

from prompt_toolkit.history import FileHistory

from cxql.shell.commands import COMMANDS
from cxql.shell.config import (DEFAULT_CONFIG, ShellConfig, config_path, history_path, load_config,
                               parse_config, trim_history)


def test_paths_follow_xdg_and_home():
    assert str(config_path({"XDG_CONFIG_HOME": "/x"})) == "/x/cxql/config.toml"
    assert str(config_path({"HOME": "/h"})) == "/h/.config/cxql/config.toml"
    assert str(history_path({"XDG_DATA_HOME": "/d"})) == "/d/cxql/history"
    assert str(history_path({"HOME": "/h"})) == "/h/.local/share/cxql/history"


def test_first_run_writes_the_commented_default(tmp_path):
    path = tmp_path / "cxql" / "config.toml"
    assert load_config(path) == (ShellConfig(), [])
    assert path.read_text() == DEFAULT_CONFIG
    assert load_config(path) == (ShellConfig(), [])  # all commented: still the defaults


def test_the_commented_default_documents_the_real_defaults(tmp_path):
    """Uncommenting every setting of the default file changes nothing."""
    path = tmp_path / "config.toml"
    path.write_text(re.sub(r"(?m)^# (\w+ = )", r"\1", DEFAULT_CONFIG))
    config, warnings = load_config(path)
    assert warnings == [] and config == ShellConfig()
    documented = set(re.findall(r"(?m)^# (\w+) = ", DEFAULT_CONFIG))
    assert documented == set(ShellConfig.__dataclass_fields__)


def test_values_and_warnings():
    config, warnings = parse_config({"style": "monokai", "timing": True, "history_size": "many",
                                     "format": "xml", "colour": "red"})
    assert config == ShellConfig(style="monokai", timing=True)
    assert len(warnings) == 3
    assert any("history_size" in w for w in warnings) and any("colour" in w for w in warnings)


def test_a_broken_file_keeps_the_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("style = \n")
    config, warnings = load_config(path)
    assert config == ShellConfig() and len(warnings) == 1


def test_trim_history_keeps_the_newest(tmp_path):
    path = tmp_path / "history"
    history = FileHistory(str(path))
    for i in range(5):
        history.store_string(f"SEARCH unit {i}\nLENGTH {i}")
    trim_history(path, 2)
    assert list(FileHistory(str(path)).load_history_strings()) == ["SEARCH unit 4\nLENGTH 4",
                                                                   "SEARCH unit 3\nLENGTH 3"]
    trim_history(path, 10)
    assert len(list(FileHistory(str(path)).load_history_strings())) == 2


def test_docs_show_the_default_config_and_every_command():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "shell.md").read_text(encoding="utf-8")
    assert DEFAULT_CONFIG in docs
    assert all(f"`{name}" in docs for name in COMMANDS)
