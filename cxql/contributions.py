"""Class contributions: which units the model's output leans on for each class (compexp's final.html).

Why: a formula says what a unit detects; the weights from that unit into the
output layer say what the model does with it. For a layer that feeds the
output directly (the attached model's ``output`` module, a Linear whose input
is the layer's units), each class's largest weights name its contributing
units, and each unit's largest weight its favoured class. Beside them, the
model's accuracy on the samples where the unit fires and where it does not:
a unit whose firing goes with mistakes is worth a look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from . import model as cm
from .errors import QueryError
from .result import Result

if TYPE_CHECKING:
    from .store import ConceptStore, Layer


def output_weights(attached: cm.AttachedModel, layer: "Layer") -> np.ndarray:
    """float [classes, units]: the output module's weights from ``layer``'s units; an error if it does not feed it."""
    name = attached.output
    if not name:
        raise QueryError("the attached model names no output module; pass output='module' to cxql.model.attach")
    module = dict(attached.model.named_modules()).get(name)
    weight = getattr(module, "weight", None)
    if weight is None or weight.ndim != 2:
        raise QueryError(f"the output module {name!r} has no 2-D weight (a Linear layer is expected)")
    w = weight.detach().cpu().numpy().astype(np.float64)
    if w.shape != (len(attached.classes), layer.n_units):
        raise QueryError(f"layer {layer.name!r} ({layer.n_units} units) does not feed the output module {name!r} "
                         f"(weights {w.shape[0]} x {w.shape[1]}); class contributions need the last layer")
    return w


def class_rows(weights: np.ndarray, classes: list[str], formulas: Mapping[int, str], top: int = 3
               ) -> list[dict[str, Any]]:
    """Per class, its ``top`` units by weight (largest first; ties to the lower unit), with their formulas."""
    rows = []
    for c, name in enumerate(classes):
        order = np.lexsort((np.arange(weights.shape[1]), -weights[c]))[:top]
        for rank, u in enumerate(order, start=1):
            rows.append({"class": name, "rank": rank, "unit": int(u), "weight": float(weights[c, u]),
                         "formula": formulas.get(int(u))})
    return rows


def fires_per_sample(store: "ConceptStore", layer: "Layer") -> np.ndarray:
    """bool [samples, units]: whether each unit fires anywhere in each sample."""
    offsets = np.asarray(store.sample_offsets, dtype=np.int64)
    out = np.zeros((store.n_samples, layer.n_units), dtype=bool)
    for u in range(layer.n_units):
        positions = np.asarray(layer.unit_positions(u), dtype=np.int64)
        samples = np.searchsorted(offsets, positions, side="right") - 1
        out[samples, u] = True
    return out


def unit_rows(weights: np.ndarray, classes: list[str], fires: np.ndarray, correct: np.ndarray,
              formulas: Mapping[int, str]) -> list[dict[str, Any]]:
    """Per unit: favoured class (largest weight), the weight, accuracy where it fires and where it does not."""
    rows = []
    for u in range(weights.shape[1]):
        on = fires[:, u]
        best = int(np.argmax(weights[:, u]))
        rows.append({"unit": u, "favours": classes[best], "weight": float(weights[best, u]),
                     "fires_in": int(on.sum()),
                     "accuracy_firing": float(correct[on].mean()) if on.any() else None,
                     "accuracy_silent": float(correct[~on].mean()) if (~on).any() else None,
                     "formula": formulas.get(u)})
    return rows


def contributions(store: "ConceptStore", layer: str, formulas: Mapping[int, str] | None = None, top: int = 3
                  ) -> tuple[Result, Result]:
    """(per-class rows, per-unit rows) for ``layer`` of ``store``'s attached model."""
    attached = cm.load(store)
    lay = store.layers[layer]
    weights = output_weights(attached, lay)
    formulas = dict(formulas or {})
    correct = cm.predict(attached) == attached.targets
    per_class = Result(f"contributions {layer}", "contributions", ["class", "rank", "unit", "weight", "formula"],
                       class_rows(weights, attached.classes, formulas, top))
    per_unit = Result(f"unit classes {layer}", "unit_classes",
                      ["unit", "favours", "weight", "fires_in", "accuracy_firing", "accuracy_silent", "formula"],
                      unit_rows(weights, attached.classes, fires_per_sample(store, lay), correct, formulas))
    return per_class, per_unit
