"""Writing stores: streamed, atomic, and safe to interrupt.

A store on disk must never be half-written: readers map its arrays, and a
build of real Broden takes minutes. So every write goes to a temporary
directory next to the destination, which is renamed into place only when the
manifest is complete. A builder streams its biggest array (``position_sig``,
4 bytes per position, about 1.1 GB for ADE20k) straight into a memory-mapped
``.npy`` inside that directory, so it never holds all ids in memory.

If the process is interrupted (an exception, Ctrl-C) the temporary directory
is removed; if it is killed outright, the next writer for the same
destination removes directories left by writers that are no longer running.
Either way the old store, if any, stays intact until the rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import ids
from .signatures import smallest_uint

FORMAT = "cxql-store"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 24  # ids per step when re-reading a streamed position_sig


def store_manifest(names: Sequence[str], categories: Sequence[str], concept_counts: Sequence[int], *,
                   n_positions: int, n_samples: int, n_signatures: int, mask_shape: Sequence[int] | None,
                   kind: str = "vision", sample_names: Sequence[Any] | None = None,
                   metadata: Mapping[str, Any] | None = None, position_ids: str = "plain") -> dict:
    """The manifest of a store without layers (shared by every builder)."""
    return {
        "format": FORMAT, "version": VERSION, "kind": kind, "position_ids": position_ids,
        "n_positions": int(n_positions), "n_samples": int(n_samples),
        "mask_shape": list(mask_shape) if mask_shape else None,
        "n_signatures": int(n_signatures),
        "concepts": [{"name": str(nm), "category": str(cat), "count": int(c)}
                     for nm, cat, c in zip(names, categories, concept_counts)],
        "sample_names": list(map(str, sample_names)) if sample_names is not None else None,
        "layers": {},
        "metadata": dict(metadata or {}),
    }


class StoreWriter:
    """A store being written into a temporary directory; :meth:`commit` puts it in place.

    Use as a context manager: leaving the block by an exception removes the
    temporary directory and leaves ``path`` as it was.
    """

    def __init__(self, path: str | os.PathLike, tag: str = "build") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.path, tag)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{tag}-{os.getpid()}-", dir=self.path.parent))
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

    def commit(self, manifest: dict | None = None) -> Path:
        """Flush, write the manifest (unless written already), and move the store into place."""
        for mm in self._maps:
            mm.flush()
        self._maps.clear()
        if manifest is not None:
            write_manifest(self.tmp, manifest)
        if not (self.tmp / MANIFEST).exists():
            raise RuntimeError("a store needs its manifest before it is committed")
        replace_dir(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._maps.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _file(self, key: str) -> Path:
        target = self.tmp / f"{key}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def remove_stale(path: Path, tag: str) -> list[Path]:
    """Remove temporary directories for ``path`` whose writing process has died."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}.{tag}-*-*"):
        pid = candidate.name[len(f".{path.name}.{tag}-"):].split("-", 1)[0]
        if candidate.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replace ``directory/manifest.json`` atomically."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


def replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` with the shortest possible window."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
