"""Committing changes to a store: new files under new names, then one atomic manifest switch.

A change (a new layer, a classifier, a whole new store at the same path) is
written in four steps, and a kill at any of them leaves either the old store
or the new one, never a mix:

1. the new arrays go to a staging directory ``STORE/.cxql-tmp-PID-*``;
2. under the store lock, the manifest is re-read (another writer may have
   added a layer meanwhile) and the staging directory is renamed to the next
   unused generation ``STORE/gN``;
3. the new manifest, naming the new files, replaces ``manifest.json`` with
   one ``os.replace`` (the commit point);
4. files that only the old manifest named are deleted.

Readers that opened the old generation keep their memory maps (a deleted
file lives on while mapped); a reader that finds a file gone re-reads the
manifest (see :meth:`ConceptStore.open`). Leftovers of killed writers (a
staging directory whose process is gone, an unreferenced ``gN``, a manifest
temp file) are removed by the next writer under the lock. Nothing else is
ever deleted: only files a manifest named, and cxql's own temporary names,
and only by a writer (opening a store deletes nothing).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import StoreError, UsageError
from .lock import store_lock
from .manifest import FORMAT, MANIFEST, OWN_FILE, read_manifest, referenced_files, to_json
from .staged import StagedArray
from .validate import file_entry

STAGING_PREFIX = ".cxql-tmp-"
MANIFEST_TMP = f".{MANIFEST}.tmp"
_GENERATION = re.compile(r"g(\d+)")


def _step(name: str) -> None:
    """A named point between two steps of a commit (tests replace it to kill the writer there)."""


# ------------------------------------------------------------------ where to write


def target_kind(path: Path, inputs: Iterable[str | os.PathLike] = (), force: bool = False) -> str:
    """How a store may be written at ``path``: 'new' (absent or empty), 'store' (replace a store) or 'force'.

    ``path`` is taken as what it points to (:func:`resolved`): a link to a
    store updates that store. Anything else at ``path`` (a dataset, a source
    tree, an input file) is refused unless ``force``. A path equal to an
    input, above one or inside one (a dataset's folder is read whole) is
    refused always, ``force`` or not: replacing it would delete what is read.
    """
    check_not_input(path, inputs)
    out = resolved(path)
    if not os.path.lexists(out):
        return "new"
    if out.is_dir():
        if not any(out.iterdir()):
            return "new"
        if is_store(out):
            try:
                read_manifest(out)
            except StoreError as exc:
                if force:
                    return "force"
                raise StoreError(f"{exc.message}\n{path} is a damaged store; pass --force to replace it") from None
            return "store"
    if force:
        return "force"
    raise UsageError(f"{path} exists and is not a cxql store; refusing to replace it "
                     "(choose another --out, or pass --force to replace it anyway)")


def resolved(path: str | os.PathLike) -> Path:
    """``path`` with every link followed (also a dangling last one), so a link and its target are one place."""
    return Path(os.path.realpath(path))


def check_not_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is an input, holds one, or lies inside one (links followed on both sides)."""
    outs = {Path(os.path.abspath(path)), resolved(path)}
    for source in inputs:
        for inp in {Path(os.path.abspath(source)), resolved(source)}:
            for out in outs:
                if out == inp or inp.is_relative_to(out):
                    raise UsageError(f"--out {path} would overwrite the input {source}; "
                                     "choose another output path")
                if out.is_relative_to(inp) and not inp.is_file():  # under a file: the write fails by itself
                    raise UsageError(f"--out {path} is inside the input {source}, which the build reads; "
                                     "choose an output path outside it")


def is_store(path: Path) -> bool:
    """Whether ``path`` holds a cxql manifest (its arrays may still be damaged)."""
    manifest = path / MANIFEST
    try:
        if not manifest.is_file() or manifest.stat().st_size > (64 << 20):
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


# ------------------------------------------------------------------ staging


def new_staging(store: Path) -> Path:
    """A fresh staging directory inside ``store`` (named after this process, for later cleanup)."""
    return public(Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=store)))


