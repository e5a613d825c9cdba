"""Write a synthetic dataset in the Broden layout, with ADE20k-like label statistics.

Why: the Broden builder, the benchmark and the end-to-end example need data in
the exact on-disk layout of NetDissect's Broden (docs/stores.md) without a
5 GB download. What matters for store size and speed is how many *distinct
sets of labels* pixels carry, so the generator mimics ADE20k's structure:

* objects: 6-24 Voronoi regions per image, labels drawn from a Zipf law over
  580 object labels (a few, like wall/floor/sky, are everywhere; most are
  rare); about one image in ten has a second object PNG (occluded objects);
* parts: a third of the objects are cut into 2-4 parts (230 part labels,
  some shared with objects, as in Broden where ``door`` is both);
* color: every pixel gets one of 11 colours, blotchy, biased per object;
* material: about one image in five has 1-4 material regions (30 labels);
* scene: one image-level label from 360, Zipf; texture: none (as in ADE20k).

The JPEG images (``with_images=True``) are painted from the colour labels
with noise, so a CNN has something to see. Label numbering, label.csv,
category.csv and c_<category>.csv follow Broden. Run as a script to write a
dataset: ``python examples/broden_synthetic.py OUT_DIR --images 200``.
"""

from __future__ import annotations

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"black": (20, 20, 20), "blue": (40, 70, 200), "brown": (120, 80, 40), "green": (50, 150, 60),
          "grey": (128, 128, 128), "orange": (240, 140, 30), "pink": (240, 160, 190), "purple": (120, 50, 150),
          "red": (200, 30, 30), "white": (235, 235, 235), "yellow": (230, 210, 40)}
SIZES = {"object": 580, "part": 230, "material": 30, "scene": 360}
SHARED_PARTS = 20  # part labels that are also object labels
CATEGORIES = ["color", "object", "part", "material", "scene", "texture"]


def label_table() -> dict[str, list[tuple[int, str]]]:
    """Per category, its (number, name) pairs; numbers are unified as in Broden's label.csv."""
    table: dict[str, list[tuple[int, str]]] = {"color": [(i + 1, f"{c}-c") for i, c in enumerate(COLORS)]}
    number = len(COLORS) + 1
    for cat in ("object", "part", "material", "scene"):
        names = []
        for i in range(SIZES[cat] - (SHARED_PARTS if cat == "part" else 0)):
            names.append((number, f"{cat}{i}" + ("-s" if cat == "scene" else "")))
            number += 1
        table[cat] = names
    table["part"] = table["object"][:SHARED_PARTS] + table["part"]
    table["texture"] = []
    return table


def zipf_choice(rng: np.random.Generator, n: int, size, a: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=p / p.sum())


