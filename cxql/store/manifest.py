"""The store manifest: the one file that says which arrays make up a store.

A store is a directory whose ``manifest.json`` names every array file, with
its dtype, shape, size in bytes and a CRC-32 of its bytes (format version 2).
Files are never rewritten in place: a change writes new files under new names
and then replaces the manifest with one atomic rename, so the manifest is the
commit point and a reader always sees one whole generation of the store.

Nothing in the manifest is trusted: :func:`read_manifest` checks every key's
type, every file name (plain path segments inside the store, never ``..``),
and reports a fault as a :class:`~cxql.errors.StoreError` naming the file.
Version 1 stores (file names implied by the layout, sample names and concept
counts inside the manifest) are read through :func:`upgrade_v1`, which turns
them into the version 2 form in memory.
"""

from __future__ import annotations

import json
import os
import re
import math
import stat
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import StoreError

FORMAT = "cxql-store"
VERSION = 2
READABLE = (1, 2)
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
KINDS = ("vision", "text", "tokens")
_SEGMENT = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,199}")
_V1_LAYER_FILES = {"positions": ("hist_indptr", "hist_sig", "hist_count", "mask_indptr", "mask_positions"),
                   "bits": ("hist_indptr", "hist_sig", "hist_count", "mask_bits")}
_V1_POSITION_FILES = ("position_local", "sample_sig_indptr", "sample_sig_table")
_SEG = r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,199}"
#: The names cxql gives array files: KEY.npy, layers/LAYER/KEY.npy, each possibly under a generation gN/.
OWN_FILE = re.compile(rf"(?:g\d+/)?(?:layers/{_SEG}/)?{_SEG}\.npy")


#: How a layer's masks were made (cxql.store.units.Threshold.kind).
THRESHOLD_KINDS = ("quantile", "absolute", "masks", "cluster", "given")

#: Arrays that make the store what it is; ConceptStore.set_store_arrays never replaces them.
CORE_ARRAYS = frozenset({"signatures", "sig_counts", "position_sig", "concept_counts", "samples", "sample_names",
                         "sample_sig_table", "sample_sig_indptr"})


def check_segment(name: Any, what: str = "layer name") -> str:
    """A name used as one path segment: no slash or backslash, no control character, no leading dot.

    Layer names become directory names, so ``../x``, ``a/b``, ``.hidden`` or
    an empty name would leave the store or hide files; they are refused.
    """
    if not isinstance(name, str) or not _SEGMENT.fullmatch(name):
        raise StoreError(f"invalid {what} {name!r}: it must be one plain path segment "
                         "(no slash or backslash, not starting with a dot, at most 200 characters)")
    return name


