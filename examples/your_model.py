"""Explaining your own model: your torch model, your images and masks, to a report. Offline, CPU, seconds.

Replace the three marked parts with your own and the rest stays as it is:

1. **images** (``make_data``): here 48 generated 32x32 RGB pictures of red,
   green and blue circles and squares; yours are any pictures, as a uint8
   array [N, H, W, 3] or as image files;
2. **concept masks** (``make_data``): a bool mask per concept and image at
   one *mask resolution* (here 16x16), pixel-level (``color:red``) or
   image-level (``scene:crowded`` covers the whole image);
3. **model** (``make_model``): any ``torch.nn.Module``; cxql hooks the module
   you name (here ``"0"``, the first conv) and records its output.

The script writes the data as files (``OUT/data/images/*.png`` and
``OUT/data/masks/<image>/<concept>.png``, the form your data may already
have), builds the store twice, from the arrays and from the files (the same
store either way), records the model, runs SEARCH and writes the report:

    python examples/your_model.py [OUT]

then open OUT/report/conv1.html. The model's layer can also be recorded from
the command line (``cxql units record`` reads the pictures under the store's
``image_root``, ImageNet-normalised as ``model_input`` does here):

    cxql units record OUT/store 0 --name again --model examples/your_model.py:make_model \
        --threshold quantile:0.95 --device cpu
    cxql -s OUT/store -c "SET layer = 'again'; SEARCH unit * LENGTH 3 BEAM 5"
    cxql report OUT/store again --out OUT/report
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import cxql
from cxql.record import IMAGENET_MEAN, IMAGENET_STD
from cxql.report import write_report

IMAGE, MASK = 32, 16                       # picture size; mask resolution (masks are [MASK, MASK] per image)
COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 230)}
SHAPES = ("circle", "square")
THRESHOLD = "quantile:0.95"                # a small probe set: looser than the 0.995 default
LAYER, NAME = "0", "conv1"                 # the hooked module (model.named_modules()) and its name in the store


# ------------------------------------------------------------------ 1 + 2: your images and concept masks


def make_data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(pictures uint8 [n, 32, 32, 3], {"category:name": bool masks [n, 16, 16]}): shapes on grey."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE, 0:IMAGE] + 0.5
    pictures = np.empty((n, IMAGE, IMAGE, 3), np.uint8)
    full = {f"color:{c}": np.zeros((n, IMAGE, IMAGE), bool) for c in COLORS}
    full |= {f"shape:{s}": np.zeros((n, IMAGE, IMAGE), bool) for s in SHAPES}
    crowded = np.zeros(n, bool)
    for i in range(n):
        pictures[i] = rng.integers(90, 160)
        shapes = rng.integers(1, 4)
        crowded[i] = shapes == 3
        for _ in range(shapes):
            color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
            cy, cx, r = rng.uniform(6, IMAGE - 6), rng.uniform(6, IMAGE - 6), rng.uniform(3, 7)
            inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if shape == "circle" else \
                (abs(yy - cy) < r) & (abs(xx - cx) < r)
            pictures[i][inside] = COLORS[color]
            for masks in full.values():          # a later shape covers an earlier one
                masks[i][inside] = False
            full[f"color:{color}"][i][inside] = True
            full[f"shape:{shape}"][i][inside] = True
    masks = {name: m[:, ::IMAGE // MASK, ::IMAGE // MASK] for name, m in full.items()}   # pixel centres
    masks["pixel:background"] = ~np.any([masks[f"color:{c}"] for c in COLORS], axis=0)
    masks["scene:crowded"] = np.broadcast_to(crowded[:, None, None], (n, MASK, MASK))     # image level
    return pictures, masks


def write_files(directory: Path, pictures: np.ndarray, masks: dict[str, np.ndarray]) -> list[str]:
    """The data as files; returns the image names.

    images/<name>.png, masks/<name>/<category>_<concept>.png (white where the
    concept is) and concepts.txt (one ``category:concept`` a line: the store's
    concept order).
    """
    from PIL import Image

    names = [f"shapes{i:03d}.png" for i in range(len(pictures))]
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "concepts.txt").write_text("".join(f"{c}\n" for c in masks), encoding="utf-8")
    for i, (name, picture) in enumerate(zip(names, pictures)):
        Image.fromarray(picture).save(directory / "images" / name)
        (directory / "masks" / name).mkdir(parents=True, exist_ok=True)
        for concept, mask in masks.items():
            Image.fromarray(mask[i].astype(np.uint8) * 255).save(
                directory / "masks" / name / (concept.replace(":", "_") + ".png"))
    return names


def read_files(directory: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(image names, masks) read back from the files: a mask PNG is set where it is not black."""
    from PIL import Image

    names = sorted(p.name for p in (directory / "images").glob("*.png"))
    concepts = (directory / "concepts.txt").read_text(encoding="utf-8").split()
    masks = {}
    for concept in concepts:
        masks[concept] = np.stack([np.asarray(Image.open(directory / "masks" / name /
                                                         (concept.replace(":", "_") + ".png")).convert("L")) > 0
                                   for name in names])
    return names, masks


def concept_store(names: list[str], masks: dict[str, np.ndarray], **metadata) -> cxql.ConceptStore:
    """A store from per-image masks: positions are every (image, y, x), image by image, row by row."""
    concepts = list(masks)
    flat = np.stack([np.asarray(masks[c]).reshape(-1) for c in concepts], axis=1)      # bool [N*16*16, K]
    return cxql.ConceptStore.from_masks(
        flat, [c.split(":")[1] for c in concepts], [c.split(":")[0] for c in concepts],
        sample_ids=names, mask_shape=(MASK, MASK), metadata=metadata)


# ------------------------------------------------------------------ 3: your model


def make_model() -> torch.nn.Module:
    """A small CNN (untrained, fixed seed): its first conv's 8 units see colour, as random filters do."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),      # "0": 8 units at 16x16
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3))


def model_input(pictures: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W], ImageNet-normalised: what ``units record`` does to files."""
    x = torch.from_numpy(np.asarray(pictures, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


# ------------------------------------------------------------------ the whole path


def main(out: Path) -> dict:
    """Build the store (from arrays and from files), record, SEARCH, report; return what a test checks."""
    pictures, masks = make_data()
    names = write_files(out / "data", pictures, masks)

    # (a) from arrays: the masks in memory, the pictures kept inside the store for the report
    from_arrays = concept_store(names, masks, title="shapes: your_model.py's generated pictures")
    from_arrays.arrays["images"] = pictures
    cxql.record(make_model(), LAYER, model_input(pictures), from_arrays, name=NAME, device="cpu",
                threshold=THRESHOLD)

    # (b) from files: masks read from PNGs, pictures found through image_root (what `units record` reads)
    file_names, file_masks = read_files(out / "data")
    store = concept_store(file_names, file_masks, title="shapes: your_model.py's generated pictures",
                          image_root=str((out / "data" / "images").resolve())).save(out / "store")
    cxql.record(make_model(), LAYER, store, name=NAME, device="cpu", threshold=THRESHOLD)

    session = cxql.connect(store)
    rows = session.execute("SEARCH unit * LENGTH 3 BEAM 5").rows
    for row in sorted(rows, key=lambda r: -r["iou"]):
        print(f"  unit {row['unit']}  IoU {row['iou']:.3f}  {row['formula']}")
    page = write_report(store, NAME, out / "report", top=6, session=session, rows=rows)
    print(f"report: {page}")
    return {"rows": rows, "page": page, "store": store, "from_arrays": from_arrays}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="cxql-your-model-"))
    main(target)
