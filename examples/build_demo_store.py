"""Build the demo store that ships with cxql: stores/digits.

Why this exists: ``cxql`` with no arguments must open a store with real data
and a real model, so a new user can type ``SEARCH unit *`` and read answers
that make sense. The data must ship with a package (no download), the build
must be reproducible, and the result must stay a few MB. So:

* **Data**: scikit-learn's 1,797 handwritten 8x8 digit images
  (``load_digits``), each upsampled bilinearly to 16x16, the mask resolution,
  so that stroke shapes (holes, ends, junctions, rims) are visible.
* **Model**: a small CNN that reads the 16x16 images (conv1 8 units at
  16x16, conv2 16 units at 8x8, fc 32 units, each BatchNorm + ReLU; defined
  in examples/digits_model.py), trained on CPU with a fixed seed on two
  thirds of the images; its accuracy goes into the store's metadata. Training
  repeats bit for bit on one machine but not across machines, so the trained
  weights ship (examples/data/digits_cnn.npz) and the store is built from
  them; ``--train`` trains again and overwrites them.
* **Concepts**: what a person would point at: ``ink``/``background``, parts
  of the frame, stroke parts found with plain numpy/scipy morphology (holes,
  loops, stroke ends, junctions, horizontal and vertical strokes, the rims of
  strokes) and image-level facts broadcast to every pixel of their image: the
  digit's ``label``, the model's ``pred`` and whether it was ``correct``.
* **Units**: the three layers, attached with cxql's public ``add_units``
  (exact quantile thresholds, bilinear upsampling to 16x16). The probe set is
  tiny, so the thresholds are looser than the 0.995 default: the top 5 % of
  each conv unit's activations and the top 10 % of images for fc units (with
  0.995, an fc unit would cover 9 images). Only fc keeps its raw activations
  (conv1 and conv2 would add 22 MB), so ``SET threshold`` works on fc.
* **Pictures**: ``images.npy`` in the store, uint8 [1797, 16, 16], the
  digits as the model sees them (dark ink on white), which ``cxql report``
  draws under each unit's masks.

Run ``python examples/build_demo_store.py [--out DIR] [--train]`` (default
stores/digits); it takes a few seconds and, from the shipped weights, writes
the same concepts, signatures and units on any machine (only the manifest's
``versions`` record differs). scikit-learn and scipy are needed only here (the ``demo``
extra), never by cxql at run time.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cxql  # noqa: E402
import cxql.model  # noqa: E402
from digits_model import WEIGHTS, DigitsCNN, load_model, run, save_weights  # noqa: E402

SEED = 0
MASK_SHAPE = (16, 16)
INK_LEVEL = 0.4          # upsampled intensity (0..1) above which a pixel is ink
TEST_FRACTION = 1 / 3
EPOCHS = 30
LEARNING_RATE = 3e-3
BATCH = 32
LINE = 7                 # length of the line used to find horizontal/vertical strokes
REPO = Path(__file__).resolve().parent.parent


class LayerPlan(NamedTuple):
    """How one recorded layer goes into the store."""

    threshold: str           # for ``add_units``: 'quantile:LEVEL' or a number
    keep_activations: bool   # keep the raw float32 activations (enables SET threshold)


LAYERS = {"conv1": LayerPlan("quantile:0.95", False),   # [1797, 8, 16, 16]: 14.7 MB raw
          "conv2": LayerPlan("quantile:0.95", False),   # [1797, 16, 8, 8]: 7.4 MB raw
          "fc": LayerPlan("quantile:0.9", True)}        # [1797, 32]: 0.2 MB raw

# 8-neighbourhood offsets (dy, dx) clockwise from north: P2..P9 in Zhang & Suen's notation.
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
# 3-D structuring elements for [B, H, W] batches that never connect two images.
_PLANE4 = np.pad(ndimage.generate_binary_structure(2, 1)[None], [(1, 1), (0, 0), (0, 0)])
_PLANE8 = np.pad(np.ones((1, 3, 3), dtype=bool), [(1, 1), (0, 0), (0, 0)])


# ------------------------------------------------------------------ data


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [N, 8, 8] in 0..1, targets int64 [N]) from scikit-learn's bundled set."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def upsample(images: np.ndarray, shape: tuple[int, int] = MASK_SHAPE) -> np.ndarray:
    """Bilinear resize [N, h, w] -> [N, H, W], the same resize cxql applies to unit maps."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return nn.functional.interpolate(x, size=shape, mode="bilinear", align_corners=False)[:, 0].numpy()


def split(n: int, test_fraction: float = TEST_FRACTION, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): a seeded random split, each sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


# ------------------------------------------------------------------ model


