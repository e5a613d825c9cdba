"""Concept stores from NetDissect Broden-layout datasets, streamed image by image.

Real Broden's ADE20k part is 22k images, 280 million positions at 112x112;
dense masks would be 39 GB. So the builder never materialises them: each
image's segmentation layers (one per PNG; several per category, all applied)
are reduced to the distinct *tuples* of labels its pixels carry, a few hundred
at most, and only those become bit-packed signature rows. Pixel ids stream
into a memory-mapped ``position_sig.npy`` (:class:`~cxql.store.writer.StoreWriter`),
so an interrupted build leaves the old store (or none), never a broken one.
Reading and checking the CSV files is :mod:`cxql.store.broden_index`.

Concepts are label numbers, as in compexp and NetDissect: a label's mask is
the union of its pixels over the selected categories; scene/texture labels
(numbers instead of PNG paths in index.csv) cover the whole image. A label's
category is the one, among those it was seen in, that label.csv counts most
(ties: column order). Names lose Broden's suffix (``blue-c`` in color becomes
``color:blue``) unless that clashes; two labels that still share a name in
one category are refused (label.csv is named), never merged. Labels that never occur are dropped; the
rest keep label-number order and record positions (``count``) and images
(``images``). Segmentations are resized to the mask resolution by nearest
neighbour at pixel centres.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import DataError
from ..progress import stoppable
from ..subcommands import Command, Tools
from . import signatures as sig
from .broden_index import Broden, IndexRow, Label, open_broden
from .concept_store import ConceptStore
from .writer import StoreWriter, store_manifest


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize at pixel centres, in exact integers (PIL's NEAREST, but for float ties)."""
    (h, w), (H, W) = labels.shape, shape
    if (h, w) == (H, W):
        return labels
    return labels[((2 * np.arange(H) + 1) * h) // (2 * H)][:, ((2 * np.arange(W) + 1) * w) // (2 * W)]


def decode_png(path: Path, expect: tuple[int, int], where: str) -> np.ndarray:
    """int32 [h, w] label numbers R + 256 * G of a segmentation PNG.

    The header's size is checked before any pixel is decoded, so a PNG that
    claims gigapixels (a decompression bomb) is refused without allocating
    them; PIL's own size warning is moot then, and past twice its limit PIL
    refuses the file itself.
    """
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if (img.height, img.width) != tuple(expect):
                raise DataError(f"{path} ({where}): PNG is {img.height}x{img.width}, "
                                f"index.csv says sh x sw = {expect[0]}x{expect[1]}")
            if img.mode not in ("RGB", "RGBA", "P"):
                raise DataError(f"{path} ({where}): expected an RGB segmentation PNG, got mode {img.mode}")
            img.load()
            rgb = np.asarray(img.convert("RGB"), dtype=np.int32)
    except FileNotFoundError:
        raise DataError(f"{path} ({where}): missing segmentation PNG") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} ({where}): cannot decode PNG ({exc})") from None
    return rgb[:, :, 0] + 256 * rgb[:, :, 1]


def _check_known(numbers: np.ndarray, known: np.ndarray, source: str) -> None:
    bad = numbers[(numbers >= len(known)) | ~known[np.minimum(numbers, len(known) - 1)]]
    if len(bad):
        raise DataError(f"{source}: label {int(bad[0])} has no row in label.csv")


def read_image(ds: Broden, row: IndexRow, shape: tuple[int, int], known: np.ndarray
               ) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, int]]]:
    """(pixel layers as (category index, int32 [P]), image-level labels as (category index, number))."""
    layers, image_labels = [], []
    where = f"{ds.directory / 'index.csv'}, row {row.line} ({row.image})"
    for c, cat in enumerate(ds.categories):
        for item in row.cells.get(cat, ()):
            if isinstance(item, int):
                if item:
                    _check_known(np.array([item]), known, f"{where}, column {cat}")
                    image_labels.append((c, item))
                continue
            png = ds.directory / "images" / item
            labels = resize_nearest(decode_png(png, row.seg_size, where), shape).ravel()
            _check_known(labels, known, f"{png} ({where})")
            layers.append((c, labels))
    return layers, image_labels