def check_relpath(rel: Any, source: Path) -> str:
    """A file name from the manifest: plain segments joined by ``/``, inside the store."""
    if not isinstance(rel, str) or not rel:
        raise StoreError(f"{source}: a file name must be a non-empty string, got {rel!r}")
    try:
        for part in rel.split("/"):
            check_segment(part, "file name part")
    except StoreError:
        raise StoreError(f"{source}: file name {rel!r} is not a plain path inside the store") from None
    return rel


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _require(manifest: dict, key: str, check: Callable[[Any], bool], what: str, source: Path) -> Any:
    if key not in manifest:
        raise StoreError(f"{source}: missing key {key!r}")
    value = manifest[key]
    if not check(value):
        raise StoreError(f"{source}: key {key!r} must be {what}, got {type(value).__name__} {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _entry(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("file"), str)


def read_manifest(path: Path) -> dict:
    """Read, check and (for version 1) upgrade ``path/manifest.json``; raise StoreError naming the fault."""
    source = path / MANIFEST
    text = read_text_file(source, "manifest", MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(text)
    except RecursionError:
        raise StoreError(f"{source}: unreadable manifest (nested too deeply)") from None
    except ValueError as exc:
        raise StoreError(f"{source}: unreadable manifest ({exc})") from None
    return check_manifest(manifest, path)


def read_text_file(source: Path, what: str, limit: int) -> str:
    """The text of a regular file (a named pipe or device is refused before opening, so never blocks)."""
    size = regular_size(source, f"missing; {source.parent} is not a cxql store", f"unreadable {what}")
    if size > limit:
        raise StoreError(f"{source}: {size} bytes, too large for a {what}")
    try:
        with open(source, "rb") as fh:
            return fh.read(limit + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{source}: unreadable {what} ({exc})") from None


def regular_size(path: Path, missing: str, unreadable: str = "unreadable") -> int:
    """The size of ``path``, which must be a regular file: a named pipe is refused before it can block."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: {missing}") from None
    except OSError as exc:
        raise StoreError(f"{path}: {unreadable} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path}: not a regular file")
    return st.st_size


def check_manifest(manifest: Any, path: Path) -> dict:
    """Check a parsed manifest's keys and types; return it in version 2 form."""
    source = path / MANIFEST
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{source}: not a cxql store manifest")
    version = manifest.get("version")
    if not _is_int(version) or version not in READABLE:
        raise StoreError(f"{source}: store format version {version!r}; this cxql reads versions "
                         + ", ".join(map(str, READABLE)))
    _require(manifest, "kind", lambda v: isinstance(v, str) and v in KINDS, " or ".join(map(repr, KINDS)), source)
    for key in ("n_positions", "n_samples", "n_signatures"):
        _require(manifest, key, _count, "a non-negative integer", source)
    _require(manifest, "mask_shape", lambda v: v is None or (isinstance(v, list) and v and
                                                            all(_is_int(x) and x > 0 for x in v)),
             "null or a list of positive integers", source)
    concepts = _require(manifest, "concepts", lambda v: isinstance(v, list) and len(v) > 0,
                        "a non-empty list", source)
    for i, c in enumerate(concepts):
        if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("category"), str)):
            raise StoreError(f"{source}: concepts[{i}] must have a string name and category")
        if version == 1 and not _count(c.get("count")):
            raise StoreError(f"{source}: concepts[{i}] needs a non-negative integer count")
    qualified = Counter(f"{c['category']}:{c['name']}" if c["category"] else c["name"] for c in concepts)
    repeated = [name for name, k in qualified.items() if k > 1]
    if repeated:
        raise StoreError(f"{source}: concept names are repeated within their category: "
                         + ", ".join(map(repr, repeated[:5])))
    layers = _require(manifest, "layers", lambda v: isinstance(v, dict), "an object", source)
    for name, meta in layers.items():
        check_layer_meta(name, meta, source, version)
    _require(manifest, "metadata", lambda v: isinstance(v, dict), "an object", source)
    if "position_ids" in manifest or version == 2:
        _require(manifest, "position_ids", lambda v: v in ("plain", "per-sample"),
                 "'plain' or 'per-sample'", source)
    if version == 1:
        return upgrade_v1(manifest, path)
    manifest.pop("legacy", None)  # only ever made in memory, from a version 1 manifest
    _require(manifest, "generation", _count, "a non-negative integer", source)
    arrays = _require(manifest, "arrays", lambda v: isinstance(v, dict), "an object", source)
    _check_entries(arrays, source, "arrays")
    old = manifest.setdefault("retired", [])
    if not isinstance(old, list):
        raise StoreError(f"{source}: key 'retired' must be a list of file names")
    used = referenced_files(manifest)
    for rel in old:
        check_retired(rel, used, source)
    return manifest


def check_retired(rel: Any, used: set[str], source: Path) -> str:
    """A file a writer may delete: one cxql wrote (:data:`OWN_FILE`) that the manifest no longer names.

    ``retired`` lists files an earlier generation named, for the next writer
    to delete; a hand-edited entry naming the manifest, the lock, a user's
    file or an array still in use would make that writer delete it.
    """
    if not isinstance(rel, str) or not OWN_FILE.fullmatch(rel):
        raise StoreError(f"{source}: 'retired' names {rel!r}, which is not an array file cxql writes")
    check_relpath(rel, source)
    if rel in used:
        raise StoreError(f"{source}: 'retired' names {rel!r}, which the manifest still has in use")
    return rel


def check_layer_meta(name: Any, meta: Any, source: Path, version: int) -> None:
    try:
        check_segment(name)
    except StoreError as exc:
        raise StoreError(f"{source}: {exc}") from None
    where = f"layer {name!r}"
    if not isinstance(meta, dict):
        raise StoreError(f"{source}: {where} must be an object")
    checks = {"units": (_count, "a non-negative integer"),
              "encoding": (lambda v: isinstance(v, str) and v in _V1_LAYER_FILES, "'positions' or 'bits'"),
              "threshold": (_threshold, "an object with a kind (" + ", ".join(THRESHOLD_KINDS)
                            + ") and a finite numeric value"),
              "activations": (lambda v: isinstance(v, bool), "true or false")}
    if version == 2:
        checks["arrays"] = (lambda v: isinstance(v, dict), "an object")
    for key, (check, what) in checks.items():
        if key not in meta:
            raise StoreError(f"{source}: {where} is missing key {key!r}")
        if not check(meta[key]):
            raise StoreError(f"{source}: {where} key {key!r} must be {what}, got {_short(meta[key])}")
    if version == 2:
        _check_entries(meta["arrays"], source, f"{where} arrays")


def _threshold(v: Any) -> bool:
    if not isinstance(v, dict) or not isinstance(v.get("kind"), str) or v["kind"] not in THRESHOLD_KINDS:
        return False
    return all(_finite(v.get(key)) for key in ("value", "upper") if key == "value" or key in v)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dtype(v: Any) -> bool:
    try:
        return isinstance(v, str) and not np.dtype(v).hasobject
    except (TypeError, ValueError):
        return False


def _check_entries(arrays: dict, source: Path, where: str) -> None:
    for key, entry in arrays.items():
        if not _entry(entry):
            raise StoreError(f"{source}: {where} entry {key!r} must be an object with a file name")
        check_segment(key, "array name")
        check_relpath(entry["file"], source)
        missing = [f for f in ("dtype", "shape", "bytes", "crc32") if f not in entry]
        if missing:
            raise StoreError(f"{source}: {where} entry {key!r} is missing {missing[0]!r}")
        for field, ok in (("dtype", _dtype), ("shape", lambda v: isinstance(v, list) and all(_count(x) for x in v)),
                          ("bytes", _count), ("crc32", lambda v: _count(v) and v < 2**32)):
            if field in entry and not ok(entry[field]):
                raise StoreError(f"{source}: {where} entry {key!r} has a bad {field!r}: {_short(entry[field])}")


def upgrade_v1(manifest: dict, path: Path) -> dict:
    """A version 1 manifest in version 2 form: file names from the old fixed layout.

    Version 1 kept concept counts and sample names in the manifest; they move
    to ``legacy`` here and become arrays (``concept_counts``, ``sample_names``)
    when the store is opened, and files when it is next written.
    """
    out = {k: v for k, v in manifest.items() if k not in ("sample_names",)}
    out["version"], out["generation"] = 1, 0
    out.setdefault("position_ids", "plain")
    names = manifest.get("sample_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(x, str) for x in names)):
        raise StoreError(f"{path / MANIFEST}: key 'sample_names' must be null or a list of strings")
    out["legacy"] = {"counts": [c["count"] for c in manifest["concepts"]], "sample_names": names}
    keys = ["signatures", "sig_counts"]
    keys += list(_V1_POSITION_FILES) if out["position_ids"] == "per-sample" else ["position_sig"]
    if _exists(path / "samples.npy"):
        keys.append("samples")
    if manifest["metadata"].get("word_vectors"):
        keys.append("word_vectors")
    out["arrays"] = {k: {"file": f"{k}.npy"} for k in keys}
    layers = {}
    for name, meta in manifest["layers"].items():
        files = list(_V1_LAYER_FILES[meta["encoding"]])
        files += [k for k in ("thresholds", "activations") if _exists(path / "layers" / name / f"{k}.npy")
                  or (k == "activations" and meta["activations"])]  # a missing file is then named
        layers[name] = {**meta, "arrays": {k: {"file": f"layers/{name}/{k}.npy"} for k in files}}
    out["layers"] = layers
    return out


def _exists(p: Path) -> bool:
    return os.path.lexists(p)


def referenced_files(manifest: dict) -> set[str]:
    """Every file (relative to the store) the manifest names."""
    files = {e["file"] for e in manifest.get("arrays", {}).values()}  # "retired" files are not named
    for meta in manifest.get("layers", {}).values():
        files |= {e["file"] for e in meta.get("arrays", {}).values()}
    return files


def to_json(manifest: dict) -> str:
    """The manifest as written: version 2, without the in-memory ``legacy`` part."""
    out = {k: v for k, v in manifest.items() if k != "legacy"}
    out["version"] = VERSION
    return json.dumps(out, indent=1)
