"""Opening a store's arrays and layers against its manifest, header-only.

Every array is mapped through :func:`~cxql.store.validate.open_array`, with
the shape its role demands: signatures [S, ceil(K/8)], ids [N], offsets
[n+1], one histogram pointer per unit plus one, and so on. The sizes the
manifest states (N positions, S signatures, n samples, U units) are thereby
checked against the arrays themselves, and the few values that bound other
arrays (the last entry of each pointer array) are read, one element each,
so a damaged store fails here with the file named, not later with a wrong
answer. Only files the manifest names are opened; any other ``*.npy`` in the
directory is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from .layer import Layer
from .manifest import MANIFEST, read_manifest
from .signatures import concept_counts, packed_width
from .validate import open_array

_POSITION_KEYS = {"plain": ("position_sig",), "per-sample": ("position_local", "sample_sig_indptr",
                                                            "sample_sig_table")}
_LAYER_KEYS = {"positions": ("hist_indptr", "hist_sig", "hist_count", "mask_indptr", "mask_positions"),
               "bits": ("hist_indptr", "hist_sig", "hist_count", "mask_bits")}


def open_consistent(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, Layer]]:
    """(manifest, arrays, layers) of one generation, even while a writer switches to the next.

    A writer deletes old files only after switching the manifest; so when a
    file is missing or damaged and the manifest has changed meanwhile, we
    open the new generation instead. Mapped files stay readable after deletion.
    """
    manifest = read_manifest(path)
    for _attempt in range(20):
        try:
            arrays, layers = open_arrays(path, manifest)
            return manifest, arrays, layers
        except StoreError:
            again = read_manifest(path)
            if again == manifest:
                raise
            manifest = again
    raise StoreError(f"{path}: rewritten too often while opening; try again")


def open_arrays(path: Path, manifest: dict) -> tuple[dict[str, np.ndarray], dict[str, Layer]]:
    """Map the store's arrays and layers, checking each against the manifest; StoreError names the file."""
    n, s, k = manifest["n_positions"], manifest["n_signatures"], len(manifest["concepts"])
    n_samples = manifest["n_samples"]
    entries = manifest["arrays"]
    expect: dict[str, tuple[Any, ...] | None] = {
        "signatures": (s, packed_width(k)), "sig_counts": (s,), "samples": (n_samples + 1,),
        "concept_counts": (k,), "sample_names": (n_samples,), "position_sig": (n,), "position_local": (n,),
        "sample_sig_indptr": (n_samples + 1,), "sample_sig_table": (None,),
        "word_vectors": (_int(manifest["metadata"].get("word_vectors"), "words"), None)}
    required = ["signatures", "sig_counts", *_POSITION_KEYS[manifest["position_ids"]]]
    if manifest["version"] >= 2:
        required.append("concept_counts")
    for key in required:
        if key not in entries:
            raise StoreError(f"{path / MANIFEST}: names no {key!r} array")
    arrays = {key: open_array(path / e["file"], key, e, expect.get(key)) for key, e in entries.items()}
    _check_pointer(arrays, entries, path, "samples", n)
    _check_pointer(arrays, entries, path, "sample_sig_indptr", len(arrays.get("sample_sig_table", ())))
    per = int(np.prod(manifest["mask_shape"])) if manifest["mask_shape"] else 1
    if "samples" not in arrays and n != n_samples * per:
        raise StoreError(f"{path / MANIFEST}: {n} positions is not {n_samples} samples of {per}")
    rows = n if manifest.get("kind") == "tokens" else n_samples  # token stores: activations per token
    layers = {name: open_layer(path, name, meta, n, n_samples, arrays["sig_counts"], activation_rows=rows)
              for name, meta in manifest["layers"].items()}
    return arrays, layers