@contextmanager
def deterministic(seed: int = SEED) -> Iterator[None]:
    """Seed torch and make CPU work repeat bit for bit (one thread, deterministic kernels).

    The thread count and the deterministic-algorithms flag are restored on exit.
    """
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


def train(images: np.ndarray, targets: np.ndarray, epochs: int = EPOCHS, seed: int = SEED) -> DigitsCNN:
    """Train a DigitsCNN with Adam on images [n, 16, 16]; seeded: the same every run on one machine."""
    with deterministic(seed):
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        x = torch.from_numpy(np.ascontiguousarray(images))[:, None]
        y = torch.from_numpy(targets)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=gen).split(BATCH):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                opt.step()
    return model.eval()


# ------------------------------------------------------------------ concepts
# The stroke functions take bool ink masks [..., H, W] (one image or a batch)
# and return bool arrays of the same shape; none looks across images.


def _batch(mask: np.ndarray) -> np.ndarray:
    """View [..., H, W] as [B, H, W]."""
    return np.asarray(mask, dtype=bool).reshape((-1,) + mask.shape[-2:])


def _ring(mask: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours of every pixel (P2..P9, clockwise from north), zero outside the image."""
    h, w = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    return [padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in _RING]


def neighbour_count(mask: np.ndarray) -> np.ndarray:
    """int [..., H, W]: how many of each pixel's 8 neighbours are set."""
    return sum(n.astype(np.int8) for n in _ring(mask))


def crossings(mask: np.ndarray) -> np.ndarray:
    """int [..., H, W]: 0->1 transitions walking once around each pixel's 8 neighbours."""
    ring = _ring(mask)
    return sum((~a & b).astype(np.int8) for a, b in zip(ring, ring[1:] + ring[:1]))


def ink(images: np.ndarray, level: float = INK_LEVEL) -> np.ndarray:
    """Pixels whose ink intensity (0..1, 1 = full ink) is above ``level``."""
    return np.asarray(images) > level


def holes(mask: np.ndarray) -> np.ndarray:
    """Background enclosed by ink: not 4-connected to the image's border (the inside of 0, 6, 8, 9)."""
    bg = _batch(~np.asarray(mask, dtype=bool))
    labels, _ = ndimage.label(bg, structure=_PLANE4)
    frame = np.concatenate([labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]], axis=1)
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[frame] = True
    return (bg & ~outside[labels]).reshape(np.shape(mask))


def loops(mask: np.ndarray) -> np.ndarray:
    """Ink that touches a hole (8-neighbourhood): the ring of a closed loop."""
    return np.asarray(mask, dtype=bool) & grow(holes(mask))