@contextmanager
def staging_dir(store: Path | None) -> Iterator[Path | None]:
    """A staging directory in ``store`` for arrays written as files before a commit (None for a store in
    memory); the commit renames it into the store, and if anything fails before, it is removed here."""
    if store is None:
        yield None
        return
    staging = new_staging(store)
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def public(directory: Path) -> Path:
    """Give a temporary directory the permissions of a normal one (mkdtemp makes it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    return directory


def staged_entries(staging: Path) -> tuple[dict, dict]:
    """Manifest entries of the staged arrays: (top-level arrays, {layer: arrays}), names relative to staging."""
    top: dict[str, dict] = {}
    layers: dict[str, dict] = {}
    for file in sorted(staging.rglob("*.npy")):
        rel = file.relative_to(staging).as_posix()
        _fsync_file(file)  # the data must be on disk before a manifest names it
        parts = rel[:-4].split("/")
        if len(parts) == 1:
            top[parts[0]] = file_entry(staging, rel)
        elif len(parts) == 3 and parts[0] == "layers":
            layers.setdefault(parts[1], {})[parts[2]] = file_entry(staging, rel)
        else:
            raise StoreError(f"{file}: unexpected file in a store being written")
    for directory in [staging, *(d for d in staging.rglob("*") if d.is_dir())]:
        _fsync_dir(directory)
    return top, layers


def prefixed(entries: dict, prefix: str) -> dict:
    return {key: {**e, "file": prefix + e["file"]} for key, e in entries.items()}


def save_arrays(staging: Path, arrays: "dict[str, np.ndarray | StagedArray]", under: str = "") -> None:
    """Write arrays as ``.npy`` files into ``staging/under``; a :class:`StagedArray` is already there."""
    target = staging / under if under else staging
    target.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        file = target / f"{key}.npy"
        if isinstance(arr, StagedArray):
            if resolved(arr.file) != resolved(file):
                raise StoreError(f"{arr.file}: a staged array must be written as {file}")
            continue
        np.save(file, np.asarray(arr), allow_pickle=False)
        _step("array")


# ------------------------------------------------------------------ the commit


def update_store(path: Path, staging: Path, change: Callable[[dict, dict, dict], dict]) -> dict:
    """Commit ``staging`` into the store at ``path``: ``change(fresh, top, layers) -> new manifest``.

    ``fresh`` is the manifest re-read under the lock; ``top``/``layers`` are
    the staged files' entries, already named as they will be in the store.
    Returns the manifest written. The staging directory is consumed.
    """
    try:
        top, layers = staged_entries(staging)
        _step("staged")
        with store_lock(path):
            fresh = read_manifest(path)
            generation = next_generation(path, fresh)
            prefix = f"g{generation}/"
            new = change(copy.deepcopy(fresh), prefixed(top, prefix),
                         {k: prefixed(v, prefix) for k, v in layers.items()})
            new["generation"] = generation
            new["retired"] = retired(path, fresh, new)
            if top or layers:
                os.rename(staging, path / f"g{generation}")
                _step("renamed")
            try:
                write_manifest(path, new)
            except BaseException:
                shutil.rmtree(path / f"g{generation}", ignore_errors=True)  # never named: nobody reads it
                raise
            _step("switched")
            tidy(path, new, old=fresh)
            _step("cleaned")
            return new
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def retired(path: Path, old: dict, new: dict) -> list[str]:
    """Files earlier manifests named that ``new`` does not and that still exist: cxql's, so safe to delete.

    Kept in the manifest so that a writer killed after the switch but before
    deleting them leaves a record; the next writer deletes them.
    """
    before = referenced_files(old) | set(old.get("retired", []))
    return sorted(f for f in before - referenced_files(new) if os.path.lexists(path / f))


def next_generation(path: Path, manifest: dict) -> int:
    used = [int(m.group(1)) for p in path.iterdir() if (m := _GENERATION.fullmatch(p.name))]
    return max([int(manifest.get("generation", 0)), *used]) + 1


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replace ``directory/manifest.json`` atomically (written, flushed to disk, then renamed)."""
    tmp = directory / f"{MANIFEST_TMP}-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(to_json(manifest))
        fh.flush()
        os.fsync(fh.fileno())
    _step("manifest-written")
    os.replace(tmp, directory / MANIFEST)
    _fsync_dir(directory)


def _fsync_file(file: Path) -> None:
    with open(file, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ leftovers


def tidy(path: Path, manifest: dict, old: dict | None = None) -> list[Path]:
    """Delete what no manifest names any more; call under the store lock with the current manifest.

    Removes files only ``old`` named, unreferenced files in generation
    directories and under ``layers/``, manifest temp files, and staging
    directories of processes that are gone. Returns what was removed.
    """
    keep = referenced_files(manifest)
    removed: list[Path] = []
    candidates = set(manifest.get("retired", []))
    if old:
        candidates |= referenced_files(old) | set(old.get("retired", []))
    for top in path.iterdir():
        name = top.name
        if _GENERATION.fullmatch(name) or name == "layers":
            if top.is_dir() and not top.is_symlink():
                candidates |= {f.relative_to(path).as_posix() for f in top.rglob("*") if not f.is_dir()}
        elif name.startswith(MANIFEST_TMP):
            candidates.add(name)
        elif name.startswith(STAGING_PREFIX) and not _alive(_pid_of(name[len(STAGING_PREFIX):])):
            shutil.rmtree(top, ignore_errors=True)
            removed.append(top)
    root = os.path.realpath(path)
    for rel in sorted(candidates - keep):
        if not (OWN_FILE.fullmatch(rel) or _GENERATION.fullmatch(rel.split("/", 1)[0]) or rel.startswith(MANIFEST_TMP)):
            continue  # not a name cxql gives its files: never ours to delete
        file = path / rel
        if os.path.realpath(file.parent) != root and not os.path.realpath(file.parent).startswith(root + os.sep):
            continue  # a linked folder: what it points at is not ours
        if os.path.lexists(file) and not file.is_dir():
            file.unlink()
            removed.append(file)
            _step("removed")
            _prune_empty(file.parent, path)
    return removed


def _prune_empty(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def has_leftovers(path: Path, manifest: dict) -> bool:
    """Whether the store directory holds something a killed writer left (checked by names only)."""
    if any(os.path.lexists(path / f) for f in manifest.get("retired", [])):
        return True
    generations = {f.split("/", 1)[0] for f in referenced_files(manifest)}
    for entry in os.listdir(path):
        if entry.startswith((STAGING_PREFIX, MANIFEST_TMP)):
            return True
        if _GENERATION.fullmatch(entry) and entry not in generations:
            return True
    return False


def _pid_of(rest: str) -> int:
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