def voronoi(rng: np.random.Generator, shape: tuple[int, int], k: int, within: np.ndarray | None = None) -> np.ndarray:
    """int [h, w]: the nearest of k random seeds (seeds inside ``within`` when given)."""
    h, w = shape
    if within is not None:
        ys, xs = np.nonzero(within)
        pick = rng.integers(0, len(ys), k)
        seeds = np.stack([ys[pick], xs[pick]], 1).astype(float)
    else:
        seeds = rng.random((k, 2)) * (h, w)
    stretch = rng.uniform(0.5, 2.0, (k, 1, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((yy[None] - seeds[:, 0, None, None]) * stretch) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return d.argmin(0)


def blotches(rng: np.random.Generator, shape: tuple[int, int], cell: int, n: int) -> np.ndarray:
    """int [h, w] in [0, n): a coarse random field upsampled by ``cell`` with nearest neighbour."""
    coarse = rng.integers(0, n, (-(-shape[0] // cell), -(-shape[1] // cell)))
    return np.kron(coarse, np.ones((cell, cell), dtype=int))[:shape[0], :shape[1]]


def image_labels(rng: np.random.Generator, table, shape=(112, 112)) -> dict[str, list]:
    """One image: per category its label maps (pixel categories) or label numbers (scene)."""
    obj_numbers = np.array([n for n, _ in table["object"]])
    regions = voronoi(rng, shape, int(rng.integers(6, 25)))
    k = regions.max() + 1
    obj_of_region = obj_numbers[zipf_choice(rng, len(obj_numbers), k)]
    objects = obj_of_region[regions]
    out: dict[str, list] = {"object": [objects]}
    if rng.random() < 0.1:
        extra = np.zeros(shape, dtype=np.int64)
        r = regions == rng.integers(0, k)
        extra[r] = obj_numbers[zipf_choice(rng, len(obj_numbers), 1)[0]]
        out["object"].append(extra)
    part_numbers = np.array([n for n, _ in table["part"]])
    parts = np.zeros(shape, dtype=np.int64)
    for r in np.flatnonzero(rng.random(k) < 0.33):
        inside = regions == r
        if inside.sum() < 8:
            continue
        sub = voronoi(rng, shape, int(rng.integers(2, 5)), within=inside)
        labels = part_numbers[zipf_choice(rng, len(part_numbers), sub.max() + 1)]
        parts[inside] = labels[sub[inside]]
    if parts.any():
        out["part"] = [parts]
    palette = rng.integers(0, len(COLORS), (k, 3))
    pick = blotches(rng, shape, int(rng.integers(3, 9)), 3)
    out["color"] = [palette[regions, pick] + 1]
    if rng.random() < 0.2:
        mat_numbers = np.array([n for n, _ in table["material"]])
        mats = voronoi(rng, shape, int(rng.integers(1, 5)))
        out["material"] = [mat_numbers[rng.integers(0, len(mat_numbers), mats.max() + 1)][mats]]
    out["scene"] = [int(table["scene"][zipf_choice(rng, len(table["scene"]), 1)[0]][0])]
    return out


def write_png(path: Path, labels: np.ndarray) -> None:
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = labels % 256, labels // 256
    Image.fromarray(rgb, "RGB").save(path, compress_level=1)


def paint(rng: np.random.Generator, colors: np.ndarray, size: int) -> Image.Image:
    """A JPEG-able picture: each pixel its colour label's RGB, with noise, upsampled to ``size``."""
    rgb = np.array(list(COLORS.values()), dtype=np.float32)[colors - 1]
    rgb += rng.normal(0, 12, rgb.shape)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    return img.resize((size, size), Image.BILINEAR)


def _write_one(args: tuple[Path, int, int, int, bool]) -> list[str]:
    root, i, seed, seg, with_images = args
    rng = np.random.default_rng([seed, i])
    labels = image_labels(rng, label_table(), (seg, seg))
    name = f"ade20k/ADE_synth_{i:06d}"
    cells = []
    for cat in CATEGORIES:
        parts = []
        for j, item in enumerate(labels.get(cat, [])):
            if isinstance(item, int):
                parts.append(str(item))
            else:
                rel = f"{name}_{cat}_{j}.png"
                write_png(root / "images" / rel, item)
                parts.append(rel)
        cells.append(";".join(parts))
    if with_images:
        paint(rng, labels["color"][0], 2 * seg).save(root / "images" / f"{name}.jpg", quality=90)
    return [f"{name}.jpg", "train", str(2 * seg), str(2 * seg), str(seg), str(seg), *cells]


def write_dataset(root: str | Path, n_images: int, *, seed: int = 0, seg: int = 112, with_images: bool = False,
                  workers: int = 1) -> Path:
    """Write ``n_images`` into ``root`` in the Broden layout and return ``root``."""
    root = Path(root)
    (root / "images" / "ade20k").mkdir(parents=True, exist_ok=True)
    jobs = [(root, i, seed, seg, with_images) for i in range(n_images)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_write_one, jobs, chunksize=16))
    else:
        rows = [_write_one(job) for job in jobs]
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES])
        w.writerows(rows)
    _write_label_files(root, label_table())
    return root


def _write_label_files(root: Path, table: dict[str, list[tuple[int, str]]]) -> None:
    cats_of: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for cat, entries in table.items():
        for number, name in entries:
            cats_of.setdefault(number, []).append(cat)
            names[number] = name
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        w.writerow([0, "-", "", 0, 0.0, ""])
        for number in sorted(names):
            w.writerow([number, names[number], ";".join(f"{c}(1)" for c in cats_of[number]), 1, 1.0, ""])
    with open(root / "category.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for cat in CATEGORIES:
            w.writerow([cat, 1, len(table[cat]), len(table[cat]), 1])
    for cat in CATEGORIES:
        with open(root / f"c_{cat}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            w.writerow([0, 0, "-", 0, 0.0])
            w.writerows([code + 1, number, name, 1, 1.0] for code, (number, name) in enumerate(table[cat]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seg", type=int, default=112, help="segmentation size (default 112)")
    parser.add_argument("--jpeg", action="store_true", help="also paint JPEG images")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    write_dataset(args.out, args.images, seg=args.seg, with_images=args.jpeg, workers=args.workers)
    print(f"wrote {args.images} images to {args.out}")