def grow(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Dilate each image's mask by ``steps`` pixels (8-neighbourhood); 0 steps leaves it as it is."""
    m = _batch(mask)
    if steps <= 0:  # scipy reads iterations=0 as "until nothing changes"
        return m.reshape(np.shape(mask)).copy()
    return ndimage.binary_dilation(m, structure=_PLANE8, iterations=steps).reshape(np.shape(mask))


def skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide centre lines of the ink (Zhang & Suen 1984 thinning), per image."""
    m = _batch(mask).copy()
    while True:
        changed = False
        for first in (True, False):
            p2, _, p4, _, p6, _, p8, _ = _ring(m)
            n = neighbour_count(m)
            a = crossings(m)
            if first:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            delete = m & (n >= 2) & (n <= 6) & (a == 1) & side
            if delete.any():
                m &= ~delete
                changed = True
        if not changed:
            return m.reshape(np.shape(mask))


def endpoints(mask: np.ndarray, reach: int = 1) -> np.ndarray:
    """Stroke ends: ink within ``reach`` pixels of a skeleton pixel with exactly one neighbour."""
    skel = skeleton(mask)
    tips = skel & (neighbour_count(skel) == 1)
    return np.asarray(mask, dtype=bool) & grow(tips, reach)


def junctions(mask: np.ndarray, reach: int = 1) -> np.ndarray:
    """Where strokes meet: ink within ``reach`` pixels of a skeleton pixel where 3+ branches leave."""
    skel = skeleton(mask)
    forks = skel & (crossings(skel) >= 3)
    return np.asarray(mask, dtype=bool) & grow(forks, reach)


def _line_opening(mask: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Ink covered by some straight run of ink shaped like ``line`` (a 2-D structuring element)."""
    m = _batch(mask)
    return ndimage.binary_opening(m, structure=line[None]).reshape(np.shape(mask))


def horizontal(mask: np.ndarray, length: int = LINE) -> np.ndarray:
    """Ink on a horizontal run of ``length`` or more that is not also on such a vertical run."""
    h = _line_opening(mask, np.ones((1, length), dtype=bool))
    v = _line_opening(mask, np.ones((length, 1), dtype=bool))
    return h & ~v


def vertical(mask: np.ndarray, length: int = LINE) -> np.ndarray:
    """Ink on a vertical run of ``length`` or more that is not also on such a horizontal run."""
    return horizontal(np.swapaxes(mask, -1, -2), length).swapaxes(-1, -2)


def edges(mask: np.ndarray) -> dict[str, np.ndarray]:
    """The rims of the strokes: ink whose neighbour on one side (up, down, left, right) is background.

    Pixels outside the image count as background, so ink on the frame is rim too.
    """
    m = np.asarray(mask, dtype=bool)
    north, _, east, _, south, _, west, _ = _ring(m)
    return {"top-edge": m & ~north, "bottom-edge": m & ~south, "left-edge": m & ~west, "right-edge": m & ~east}


def regions(shape: tuple[int, int] = MASK_SHAPE) -> dict[str, np.ndarray]:
    """Fixed parts of the frame, bool [H, W] each: outer thirds and the central block.

    Rows 0..h/3 are ``upper``, the last third ``lower``; columns likewise
    ``left``/``right``; ``centre`` is the middle third in both directions. So
    ``upper AND left`` is the top-left corner. (``top`` is a cxql keyword,
    hence ``upper``.)
    """
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    third_h, third_w = round(h / 3), round(w / 3)
    upper, lower = rows < third_h, rows >= h - third_h
    left, right = cols < third_w, cols >= w - third_w
    return {"upper": upper, "lower": lower, "left": left, "right": right,
            "centre": ~upper & ~lower & ~left & ~right}


#: Pixel-level stroke concepts: name -> (function of the ink mask, description).
STROKE_CONCEPTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "hole": (holes, "background enclosed by ink"),
    "loop": (loops, "ink bordering a hole"),
    "endpoint": (endpoints, "ink at the free end of a stroke"),
    "junction": (junctions, "ink where three or more strokes meet"),
    "horizontal": (horizontal, f"ink on a horizontal run of {LINE}+ pixels"),
    "vertical": (vertical, f"ink on a vertical run of {LINE}+ pixels"),
}


def broadcast(per_image: np.ndarray, shape: tuple[int, int] = MASK_SHAPE) -> np.ndarray:
    """bool [N] -> bool [N, H, W]: an image-level fact covers every pixel of its image."""
    return np.broadcast_to(np.asarray(per_image, dtype=bool)[:, None, None], (len(per_image),) + shape)


#: Noun phrases for DESCRIBE (metadata ``concept_phrases``; "" names what a formula with no other head covers).
PHRASES = {"": "pixels", "pixel:ink": "ink", "pixel:background": "background",
           **{f"region:{r}": f"the {r} third of the frame" for r in ("upper", "lower", "left", "right")},
           "region:centre": "the centre of the frame",
           "stroke:hole": "holes", "stroke:loop": "loops", "stroke:endpoint": "stroke ends",
           "stroke:junction": "junctions", "stroke:horizontal": "horizontal strokes",
           "stroke:vertical": "vertical strokes",
           **{f"edge:{e}-edge": f"{e} edges of strokes" for e in ("top", "bottom", "left", "right")},
           **{f"label:{d}": f"images of a {d}" for d in range(10)},
           **{f"pred:{d}": f"images the model reads as {d}" for d in range(10)},
           "outcome:correct": "images the model gets right", "outcome:wrong": "images the model gets wrong"}


def concept_masks(intensity: np.ndarray, targets: np.ndarray, preds: np.ndarray
                  ) -> tuple[list[np.ndarray], list[str], list[str], dict[str, str]]:
    """(masks [N, H, W] each, names, categories, descriptions) of every concept, in store order."""
    n, shape = len(intensity), intensity.shape[1:]
    masks, names, cats, about = [], [], [], {}

    def add(category: str, name: str, mask: np.ndarray, text: str) -> None:
        masks.append(np.broadcast_to(mask, (n,) + shape))
        names.append(name)
        cats.append(category)
        about[f"{category}:{name}"] = text

    drawn = ink(intensity)
    add("pixel", "ink", drawn, f"pixels with intensity above {INK_LEVEL}")
    add("pixel", "background", ~drawn, "pixels that are not ink")
    for name, region in regions(shape).items():
        add("region", name, region, "the middle third of the frame both ways" if name == "centre"
            else f"the {name} third of the frame")
    for name, (fn, text) in STROKE_CONCEPTS.items():
        add("stroke", name, fn(drawn), text)
    for name, rim in edges(drawn).items():
        add("edge", name, rim, f"ink with background on its {name.split('-')[0]} side")
    for d in range(10):
        add("label", str(d), broadcast(targets == d, shape), f"images of the digit {d}")
    for d in range(10):
        add("pred", str(d), broadcast(preds == d, shape), f"images the model classifies as {d}")
    add("outcome", "correct", broadcast(preds == targets, shape), "images the model classifies correctly")
    add("outcome", "wrong", broadcast(preds != targets, shape), "images the model gets wrong")
    return masks, names, cats, about


