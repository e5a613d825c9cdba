"""Copy-paste adversarial examples (compexp section 5, vision): does pasting a concept flip predictions?

Why: if a class's units are explained by concept c, an image of another class
with a region of c pasted in should drift toward that class, more than with
a random region of the same size. For each victim (a correctly classified
sample of ``target``), a donor sample that has ``concept`` gives its input
pixels under the concept's mask; the control pastes the same number of the
donor's pixels at random positions. Inputs must be images at the store's
mask resolution ([N, C, H, W] with (H, W) = mask shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import model as cm
from .errors import DataError, QueryError
from .store import signatures as sig

if TYPE_CHECKING:
    from .store import ConceptStore


@dataclass
class Pasted:
    """One attack: the victims' and donors' samples, the pasted inputs, and predictions before/after/control."""

    victims: np.ndarray
    donors: np.ndarray
    inputs: np.ndarray
    before: np.ndarray
    after: np.ndarray
    control: np.ndarray


def concept_masks(store: "ConceptStore", qualified: str) -> np.ndarray:
    """bool [samples, H, W]: where a concept holds, from the signature table."""
    found = [c for c in store.concepts if qualified in (c.qualified, c.name)]
    if len(found) != 1:
        raise QueryError(f"{qualified!r} names {'no' if not found else 'more than one'} concept of the store")
    column = sig.concept_column(np.asarray(store.signature_bits), found[0].index)
    per_position = column[np.asarray(store.position_signatures, dtype=np.int64)]
    return per_position.reshape((store.n_samples, *store.mask_shape))


def _predict(attached: cm.AttachedModel, inputs: np.ndarray) -> np.ndarray:
    swapped = cm.AttachedModel(attached.factory, attached.model, inputs, np.zeros(len(inputs), np.int64),
                               attached.classes, attached.modules, attached.output)
    return cm.predict(swapped)


def paste(store: "ConceptStore", concept: str, target: int, n: int = 100, seed: int = 0, *,
          attached: cm.AttachedModel | None = None, predicted: np.ndarray | None = None) -> Pasted:
    """Paste ``concept`` from random donors into up to ``n`` correctly classified samples of class ``target``.

    ``attached`` and ``predicted`` (its predictions on all samples) let a caller pasting many times load
    and run the model once; they must be ``cm.load(store)`` and ``cm.predict`` of it.
    """
    attached = attached if attached is not None else cm.load(store)
    x = attached.inputs
    if x.ndim != 4 or tuple(x.shape[2:]) != tuple(store.mask_shape or ()):
        raise DataError(f"copy-paste needs image inputs [N, C, H, W] at the mask resolution "
                        f"{store.mask_shape}; the attached model's inputs are {x.shape}")
    masks = concept_masks(store, concept)
    before_all = predicted if predicted is not None else cm.predict(attached)
    rng = np.random.default_rng(seed)
    victims = np.flatnonzero((attached.targets == target) & (before_all == target))
    donors_pool = np.flatnonzero(masks.reshape(len(masks), -1).any(1) & (attached.targets != target))
    if not len(victims) or not len(donors_pool):
        raise QueryError(f"no correctly classified samples of class {target} or no donors with {concept!r}")
    victims = np.sort(rng.choice(victims, size=min(n, len(victims)), replace=False))
    donors = rng.choice(donors_pool, size=len(victims), replace=True)
    m = masks[donors][:, None].astype(x.dtype)
    pasted = x[victims] * (1 - m) + x[donors] * m
    random_m = np.zeros_like(m)
    for i, k in enumerate(m.reshape(len(m), -1).sum(1).astype(int)):
        flat = random_m[i].reshape(-1)
        flat[rng.choice(flat.size, size=k, replace=False)] = 1
    control = x[victims] * (1 - random_m) + x[donors] * random_m
    return Pasted(victims, donors, pasted, before_all[victims], _predict(attached, pasted),
                  _predict(attached, control))


def summary_row(p: Pasted, concept: str, target: int, source: int | None = None) -> dict[str, Any]:
    """Flip rates: pasted concept vs random pixels of the same area (and how often the result is ``source``)."""
    n = len(p.victims)
    row = {"concept": concept, "target": target, "victims": n, "flip_rate": float(np.mean(p.after != p.before)),
           "control_flip_rate": float(np.mean(p.control != p.before))}
    if source is not None:
        row["to_source"] = float(np.mean(p.after == source))
        row["control_to_source"] = float(np.mean(p.control == source))
    return row


def grid_png(store: "ConceptStore", p: Pasted, path: str | Path, classes: list[str], count: int = 8,
             scale: int = 4, inputs: np.ndarray | None = None) -> Path:
    """Victim | donor | pasted, one row per example, with predictions before -> after (PIL).

    ``inputs``: the attached model's inputs when the caller has them loaded already.
    """
    from PIL import Image, ImageDraw

    x = inputs if inputs is not None else cm.load(store).inputs
    h, w = store.mask_shape
    cell, label = (w * scale, h * scale), 14
    rows = min(count, len(p.victims))
    img = Image.new("L", (3 * cell[0] + 4 * 4 + 120, rows * (cell[1] + 4) + label + 4), 255)
    draw = ImageDraw.Draw(img)
    for c, name in enumerate(("victim", "donor", "pasted")):
        draw.text((4 + c * (cell[0] + 4), 2), name, fill=0)
    for r in range(rows):
        tiles = [x[p.victims[r]], x[p.donors[r]], p.inputs[r]]
        y = label + r * (cell[1] + 4)
        for c, t in enumerate(tiles):
            grey = np.clip(255 * (1 - t.mean(0)), 0, 255).astype(np.uint8)  # ink dark on white
            img.paste(Image.fromarray(grey).resize(cell, Image.NEAREST), (4 + c * (cell[0] + 4), y))
        draw.text((3 * (cell[0] + 4) + 8, y + cell[1] // 2 - 6),
                  f"{classes[p.before[r]]} -> {classes[p.after[r]]}", fill=0)
    path = Path(path)
    img.save(path, format="PNG")
    return path
