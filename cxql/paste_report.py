"""The report's copy-paste section: paste a concept a class's top units involve into other classes' images.

Why: class contributions say which units a class leans on and what explains
them; pasting the concept those formulas name into images of other classes
(compexp section 5) tests whether the model follows the explanation, beside a
random region of the same area as the control. Small and seeded so the report
stays fast and the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from . import copy_paste as cp
from . import model as cm
from . import syntax as s
from .errors import CxqlError

if TYPE_CHECKING:
    from .store import ConceptStore

COLUMNS = ["class", "concept", "in_formula", "victims_class", "victims", "flip_rate", "control_flip_rate",
           "to_class", "control_to_class"]


def involved(formula: s.Formula, negated: bool = False) -> Iterator[tuple[str, bool]]:
    """(concept name, under an odd number of NOTs) for each concept leaf, left to right."""
    if isinstance(formula, s.Concept):
        yield formula.name, negated
    elif isinstance(formula, s.Not):
        yield from involved(formula.operand, not negated)
    elif isinstance(formula, (s.And, s.Or)):
        yield from involved(formula.left, negated)
        yield from involved(formula.right, negated)


def pastable(store: "ConceptStore", concept: str) -> bool:
    """A concept with a region inside some image; image-level labels (whole image or nothing) cannot be pasted."""
    try:
        m = cp.concept_masks(store, concept).reshape(store.n_samples, -1)
    except CxqlError:
        return False
    return bool((m.any(1) & ~m.all(1)).any())


def choices(store: "ConceptStore", per_class_rows: list[dict[str, Any]], classes: int = 2
            ) -> list[tuple[str, str, bool]]:
    """(class, concept, negated) for the first ``classes`` classes whose top units' formulas name a pastable
    concept; a concept named without NOT is preferred, then the best-ranked unit's."""
    from .parser import parse_formula

    found: dict[str, list[tuple[bool, int, str]]] = {}
    for row in per_class_rows:
        if not row.get("formula"):
            continue
        for name, neg in involved(parse_formula(row["formula"])):
            if pastable(store, name):
                found.setdefault(row["class"], []).append((neg, row["rank"], name))
    picked = []
    for cls in [c for c in dict.fromkeys(r["class"] for r in per_class_rows) if c in found][:classes]:
        neg, _, name = min(found[cls])
        picked.append((cls, name, neg))
    return picked


def rows_for(store: "ConceptStore", attached: cm.AttachedModel, predicted: np.ndarray, cls: str, concept: str,
             negated: bool, n: int, seed: int) -> tuple[list[dict[str, Any]], list[cp.Pasted]]:
    """One row per other class that has correctly read samples, pasting ``concept`` into up to ``n`` of them."""
    source = attached.classes.index(cls)
    rows, attacks = [], []
    for target, name in enumerate(attached.classes):
        if target == source or not ((attached.targets == target) & (predicted == target)).any():
            continue
        p = cp.paste(store, concept, target, n=n, seed=seed, attached=attached, predicted=predicted)
        r = cp.summary_row(p, concept, target, source=source)
        rows.append({"class": cls, "concept": concept, "in_formula": f"NOT {concept}" if negated else concept,
                     "victims_class": name, "victims": r["victims"], "flip_rate": r["flip_rate"],
                     "control_flip_rate": r["control_flip_rate"], "to_class": r["to_source"],
                     "control_to_class": r["control_to_source"]})
        attacks.append(p)
    return rows, attacks


def copy_paste(store: "ConceptStore", per_class_rows: list[dict[str, Any]], out: Path, safe: str, *,
               classes: int = 2, n: int = 10, seed: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for the page and the grid PNGs written to ``out`` (one per class: the victims' class pushed most
    toward it, ties to the first); empty when the inputs are not images or no formula names a pastable concept."""
    picked = choices(store, per_class_rows, classes)
    if not picked:
        return [], []
    attached = cm.load(store)
    x = attached.inputs
    if x.ndim != 4 or tuple(x.shape[2:]) != tuple(store.mask_shape or ()):
        return [], []
    predicted = cm.predict(attached)
    all_rows, grids = [], []
    for cls, concept, negated in picked:
        rows, attacks = rows_for(store, attached, predicted, cls, concept, negated, n, seed)
        if not rows:
            continue
        best = max(range(len(rows)), key=lambda i: (rows[i]["to_class"] - rows[i]["control_to_class"], -i))
        name = f"{safe}_copy_paste_{len(grids)}.png"
        cp.grid_png(store, attacks[best], out / name, [str(c) for c in attached.classes], count=6, inputs=x)
        all_rows += rows
        grids.append(name)
    return all_rows, grids