# ------------------------------------------------------------------ build


def versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, "cxql": cxql.__version__}


def accuracy(preds: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(preds == targets))


def pictures(pixels: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] grey pictures of the digits as a person sees them: dark ink on white (255 = paper)."""
    return np.round(255 * (1 - np.clip(pixels, 0, 1))).astype(np.uint8)


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(weights: Path = WEIGHTS, retrain: bool = False) -> cxql.ConceptStore:
    """The demo store, in memory: the shipped CNN (or, with ``retrain``, a new one saved to ``weights``).

    Everything but training is the same on every machine; training repeats
    only on the same machine, which is why its result ships.
    """
    images, targets = load_digits()
    pixels = upsample(images)
    train_idx, test_idx = split(len(images))
    if retrain:
        save_weights(train(pixels[train_idx], targets[train_idx]), weights)
    acts, preds = run(load_model(weights), pixels)
    masks, names, cats, about = concept_masks(pixels, targets, preds)
    metadata = {
        "title": "digits: scikit-learn's 1,797 handwritten 8x8 digits, upsampled to 16x16, and a small CNN",
        "built_by": "examples/build_demo_store.py",
        "seed": SEED, "ink_level": INK_LEVEL,
        "model": "conv1 Conv2d(1,8,3,pad 1)+BN+ReLU [16x16] -> max_pool 2 -> conv2 Conv2d(8,16,3,pad 1)+BN+ReLU "
                 "[8x8] -> max_pool 2 -> fc Linear(256,32)+BN+ReLU -> Linear(32,10)",
        "model_factory": "examples/digits_model.py:load_model",
        "weights": {"file": "examples/data/digits_cnn.npz", "sha256": file_digest(weights)},
        "model_input": "[batch, 1, 16, 16] float intensities in 0..1 (1 = full ink)",
        "training": {"optimizer": f"Adam lr {LEARNING_RATE:g}, batch {BATCH}", "epochs": EPOCHS,
                     "train_images": len(train_idx), "test_images": len(test_idx)},
        "accuracy": {"train": accuracy(preds[train_idx], targets[train_idx]),
                     "test": accuracy(preds[test_idx], targets[test_idx])},
        "thresholds": {name: plan.threshold for name, plan in LAYERS.items()},
        "test_samples": test_idx.tolist(),
        "images": "images.npy: uint8 [samples, 16, 16], each digit as the model sees it, dark ink on white",
        "concepts": about,
        "concept_phrases": PHRASES,
        "versions": versions(),
    }
    store = cxql.ConceptStore.from_masks(np.stack([m.reshape(-1) for m in masks], axis=1), names, cats,
                                         sample_ids=[f"digit{i:04d}" for i in range(len(images))],
                                         mask_shape=MASK_SHAPE, metadata=metadata)
    store.arrays["images"] = pictures(pixels)  # saved with the store; cxql report draws them
    # the model travels with the store (weights, inputs, targets), so ABLATE works after pip install
    cxql.model.attach(store, "cxql.models.digits:untrained", load_model(weights), pixels[:, None], targets,
                      [str(d) for d in range(10)], {name: name for name in LAYERS}, output="out")
    for name, plan in LAYERS.items():
        store.add_units(name, acts[name], threshold=plan.threshold, keep_activations=plan.keep_activations)
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "stores" / "digits", help="store directory to write")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help=f"model weights (.npz; default {WEIGHTS})")
    parser.add_argument("--train", action="store_true",
                        help="train the CNN again and overwrite --weights first (the result differs across machines)")
    args = parser.parse_args(argv)
    if not args.train and not args.weights.is_file():
        parser.error(f"{args.weights}: no such weights file; pass --train to train the model")
    start = time.perf_counter()
    store = build(args.weights, retrain=args.train).save(args.out)
    meta = store.metadata
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s: {store.n_positions:,} positions, "
          f"{store.n_samples:,} images, {len(store.concepts)} concepts, {store.n_signatures:,} signatures, "
          f"layers {', '.join(f'{n} ({l.n_units})' for n, l in store.layers.items())}, {store.nbytes():,} bytes")
    print(f"model accuracy: train {meta['accuracy']['train']:.4f}, test {meta['accuracy']['test']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
