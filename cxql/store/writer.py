"""Writing stores: streamed, atomic, and safe to interrupt.

A store on disk must never be half-written: readers map its arrays, and a
build of real Broden takes minutes. So a new store is written to a temporary
directory next to the destination, renamed into place only when the manifest
is complete; a store that replaces an existing one is staged inside it and
switched in by its manifest (:mod:`cxql.store.commit`). A builder streams its biggest array (``position_sig``,
4 bytes per position, about 1.1 GB for ADE20k) straight into a memory-mapped
``.npy`` inside that directory, so it never holds all ids in memory.

If the process is interrupted (an exception, Ctrl-C) the temporary directory
is removed; if it is killed outright, the next writer for the same
destination removes directories left by writers that are no longer running.
Either way the old store, if any, stays intact until the switch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import StoreError
from . import commit, ids
from .commit import _alive, new_staging, public, resolved, staged_entries, target_kind, update_store, write_manifest
from .manifest import FORMAT, VERSION
from .signatures import smallest_uint
from .validate import file_entry

CHUNK = 1 << 24  # ids per step when re-reading a streamed position_sig


def store_manifest(names: Sequence[str], categories: Sequence[str], concept_counts: Sequence[int], *,
                   n_positions: int, n_samples: int, n_signatures: int, mask_shape: Sequence[int] | None,
                   kind: str = "vision", sample_names: Sequence[Any] | None = None,
                   metadata: Mapping[str, Any] | None = None, position_ids: str = "plain") -> dict:
    """The manifest of a store without layers (shared by every builder).

    Concept counts and sample names are bulk data: they travel in ``legacy``
    and become the arrays ``concept_counts`` and ``sample_names`` (see
    :func:`bulk_arrays`) when the store is built or written.
    """
    return {
        "format": FORMAT, "version": VERSION, "kind": kind, "generation": 0, "position_ids": position_ids,
        "n_positions": int(n_positions), "n_samples": int(n_samples),
        "mask_shape": list(mask_shape) if mask_shape else None,
        "n_signatures": int(n_signatures),
        "concepts": [{"name": str(nm), "category": str(cat)} for nm, cat in zip(names, categories)],
        "arrays": {},
        "layers": {},
        "metadata": dict(metadata or {}),
        "legacy": {"counts": [int(c) for c in concept_counts],
                   "sample_names": list(map(str, sample_names)) if sample_names is not None else None},
    }


def bulk_arrays(manifest: dict) -> dict[str, np.ndarray]:
    """The arrays a manifest carries inline (``legacy``: version 1 stores and fresh builds)."""
    legacy = manifest.get("legacy")
    if not legacy:
        return {}
    out = {"concept_counts": np.asarray(legacy["counts"], dtype=np.int64)}
    if legacy.get("sample_names") is not None:
        out["sample_names"] = np.asarray(legacy["sample_names"], dtype=str)
    return out


def without_bulk(manifest: dict) -> dict:
    """A manifest for writing: no ``legacy`` part and no per-concept counts (they are arrays)."""
    out = {k: v for k, v in manifest.items() if k != "legacy"}
    out["concepts"] = [{k: v for k, v in c.items() if k != "count"} for c in manifest["concepts"]]
    return out


class StoreWriter:
    """A store being written into a staging directory; :meth:`commit` puts it in place.

    Use as a context manager: leaving the block by an exception removes the
    staging directory and leaves ``path`` as it was. Where ``path`` may be
    written is decided up front (:func:`~cxql.store.commit.target_kind`): an
    absent path or empty directory, or an existing store (replaced in place,
    atomically); anything else only with ``force``, and never an input.
    """

    def __init__(self, path: str | os.PathLike, tag: str = "build", *, force: bool = False,
                 inputs: Sequence[str | os.PathLike] = ()) -> None:
        self.mode = target_kind(Path(path), inputs, force)
        self.path = resolved(path)  # a link to a store: that store is written
        if self.mode == "store":
            self.tmp = new_staging(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.path, tag)
            self.tmp = public(Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{tag}-{os.getpid()}-",
                                                    dir=self.path.parent)))
        self._maps: list[np.memmap] = []
        self.position_ids = "plain"  # or "per-sample": how position_sig is laid out (cxql.store.ids)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def stream(self, key: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.memmap:
        """A writable memory-mapped ``key.npy`` to fill in place."""
        mm = np.lib.format.open_memmap(self._file(key), mode="w+", dtype=dtype, shape=shape)
        self._maps.append(mm)
        return mm

    def save(self, key: str, array: np.ndarray) -> None:
        """Write ``key.npy`` (``key`` may be a relative path such as ``layers/l4/thresholds``)."""
        np.save(self._file(key), np.asarray(array), allow_pickle=False)
        commit._step("array")

    def save_signatures(self, bits: np.ndarray, position_sig: np.memmap,
                        sample_offsets: np.ndarray | None = None) -> np.ndarray:
        """Save a streamed build's signature table and counts, and the ids in their smallest layout.

        The ids stay in ``position_sig.npy`` (narrowest dtype) or, given the
        samples' offsets and when smaller, move to the per-sample layout of
        :mod:`cxql.store.ids`; ``self.position_ids`` says which, for the manifest.
        Returns int64 [S]: how many positions carry each signature (counted from the ids).
        """
        if isinstance(position_sig, np.memmap):
            position_sig.flush()  # later steps re-read the file
        counts = np.zeros(len(bits), dtype=np.int64)
        for start in range(0, len(position_sig), CHUNK):
            counts += np.bincount(position_sig[start:start + CHUNK], minlength=len(bits))
        self.save("signatures", bits)
        self.save("sig_counts", counts.astype(smallest_uint(int(counts.max(initial=0)))))
        dtype = smallest_uint(max(len(bits) - 1, 0))
        if sample_offsets is not None and self.write_sample_local(position_sig, sample_offsets, dtype):
            (self.tmp / "position_sig.npy").unlink()
        else:
            self.narrow("position_sig", dtype)
        return counts

    def write_sample_local(self, position_sig: np.ndarray, offsets: np.ndarray, plain_dtype: type) -> bool:
        """Write the per-sample id layout if it is smaller than plain ids of ``plain_dtype``; say whether."""
        if len(offsets) < 2 or len(position_sig) < 16 * (len(offsets) - 1):
            return False  # a few positions per sample: the tables would cost more than they save
        largest = ids.encode_sample_local(position_sig, offsets, self.stream)
        table = int(np.load(self._file("sample_sig_table"), mmap_mode="r").shape[0])
        if ids.sample_local_bytes(len(position_sig), len(offsets) - 1, table, largest) \
                >= np.dtype(plain_dtype).itemsize * len(position_sig):
            for key in ids.FILES:
                self._file(key).unlink()
            return False
        self.narrow("position_local", smallest_uint(max(largest - 1, 0)))
        self.position_ids = "per-sample"
        return True

    def narrow(self, key: str, dtype: type) -> None:
        """Rewrite ``key.npy`` in a narrower dtype, a chunk at a time."""
        wide = np.load(self._file(key), mmap_mode="r")
        if np.dtype(dtype).itemsize >= wide.dtype.itemsize:
            return
        narrow = self.stream(f"{key}.narrow", wide.shape, dtype)
        for start in range(0, len(wide), CHUNK):
            narrow[start:start + CHUNK] = wide[start:start + CHUNK]
        narrow.flush()
        self._file(f"{key}.narrow").replace(self._file(key))

    def commit(self, manifest: dict) -> Path:
        """Flush, write the manifest naming every staged file, and switch the store at ``path`` to it."""
        for mm in self._maps:
            mm.flush()
        self._maps.clear()
        for key, arr in bulk_arrays(manifest).items():
            if not self._file(key).exists():
                self.save(key, arr)
        manifest = without_bulk(manifest)

        def change(_old: dict, top: dict, layers: dict) -> dict:
            out = {**manifest, "arrays": top}
            out["layers"] = {name: {**{k: v for k, v in meta.items() if k != "arrays"},
                                    "arrays": layers.get(name, {})} for name, meta in manifest["layers"].items()}
            missing = set(layers) - set(out["layers"])
            if missing:
                raise RuntimeError(f"layer files without a manifest entry: {sorted(missing)}")
            return out

        if self.mode == "store":
            update_store(self.path, self.tmp, change)
            return self.path
        top, layers = staged_entries(self.tmp)
        write_manifest(self.tmp, {**change({}, top, layers), "generation": 1})
        if self.mode == "force" and os.path.lexists(self.path):
            _replace_anything(self.tmp, self.path)
        else:
            try:
                os.replace(self.tmp, self.path)  # onto nothing, or an empty directory
            except OSError as exc:
                raise StoreError(f"{self.path}: could not move the new store into place ({exc.strerror}); "
                                 "another process may have written there") from None
        return self.path

    def abort(self) -> None:
        self._maps.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _file(self, key: str) -> Path:
        target = self.tmp / f"{key}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def merged_manifest(path: Path, fresh: dict, top: dict, layers: dict, change: Any, store_level: bool) -> dict:
    """The manifest a change commits: ``fresh`` (re-read under the lock) without its inline bulk arrays, every
    entry with its checksum, then ``change(new, staged layer entries[, staged top entries])`` applied.

    A version 1 store is upgraded on the way: its inline counts and sample
    names are among the staged top-level files ``top``.
    """
    new = without_bulk(fresh)
    if fresh.get("legacy"):
        new["arrays"] = {**fresh["arrays"], **{k: top[k] for k in bulk_arrays(fresh) if k in top}}
        if set(bulk_arrays(fresh)) - set(top):
            raise StoreError(f"{path}: changed by another process while upgrading; try again")
    new["arrays"] = {k: e if "crc32" in e else file_entry(path, e["file"]) for k, e in new["arrays"].items()}
    for meta in new["layers"].values():
        meta["arrays"] = {k: e if "crc32" in e else file_entry(path, e["file"]) for k, e in meta["arrays"].items()}
    if store_level:  # store-level arrays: the change also gets their staged entries
        change(new, layers, top)
    else:
        change(new, layers)
    return new


def write_store(path: Path, arrays: Mapping[str, np.ndarray], layers: Mapping[str, Mapping[str, np.ndarray]],
                manifest: dict, sample_offsets: np.ndarray, *, force: bool = False,
                inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Write a whole store (its arrays, its layers' arrays, its manifest) to ``path`` atomically."""
    with StoreWriter(path, tag="save", force=force, inputs=inputs) as writer:
        plain = arrays.get("position_sig")
        local = plain is not None and writer.write_sample_local(plain, sample_offsets, plain.dtype)
        for key, arr in arrays.items():
            if not (local and key == "position_sig"):
                writer.save(key, arr)
        for name, group in layers.items():
            for key, arr in group.items():
                writer.save(f"layers/{name}/{key}", arr)
        manifest = without_bulk(manifest)
        if plain is not None:
            manifest["position_ids"] = writer.position_ids
        manifest["layers"] = {name: {k: v for k, v in meta.items() if k != "arrays"}
                              for name, meta in manifest["layers"].items()}
        writer.commit(manifest)


def remove_stale(path: Path, tag: str) -> list[Path]:
    """Remove temporary directories for ``path`` whose writing process has died."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}.{tag}-*-*"):
        pid = candidate.name[len(f".{path.name}.{tag}-"):].split("-", 1)[0]
        if candidate.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _replace_anything(src: Path, dst: Path) -> None:
    """Replace what the user forced us to replace: move it aside, move ``src`` in, delete it."""
    old = dst.with_name(f".{dst.name}.replaced-{os.getpid()}")
    os.replace(dst, old)
    os.replace(src, dst)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()