def open_layer(path: Path, name: str, meta: dict, n_positions: int, n_samples: int,
               sig_counts: np.ndarray | None = None, activation_rows: int | None = None) -> Layer:
    """One layer's arrays, checked against its unit count and the store's sizes."""
    units, entries = meta["units"], meta["arrays"]
    where = path / MANIFEST
    for key in _LAYER_KEYS[meta["encoding"]]:
        if key not in entries:
            raise StoreError(f"{where}: layer {name!r} names no {key!r} array")
    if meta["activations"] and "activations" not in entries:
        raise StoreError(f"{where}: layer {name!r} says it keeps activations but names no file for them")
    expect = {"hist_indptr": (units + 1,), "mask_indptr": (units + 1,), "hist_sig": (None,),
              "hist_count": (None,), "mask_positions": (None,), "mask_bits": (units, (n_positions + 7) // 8),
              "thresholds": (units,), "classifier_predictions": (n_samples,),
              "classifier_weights": (None, units)}
    arrays = {}
    for key, e in entries.items():
        arrays[key] = open_array(path / e["file"], key, e, expect.get(key))
    acts = arrays.get("activations")
    rows = n_samples if activation_rows is None else activation_rows
    if acts is not None and (acts.ndim not in (2, 4) or acts.shape[:2] != (rows, units)):
        raise StoreError(f"{path / entries['activations']['file']}: has shape {list(acts.shape)}, expected "
                         f"[{rows}, {units}] or [{rows}, {units}, h, w]")
    _check_pointer(arrays, entries, path, "hist_indptr", len(arrays["hist_sig"]))
    if len(arrays["hist_count"]) != len(arrays["hist_sig"]):
        raise StoreError(f"{path / entries['hist_count']['file']}: has {len(arrays['hist_count'])} entries, "
                         f"hist_sig has {len(arrays['hist_sig'])}")
    if "mask_indptr" in arrays:
        _check_pointer(arrays, entries, path, "mask_indptr", len(arrays["mask_positions"]))
    if "classifier" in meta:
        _check_classifier(meta["classifier"], arrays, where, name)
    return Layer(name, {k: v for k, v in meta.items() if k != "arrays"}, arrays, n_positions, sig_counts,
                 {k: str(path / e["file"]) for k, e in entries.items()})


def _check_classifier(entry: Any, arrays: dict, where: Path, name: str) -> None:
    classes = entry.get("classes") if isinstance(entry, dict) else None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise StoreError(f"{where}: layer {name!r} classifier needs a list of class names")
    for key in ("classifier_weights", "classifier_predictions"):
        if key not in arrays:
            raise StoreError(f"{where}: layer {name!r} has a classifier but names no {key!r} array")
    if arrays["classifier_weights"].shape[0] != len(classes):
        raise StoreError(f"{where}: layer {name!r} classifier has {len(classes)} classes but "
                         f"{arrays['classifier_weights'].shape[0]} weight rows")


def _check_pointer(arrays: dict, entries: dict, path: Path, key: str, end: int) -> None:
    """A CSR pointer array must start at 0 and end at the length of what it points into."""
    ptr = arrays.get(key)
    if ptr is None or len(ptr) == 0:
        return
    first, last = int(ptr[0]), int(ptr[-1])
    if first != 0 or last != end:
        raise StoreError(f"{path / entries[key]['file']}: runs from {first} to {last}, expected 0 to {end}")


def _int(value: Any, key: str) -> int | None:
    got = value.get(key) if isinstance(value, dict) else None
    return got if isinstance(got, int) and not isinstance(got, bool) else None


#: Below this many bytes of signature bits, opening recomputes concept counts instead of trusting them.
VERIFY_COUNTS_BYTES = 1 << 18


def verify_counts(path: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Concept counts enter every IoU: recompute them when cheap (``cxql store check`` always does)."""
    files = {k: path / e["file"] for k, e in manifest["arrays"].items()}
    per_sig = arrays["sig_counts"]
    if per_sig.nbytes <= 64 * VERIFY_COUNTS_BYTES:  # one value per signature: cheap, and checked first
        total = int(np.sum(per_sig, dtype=np.uint64))
        if total != manifest["n_positions"]:
            raise StoreError(f"{files['sig_counts']}: counts {total} positions in all, but the store has "
                             f"{manifest['n_positions']}; the file is damaged")
    bits = arrays["signatures"]
    if bits.nbytes > VERIFY_COUNTS_BYTES:
        return
    counts = concept_counts(np.asarray(bits), np.asarray(arrays["sig_counts"], dtype=np.int64),
                            len(manifest["concepts"]))
    stored = np.asarray(arrays["concept_counts"], dtype=np.int64)
    if not np.array_equal(counts, stored):
        bad = int(np.flatnonzero(counts != stored)[0])
        where = files.get("concept_counts", path / "manifest.json")
        raise StoreError(f"{where}: concept {manifest['concepts'][bad]['name']!r} has count {stored[bad]}, "
                         f"but {files['signatures'].name} and {files['sig_counts'].name} give {counts[bad]}")