def distinct_tuples(layers: Sequence[np.ndarray], n: int, dense: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """(a pixel of each distinct tuple of labels, each pixel's tuple id in [0, d)).

    Labels are renumbered per layer by lookup and folded into a mixed-radix key,
    compacted by a presence table when it could outgrow ``dense``: O(n), no sort.
    """
    key, size = np.zeros(n, dtype=np.int64), 1
    for layer in layers:
        values = np.unique(layer)
        lut = np.zeros(int(values[-1]) + 1, dtype=np.int64)
        lut[values] = np.arange(len(values))
        if size * len(values) > dense:
            key, size = _compact(key, size, dense)
        key, size = key * len(values) + lut[layer], size * len(values)
    key, size = _compact(key, size, dense)
    rep = np.empty(size, dtype=np.int64)
    rep[key] = np.arange(n)
    return rep, key


def _compact(key: np.ndarray, size: int, dense: int) -> tuple[np.ndarray, int]:
    """Renumber key values to 0..d-1, keeping their order."""
    if size > dense:
        uniq, key = np.unique(key, return_inverse=True)
        return key.ravel(), len(uniq)
    present = np.zeros(size, dtype=bool)
    present[key] = True
    remap = np.cumsum(present) - 1
    return remap[key], int(remap[-1]) + 1


def pack_tuples(columns: Sequence[np.ndarray], image_labels: Iterable[int], width: int) -> np.ndarray:
    """uint8 [d, width]: bit-packed rows for d label tuples (one column per layer) plus image labels."""
    packed = np.zeros((len(columns[0]) if columns else 1, width), dtype=np.uint8)
    rows = np.arange(len(packed))
    for labels in columns:  # one label per row per layer, so the (row, byte) pairs are distinct
        on = labels > 0
        packed[rows[on], labels[on] >> 3] |= (1 << (labels[on] & 7)).astype(np.uint8)
    for label in image_labels:
        packed[:, label >> 3] |= np.uint8(1 << (label & 7))
    return packed


def build_broden(source: str | Path | Broden, out: str | Path, *, categories: Sequence[str] | None = None,
                 prefixes: Sequence[str] = (), split: str | None = None, limit: int | None = None,
                 resolution: tuple[int, int] | None = None,
                 progress: Callable[[int], None] | None = None, force: bool = False,
                 should_stop: Callable[[], bool] | None = None) -> ConceptStore:
    """Build the store of a Broden directory (or :class:`Broden`) at ``out``; return it opened.

    ``categories``, ``prefixes`` (of image paths, e.g. ``ade20k/``), ``split``
    and ``limit`` (first n) select rows; ``resolution`` is the mask shape
    (default: the first row's segmentation size); ``progress(1)`` per image.
    ``should_stop()`` is asked after each image; when it says yes the build
    raises :class:`~cxql.errors.Cancelled` and leaves ``out`` as it was.
    ``out`` must be absent, empty or a store; anything else needs ``force``,
    and the dataset itself is never replaced.
    """
    ds = source if isinstance(source, Broden) else open_broden(source, categories, prefixes, split, limit)
    progress = stoppable(progress, should_stop, "the Broden build")
    if not ds.rows:
        raise DataError(f"{ds.directory / 'index.csv'}: no rows match the selection")
    shape = tuple(resolution) if resolution else ds.rows[0].seg_size
    per = shape[0] * shape[1]
    n_labels = max(ds.labels, default=0) + 1
    known = np.zeros(max(n_labels, 1 << 16), dtype=bool)  # covers every R + 256 * G
    known[[0, *ds.labels]] = True
    builder = sig.SignatureBuilder(n_labels)
    seen = np.zeros((n_labels, len(ds.categories)), dtype=bool)
    images = np.zeros(n_labels, dtype=np.int64)
    with StoreWriter(out, force=force, inputs=[ds.directory]) as writer:
        position_sig = writer.stream("position_sig", (len(ds.rows) * per,), np.uint32)
        for i, row in enumerate(ds.rows):
            layers, image_labels = read_image(ds, row, shape, known)
            rep, inverse = distinct_tuples([lab for _, lab in layers], per)
            columns = [lab[rep] for _, lab in layers]
            ids = builder.add(pack_tuples(columns, [n for _, n in image_labels], builder.width))
            position_sig[i * per:(i + 1) * per] = ids[inverse]
            images[_note_seen(seen, [(c, col) for (c, _), col in zip(layers, columns)] + image_labels)] += 1
            if progress:
                progress(1)
        keep = np.flatnonzero(images)
        if not len(keep):
            raise DataError(f"{ds.directory}: no labels occur in the selected rows and categories")
        bits = select_concepts(builder.table()[0], keep, n_labels)  # builder counts tuples, not positions
        counts = writer.save_signatures(bits, position_sig, np.arange(len(ds.rows) + 1, dtype=np.int64) * per)
        names, cats = concept_names(ds, keep, seen)
        manifest = store_manifest(names, cats, sig.concept_counts(bits, counts, len(keep), chunk=4096),
                                  n_positions=len(ds.rows) * per, n_samples=len(ds.rows),
                                  n_signatures=len(counts), mask_shape=shape, kind="vision",
                                  position_ids=writer.position_ids,
                                  sample_names=[r.image for r in ds.rows], metadata={
                                      "source": "broden", "broden_dir": str(ds.directory.resolve()),
                                      "image_root": str((ds.directory / "images").resolve()),
                                      "image_size": ds.rows[0].image_size, "categories": ds.categories})
        for entry, number in zip(manifest["concepts"], keep):
            entry.update(label=int(number), images=int(images[number]), broden_name=ds.labels[number].name)
        writer.commit(manifest)
    return ConceptStore.open(out)


def _note_seen(seen: np.ndarray, items: list[tuple[int, np.ndarray | int]]) -> np.ndarray:
    """Mark which labels occur in which category; return the labels present in this image."""
    for c, labels in items:
        seen[np.asarray(labels), c] = True
    present = np.unique(np.concatenate([np.atleast_1d(labels) for _, labels in items] or [[0]]))
    return present[present > 0]


def select_concepts(bits: np.ndarray, keep: np.ndarray, n_labels: int, chunk: int = 1 << 15) -> np.ndarray:
    """Repack signature rows keeping only the label columns ``keep`` (never-seen labels are all zero)."""
    out = np.empty((bits.shape[0], sig.packed_width(len(keep))), dtype=np.uint8)
    for start in range(0, bits.shape[0], chunk):
        out[start:start + chunk] = sig.pack_rows(sig.unpack_rows(bits[start:start + chunk], n_labels)[:, keep])
    return out


def concept_names(ds: Broden, numbers: np.ndarray, seen: np.ndarray) -> tuple[list[str], list[str]]:
    """(names, primary categories) of the kept labels; suffixes like ``-c`` dropped where unambiguous."""
    def primary(label: Label, where: np.ndarray) -> str:  # the most counted category it was seen in
        return ds.categories[max(np.flatnonzero(where), key=lambda c: (label.counts.get(ds.categories[c], 0), -c))]

    cats = [primary(ds.labels[int(n)], seen[n]) for n in numbers]
    raw = [ds.labels[int(n)].name for n in numbers]
    short = [_strip_suffix(name, cat) for name, cat in zip(raw, cats)]
    taken = Counter(zip(short, cats))
    names = [s if taken[s, c] == 1 else r for s, c, r in zip(short, cats, raw)]
    dup = [p for p, k in Counter(zip(names, cats)).items() if k > 1]
    if dup:
        raise DataError(f"{ds.directory / 'label.csv'}: two labels are named {dup[0][0]!r} in category {dup[0][1]}")
    return names, cats


def _strip_suffix(name: str, category: str) -> str:
    suffix = f"-{category[:1]}"
    return name[:-len(suffix)] if category and name.endswith(suffix) and len(name) > len(suffix) else name


# ------------------------------------------------------------------ CLI


def parse_resolution(text: str) -> tuple[int, int]:
    """``112`` or ``112x96`` -> (h, w)."""
    parts = text.lower().split("x")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"resolution must be N or HxW, got {text!r}")
    return (int(parts[0]), int(parts[-1]))


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("broden_dir")
    p.add_argument("--out", required=True, help="store directory to write (a store there is replaced atomically)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a cxql store")
    p.add_argument("--categories", type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
                   help="comma-separated categories (default: every index.csv column)")
    p.add_argument("--prefix", action="append", default=[], metavar="PATH",
                   help="only images whose path starts with PATH, e.g. ade20k/ (repeatable)")
    p.add_argument("--split", help="only rows of this split (train, val)")
    p.add_argument("--limit", type=int, help="only the first N selected rows")
    p.add_argument("--resolution", type=parse_resolution,
                   help="mask resolution N or HxW (default: the first row's segmentation size)")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    from .validate_input import check_out_path, os_errors

    check_out_path(args.out)
    ds = open_broden(args.broden_dir, args.categories, args.prefix, args.split, args.limit)
    bar, started, done = tools.progress(), time.monotonic(), [0]

    def tick(n: int) -> None:
        done[0] += n
        bar.advance(n, f"{done[0] / max(time.monotonic() - started, 1e-9):.0f} images/s")

    bar.start(len(ds.rows), "building store")
    try:
        with os_errors(args.out):
            store = build_broden(ds, args.out, resolution=args.resolution, progress=tick, force=args.force,
                                 should_stop=tools.should_stop)
    finally:
        bar.finish()
    elapsed = time.monotonic() - started
    print(f"{args.out}: {store.n_samples:,} images, {store.n_positions:,} positions, "
          f"{len(store.concepts):,} concepts, {store.n_signatures:,} signatures, "
          f"{store.nbytes() / max(store.n_positions, 1):.2f} bytes/position, "
          f"{store.n_samples / max(elapsed, 1e-9):.0f} images/s", file=sys.stderr)
    return 0


#: ``cxql store build broden`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("store", "build", "broden"), "a store from a NetDissect Broden-layout directory", _arguments,
                  _command, description=__doc__.split("\n\n")[0])
