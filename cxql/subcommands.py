"""The registry of ``cxql`` tool subcommands: store builders, ``units`` actions, ``report``, ...

A command is data: its path (``("store", "build", "broden")``), its help, a
function adding its arguments and a function running it. The module that
does the work defines the :class:`Command` next to that work and never
imports the CLI; the CLI reads :data:`REGISTRY` to build its argparse tree.
The built-in commands are listed in :data:`BUILTIN` (``module:attribute``,
loaded when the CLI first asks), and other packages add theirs through the
``cxql.commands`` entry point group, each entry naming a Command or a list
of them. A test or a script may also call :meth:`Registry.add` directly.

What a command needs from the front end (a progress display, a way to warn,
a stop request) comes in a :class:`Tools` argument, so the work code never
learns whether a terminal exists. Adding a builder (say ``conllu``) is one
file defining ``COMMAND = Command(("store", "build", "conllu"), ...)`` and one
line in :data:`BUILTIN`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .progress import Progress, Quiet


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Tools:
    """What the front end lends a running command."""

    #: A fresh progress display for each piece of long work (a Rich bar in the CLI).
    progress: Callable[[], Progress] = Quiet
    #: A warning for people (stderr in the CLI).
    warn: Callable[[str], None] = _print_warning
    #: True once the user asked to stop (Ctrl-C); long loops check it between pieces.
    should_stop: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Command:
    """One ``cxql`` subcommand at ``path`` (e.g. ``("units", "record")``)."""

    path: tuple[str, ...]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Tools], int]
    description: str | None = None


@dataclass(frozen=True)
class Group:
    """A level of subcommands (``cxql store``, ``cxql store build``) and its help."""

    path: tuple[str, ...]
    help: str
    dest: str = "action"


#: Built-in commands, in the order ``--help`` lists them: ``module:attribute`` naming a
#: Command or a sequence of Commands. Imported on first use, so ``cxql --help`` stays light.
BUILTIN: tuple[str, ...] = (
    "cxql.tool_commands:COMMANDS",
    "cxql.store.check:COMMAND",
    "cxql.store.broden:COMMAND",
    "cxql.store.nli:COMMANDS",
    "cxql.store.conllu:COMMAND",
    "cxql.store.text_tokens:COMMAND",
    "cxql.record:COMMAND",
    "cxql.report:COMMAND",
    "cxql.model_commands:COMMAND",
)

#: Entry point group through which other packages add commands.
ENTRY_POINT_GROUP = "cxql.commands"

GROUPS: tuple[Group, ...] = (
    Group(("store",), "build and inspect concept stores"),
    Group(("store", "build"), "build a store from a probe dataset", dest="source"),
    Group(("units",), "attach unit layers to a store"),
    Group(("model",), "attach the model the store was recorded from (for ABLATE, class contributions)"),
    Group(("nli",), "NLI analysis: attach a classifier for SEARCH ... WITH accuracy"),
)


class Registry:
    """Commands by path; groups by path; loads :data:`BUILTIN` and entry points once."""

    def __init__(self, builtin: Iterable[str] = BUILTIN, groups: Iterable[Group] = GROUPS,
                 entry_points: bool = True) -> None:
        self._specs = list(builtin)
        self._entry_points = entry_points
        self._loaded = False
        self._commands: dict[tuple[str, ...], Command] = {}
        self.groups: dict[tuple[str, ...], Group] = {g.path: g for g in groups}

    def add(self, command: Command) -> Command:
        """Register ``command``; a path already taken is refused (two commands cannot share a name)."""
        self.load()  # so that a clash with a built-in shows now, not when the CLI starts
        if command.path in self._commands:
            raise ValueError(f"cxql {' '.join(command.path)} is already registered")
        if command.path in self.groups:
            raise ValueError(f"cxql {' '.join(command.path)} is a group of subcommands")
        self._commands[command.path] = command
        return command

    def remove(self, path: tuple[str, ...]) -> None:
        self._commands.pop(tuple(path), None)

    def commands(self) -> list[Command]:
        """Every command, built-in first, in registration order."""
        self.load()
        return list(self._commands.values())

    def top_level(self) -> list[str]:
        """The first words of every command (``store``, ``units``, ``report``, ...)."""
        return list(dict.fromkeys(c.path[0] for c in self.commands()))

    def group(self, path: tuple[str, ...]) -> Group:
        return self.groups.get(tuple(path)) or Group(tuple(path), f"{' '.join(path)} commands")

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for spec in self._specs:
            for command in _commands_of(_resolve(spec)):
                self.add(command)
        if self._entry_points:
            for entry in _entry_points():
                for command in _commands_of(entry.load()):
                    self.add(command)

    def build_parser(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add every command under ``parser`` (``cxql GROUP ... NAME``), groups made on first use."""
        levels: dict[tuple[str, ...], argparse._SubParsersAction] = {
            (): parser.add_subparsers(dest="group", required=True)}
        for command in self.commands():
            for depth in range(1, len(command.path)):
                prefix = command.path[:depth]
                if prefix not in levels:
                    group = self.group(prefix)
                    sub = levels[prefix[:-1]].add_parser(prefix[-1], help=group.help)
                    levels[prefix] = sub.add_subparsers(dest=group.dest, required=True)
            p = levels[command.path[:-1]].add_parser(command.path[-1], help=command.help,
                                                     description=command.description)
            command.arguments(p)
            p.set_defaults(_cxql_command=command)
        return parser


def _resolve(spec: str) -> object:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _commands_of(found: object) -> Iterator[Command]:
    if isinstance(found, Command):
        yield found
        return
    for item in found:  # type: ignore[union-attr]
        if not isinstance(item, Command):
            raise TypeError(f"a cxql command registry entry must be a Command, got {type(item).__name__}")
        yield item


def _entry_points() -> list:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


#: The registry the ``cxql`` command reads.
REGISTRY = Registry()


__all__ = ["BUILTIN", "Command", "ENTRY_POINT_GROUP", "Group", "REGISTRY", "Registry", "Tools"]
