"""The concept store: concepts, samples and unit layers of one probe dataset.

On disk a store is a directory (format version 2)::

    manifest.json        version, generation, sizes, concepts, layers, and for every
                         array its file name, dtype, shape, bytes and CRC-32
    signatures.npy       uint8 [S, ceil(K/8)]  distinct concept sets, bit-packed
    sig_counts.npy       uint [S]              positions carrying each signature
    position_sig.npy     uint [N]              each position's signature id (narrowest uint), or,
                                               when smaller, the per-sample layout of ids.py
    concept_counts.npy   int64 [K]             positions per concept
    samples.npy          int64 [n+1]           sample offsets (only if irregular)
    sample_names.npy     str [n]               sample names (when the builder has them)
    layers/<name>/       one directory per unit layer:
        thresholds.npy   float64 [U]
        hist_*.npy       per-unit signature histograms (CSR)
        mask_*.npy       unit masks: CSR positions or bit-packed rows
        activations.npy  the raw activations, when kept (for SET threshold)
    gN/...               files written by later changes (generation N), same names inside
    .cxql.lock           the writers' lock (cxql.store.lock)

Only the manifest says which files belong to the store: a change writes new
files under new names and switches the manifest atomically
(:mod:`cxql.store.commit`). Opening reads only the manifest and maps the
arrays after checking their headers (:mod:`cxql.store.reader`), so a store of
any size opens at once, and a damaged one fails with the file named. Version
1 stores (the names above, counts and sample names inside the manifest) still
open, and are upgraded when next written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np

from ..errors import DataError, StoreError
from . import units as un
from . import ids
from . import validate_input as vi
from .commit import new_staging, save_arrays, staging_dir, update_store
from .ids import SampleLocalIds
from .layer import Layer
from .manifest import CORE_ARRAYS, check_segment, read_manifest
from .reader import open_arrays, open_consistent, verify_counts
from .staged import staged_layer_dir
from .store_parts import signatures_from_masks, spread_sample_masks, store_parts
from .writer import bulk_arrays, merged_manifest, write_store


@dataclass(frozen=True)
class ConceptInfo:
    """One concept: its index in store order, name, category and size."""

    index: int
    name: str
    category: str
    count: int

    @property
    def qualified(self) -> str:
        return f"{self.category}:{self.name}" if self.category else self.name


class ConceptStore:
    """A probe dataset's concepts and unit layers; see the module docstring for the layout."""

    def __init__(self, manifest: dict, arrays: dict[str, np.ndarray], layers: dict[str, Layer],
                 path: Path | None = None) -> None:
        self.manifest = manifest
        self.arrays = arrays
        self.layers = layers
        self.path = path

    # ------------------------------------------------------------ creation

    @classmethod
    def from_masks(cls, masks: np.ndarray, names: Sequence[str], categories: Sequence[str] | None = None,
                   sample_ids: Sequence[Any] | None = None, *, mask_shape: Sequence[int] | None = None,
                   kind: str = "vision", metadata: Mapping[str, Any] | None = None) -> "ConceptStore":
        """An in-memory store from dense bool (or 0/1 integer) masks [N, K].

        Names must be unique within their category (qualified names
        ``category:name`` must differ), or a DataError lists the repeats.

        ``sample_ids`` gives each position's sample (length N; each sample's
        positions contiguous) or, with ``mask_shape``, a name per sample. With
        neither, every position is its own sample.
        """
        bits, counts, position_sig, categories, offsets, sample_names = signatures_from_masks(
            masks, names, categories, sample_ids, mask_shape)
        return cls.from_signatures(bits, counts, position_sig, names, categories, offsets,
                                   mask_shape=mask_shape, kind=kind, sample_names=sample_names,
                                   metadata=metadata)

    @classmethod
    def from_signatures(cls, bits: np.ndarray, counts: np.ndarray, position_sig: np.ndarray,
                        names: Sequence[str], categories: Sequence[str], sample_offsets: np.ndarray | None,
                        *, mask_shape: Sequence[int] | None = None, kind: str = "vision",
                        sample_names: Sequence[str] | None = None,
                        metadata: Mapping[str, Any] | None = None) -> "ConceptStore":
        """A store from an already built signature table (the builders' entry point)."""
        manifest, arrays = store_parts(bits, counts, position_sig, names, categories, sample_offsets,
                                       mask_shape=mask_shape, kind=kind, sample_names=sample_names,
                                       metadata=metadata)
        return cls(manifest, arrays, {})

    # ------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def n_positions(self) -> int:
        return int(self.manifest["n_positions"])

    @property
    def n_samples(self) -> int:
        return int(self.manifest["n_samples"])

    @property
    def n_signatures(self) -> int:
        return int(self.manifest["n_signatures"])

    @property
    def mask_shape(self) -> tuple[int, ...] | None:
        shape = self.manifest["mask_shape"]
        return tuple(shape) if shape else None

    @property
    def metadata(self) -> dict:
        return self.manifest.setdefault("metadata", {})

    @cached_property
    def concepts(self) -> list[ConceptInfo]:
        counts = self.arrays["concept_counts"]
        return [ConceptInfo(i, c["name"], c["category"], int(counts[i]))
                for i, c in enumerate(self.manifest["concepts"])]

    @property
    def sample_names(self) -> list[str] | None:
        """Each sample's name (image path, pair id) in store order, or None when the builder gave none."""
        names = self.arrays.get("sample_names")
        return None if names is None else [str(x) for x in names]

    @property
    def signature_bits(self) -> np.ndarray:
        return self.arrays["signatures"]

    @property
    def signature_counts(self) -> np.ndarray:
        return self.arrays["sig_counts"]

    @cached_property
    def position_signatures(self) -> "np.ndarray | SampleLocalIds":
        """Each position's signature id; slices and index arrays give int arrays in either layout."""
        if "position_local" in self.arrays:
            return SampleLocalIds(*(self.arrays[key] for key in ids.FILES), self.sample_offsets)
        return self.arrays["position_sig"]

    @cached_property
    def sample_offsets(self) -> np.ndarray:
        """int64 [n_samples + 1]: sample i covers positions offsets[i]:offsets[i+1]."""
        if "samples" in self.arrays:
            return np.asarray(self.arrays["samples"], dtype=np.int64)
        per = int(np.prod(self.mask_shape)) if self.mask_shape else 1
        return np.arange(self.n_samples + 1, dtype=np.int64) * per

    def default_threshold(self) -> un.Threshold:
        return un.TEXT_DEFAULT if self.kind == "text" else un.VISION_DEFAULT

    def nbytes(self) -> int:
        """Bytes of all arrays (what the store takes on disk, less the manifest)."""
        total = sum(a.nbytes for a in self.arrays.values())
        return total + sum(a.nbytes for layer in self.layers.values() for a in layer.arrays.values())

    # ------------------------------------------------------------ units

    def add_units(self, layer: str, activations: np.ndarray,
                  threshold: "float | str | un.Threshold | None" = None, *, keep_activations: bool = True,
                  progress: Callable[[int], None] | None = None, replace: bool = False,
                  on_warning: Callable[[str], None] | None = None) -> Layer:
        """Threshold a layer's activations ([samples, units, h, w] or [samples, units]) and attach it.

        An existing layer of that name is replaced only with ``replace=True``;
        ``on_warning`` (default :func:`warnings.warn`) hears when every unit is empty.
        """
        vi.layer_name(layer)
        vi.check_new_layer(self.layers, layer, replace)
        activations = un.as_array(activations)
        if self.kind == "tokens" and getattr(activations, "shape", (0,))[0] != self.n_positions:
            raise DataError(f"activations have {getattr(activations, 'shape', (0,))[0]:,} rows but the token store "
                            f"has {self.n_positions:,} tokens (in {self.n_samples:,} sentences): one row per token")
        un.check_activations(activations, self.n_positions if self.kind == "tokens" else self.n_samples)
        if "samples" in self.arrays and activations.ndim == 4:
            raise DataError("spatial activations need a store whose samples all have the mask shape")
        if threshold is not None and not isinstance(threshold, (str, int, float, un.Threshold)):
            thresholds = un.check_given_thresholds(threshold, activations.shape[1])  # one per unit, as data
            rule, upper = un.Threshold("given"), None
        else:
            rule = un.Threshold.parse(threshold, self.default_threshold())
            thresholds, upper = un.unit_bands(activations, rule)
        masks = self._masks_from_activations(activations, thresholds, progress, upper)
        vi.warn(un.empty_layer_warning(masks, layer), on_warning)
        return self._attach(layer, masks, rule, thresholds, activations if keep_activations else None, replace)

    def add_unit_masks(self, layer: str, masks: np.ndarray, *, replace: bool = False) -> Layer:
        """Attach a layer given directly as bool (or 0/1 integer) masks [N, U]; see :meth:`add_units`."""
        vi.layer_name(layer)
        vi.check_new_layer(self.layers, layer, replace)
        masks = vi.check_mask_array(masks, f"unit masks of layer {layer!r}")
        if masks.ndim != 2 or masks.shape[0] != self.n_positions:
            raise DataError(f"unit masks must have shape [{self.n_positions}, units], got {list(masks.shape)}")
        return self._attach(layer, un.masks_from_dense(masks), un.Threshold("masks"), None, None, replace)

    def unit_masks_for(self, activations: np.ndarray, thresholds: np.ndarray,
                       progress: Callable[[int], None] | None = None,
                       upper: np.ndarray | None = None) -> un.UnitMasks:
        """Masks of raw activations under other thresholds or bands (used by ``SET threshold``)."""
        return self._masks_from_activations(activations, thresholds, progress, upper)

    def _masks_from_activations(self, activations, thresholds, progress, upper=None) -> un.UnitMasks:
        if "samples" in self.arrays and self.kind != "tokens":  # one value per sample, spread over its positions
            un.check_exact_integers(np.asarray(activations))
            values = np.asarray(activations, dtype=np.float64)
            un.check_finite(values)
            active = values > thresholds[None, :]
            if upper is not None:
                active &= values <= upper[None, :]
            return spread_sample_masks(active, self.sample_offsets)
        pairs = un.active_positions(activations, thresholds, self.mask_shape, progress=progress, upper=upper)
        return un.masks_from_pairs(pairs, activations.shape[1])

    def _attach(self, name: str, masks: un.UnitMasks, rule: un.Threshold, thresholds: np.ndarray | None,
                activations: np.ndarray | None, replace: bool = False, staging: Path | None = None,
                progress: Callable[[int], None] | None = None) -> Layer:
        """Attach ``masks`` as layer ``name``; with ``staging`` (:meth:`staging`) its big arrays go straight to files.

        A staged layer's positions may already lie in ``staging`` as the
        layer's ``mask_positions.npy`` (``masks.positions`` mapped from it);
        histograms and bits are then written chunk by chunk, so memory stays
        O(units) whatever the layer's size. ``progress`` hears units as their histograms are done.
        """
        vi.layer_name(name)
        encoding = un.choose_encoding(masks, self.n_positions)
        if staging is not None:
            arrays = un.staged_layer_arrays(masks, encoding, self.position_signatures, self.n_positions,
                                         staged_layer_dir(staging, name), progress)
        else:
            arrays = un.layer_arrays(masks, encoding, self.position_signatures, self.n_positions)
        if thresholds is not None:
            arrays["thresholds"] = thresholds
        if activations is not None:
            arrays["activations"] = np.asarray(activations, dtype=un.compare_dtype(activations.dtype))
        meta = {"units": masks.n_units, "encoding": encoding, "threshold": rule.to_json(),
                "activations": activations is not None}
        if self.path is None:
            self.layers[name] = Layer(name, meta, arrays, self.n_positions, self.signature_counts)
            self.manifest["layers"][name] = meta
            return self.layers[name]

        def change(new: dict, staged: dict) -> None:
            if name in new["layers"] and not replace:  # checked again under the lock: another writer added it
                raise StoreError(f"{self.path}: layer {name!r} was added by another process meanwhile",
                                 hint="choose another name, or replace it with --replace (replace=True)")
            new["layers"][name] = {**meta, "arrays": staged.get(name, {})}
        self._commit({f"layers/{name}": arrays}, change, staging)
        return self.layers[name]

    def staging(self) -> ContextManager[Path | None]:
        """A staging directory for a change whose arrays are written as files first (None in memory).

        Give it to :meth:`_attach`, which commits it (the directory is
        renamed into the store); if anything fails before, it is removed.
        """
        return staging_dir(self.path)

    def set_layer_arrays(self, layer: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Layer:
        """Add arrays (and manifest keys) to an existing layer, e.g. a classifier's weights and predictions."""
        if layer not in self.layers:
            raise DataError(f"unknown layer {layer!r}; layers: {', '.join(self.layers) or 'none'}")
        for key in arrays:
            check_segment(key, "array name")
        if self.path is None:
            old = self.layers[layer]
            self.manifest["layers"][layer] = {**self.manifest["layers"][layer], **meta}
            self.layers[layer] = Layer(layer, self.manifest["layers"][layer], {**old.arrays, **arrays},
                                       self.n_positions, self.signature_counts)
            return self.layers[layer]

        def change(new: dict, staged: dict) -> None:
            if layer not in new["layers"]:
                raise StoreError(f"{self.path}: layer {layer!r} was removed by another process")
            entry = new["layers"][layer]
            new["layers"][layer] = {**entry, **meta, "arrays": {**entry["arrays"], **staged.get(layer, {})}}
        self._commit({f"layers/{layer}": dict(arrays)}, change)
        return self.layers[layer]

    def set_store_arrays(self, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], *,
                         drop_prefix: str | None = None) -> None:
        """Add or replace store-level arrays and metadata keys in one atomic change (e.g. an attached model).

        ``drop_prefix``: existing arrays with that prefix and not in ``arrays``
        go (a re-attached model's old weights). The store's own arrays cannot be replaced.
        """
        for key in arrays:
            check_segment(key, "array name")
            if key in CORE_ARRAYS:
                raise DataError(f"array {key!r} is part of the store and cannot be replaced")
        stale = [k for k in self.arrays if drop_prefix and k.startswith(drop_prefix) and k not in arrays]
        if self.path is None:
            for key in stale:
                del self.arrays[key]
            self.arrays.update(arrays)
            self.metadata.update(metadata)
            return

        def change(new: dict, _staged: dict, top: dict) -> None:
            for key in [k for k in new["arrays"] if drop_prefix and k.startswith(drop_prefix) and k not in arrays]:
                del new["arrays"][key]
            new["arrays"].update({k: top[k] for k in arrays})
            new["metadata"] = {**new.get("metadata", {}), **metadata}
        self._commit({"": dict(arrays)}, change)
        for key in stale:
            self.arrays.pop(key, None)
        self.arrays.update(open_arrays(self.path, self.manifest)[0])

    def _commit(self, arrays: dict[str, dict[str, np.ndarray]], change: Callable[..., None],
                staging: Path | None = None) -> None:
        """Write ``{folder: arrays}`` and apply ``change(manifest, staged layer entries)`` atomically.

        The manifest is re-read under the store lock, so another writer's
        layers survive; a version 1 store is upgraded on the way (its inline
        counts and sample names become array files).
        """
        assert self.path is not None
        path = self.path
        staging = staging or new_staging(path)
        for under, group in arrays.items():
            save_arrays(staging, group, under)
        current = read_manifest(path)
        save_arrays(staging, bulk_arrays(current))

        def apply(fresh: dict, top: dict, layers: dict) -> dict:
            return merged_manifest(path, fresh, top, layers, change, store_level="" in arrays)

        self.manifest = update_store(path, staging, apply)
        arrays, self.layers = open_arrays(path, self.manifest)
        self.arrays.update({k: v for k, v in arrays.items() if k not in self.arrays})

    # ------------------------------------------------------------ disk

    def write_manifest(self) -> None:
        """Persist metadata changes of an opened store (under the lock, atomically)."""
        if self.path is not None:
            metadata = self.metadata
            self._commit({}, lambda new, staged: new.__setitem__("metadata", metadata))

    def save(self, path: str | os.PathLike, *, force: bool = False,
             inputs: Sequence[str | os.PathLike] = ()) -> "ConceptStore":
        """Write the store to ``path`` atomically and return it opened.

        ``path`` may be absent, an empty directory or a cxql store (which is
        replaced); anything else is refused unless ``force``, and ``inputs``
        (the files the store was built from) never, nor a path inside or above
        this store's own folder (it is read while writing), but that folder itself.
        """
        path = Path(path)
        if self.path is not None and os.path.realpath(self.path) != os.path.realpath(path):
            inputs = [*inputs, self.path]
        write_store(path, self.arrays, {name: layer.arrays for name, layer in self.layers.items()}, self.manifest,
                    self.sample_offsets, force=force, inputs=inputs)
        return ConceptStore.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ConceptStore":
        """Open a store directory: read the manifest, map the arrays, check them (headers only).

        A writer may switch the manifest and delete the old files while we
        open; then a file goes missing, the manifest has changed, and we open
        the new generation instead, so a reader sees one whole store. Opening
        deletes nothing: what a killed writer left is removed by the next
        writer, under the lock.
        """
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"no store at {path}: not a directory")
        manifest, arrays, layers = open_consistent(path)
        for key, value in bulk_arrays(manifest).items():
            arrays.setdefault(key, value)
        verify_counts(path, manifest, arrays)
        return cls(manifest, arrays, layers, path)  # leftovers of a killed writer: the next writer removes them
