"""ABLATE unit <units> | ABLATE MATCH f TOP k: does the model need the units a formula explains?

Why: an explanation predicts something testable: if units explained by
``f`` matter for the classes that need ``f``, zeroing them must hurt those
classes more than zeroing as many units picked at random. So the attached
model (:mod:`cxql.model`) is re-run over the store's samples with the units'
outputs zeroed by a forward hook, and each class's accuracy before and after
is set beside a control: the same number of random other units of the layer,
over several seeds (mean and standard deviation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import model as cm
from . import syntax as s
from .errors import QueryError
from .result import Result

if TYPE_CHECKING:
    from .context import StatementContext as Session

SEEDS = 5
COLUMNS = ["class", "samples", "before", "after", "change", "random_after", "random_spread", "random_change"]


def control_units(n_units: int, chosen: Sequence[int], seed: int) -> list[int]:
    """``len(chosen)`` random units of the layer, others than ``chosen`` while there are enough of them."""
    rng = np.random.default_rng(seed)
    others = [u for u in range(n_units) if u not in set(chosen)]
    pool = others if len(others) >= len(chosen) else list(range(n_units))
    return sorted(int(u) for u in rng.choice(pool, size=len(chosen), replace=False))


def ablation_rows(attached: cm.AttachedModel, layer: str, units: Sequence[int], n_units: int,
                  seeds: int = SEEDS) -> list[dict[str, Any]]:
    """One row per class and one for all samples: accuracy before/after zeroing ``units``, and the control."""
    targets, k = attached.targets, len(attached.classes)
    before = cm.predict(attached)
    after = cm.predict(attached, layer, units)
    controls = [cm.predict(attached, layer, control_units(n_units, units, seed)) for seed in range(seeds)]

    def accuracies(preds: np.ndarray) -> np.ndarray:  # per class, then all samples
        return np.append(cm.per_class_accuracy(preds, targets, k), np.mean(preds == targets) if len(preds) else np.nan)

    acc_before, acc_after = accuracies(before), accuracies(after)
    acc_random = np.stack([accuracies(p) for p in controls]) if controls else np.full((1, k + 1), np.nan)
    counts = np.append(np.bincount(targets, minlength=k), len(targets))
    rows = []
    for i, name in enumerate([*attached.classes, "all"]):
        mean = float(acc_random[:, i].mean())
        rows.append({"class": name, "samples": int(counts[i]), "before": float(acc_before[i]),
                     "after": float(acc_after[i]), "change": float(acc_after[i] - acc_before[i]),
                     "random_after": mean, "random_spread": float(acc_random[:, i].std()),
                     "random_change": mean - float(acc_before[i])})
    return rows


def chosen_units(session: "Session", stmt: s.Ablate) -> list[int]:
    """The units to zero: the list as written, or MATCH f's TOP k."""
    if stmt.formula is None:
        return session.units(stmt.units)
    n = session.layer().n_units
    if stmt.top is None or stmt.top < 1:
        raise QueryError(f"ABLATE MATCH needs TOP k with k at least 1, got {stmt.top}", needle="TOP")
    if stmt.top > n:
        raise QueryError(f"TOP {stmt.top} is more units than layer {session.layer().name!r} has ({n})",
                         needle=f"TOP {stmt.top}", hint=f"ablate at most TOP {n}")
    from .statements import match

    return [int(r["unit"]) for r in match(session, s.Match(stmt.formula, stmt.top)).rows]


def ablate(session: "Session", stmt: s.Ablate) -> Result:
    attached = cm.load(session.store)
    layer = session.layer()
    units = chosen_units(session, stmt)
    rows = ablation_rows(attached, layer.name, units, layer.n_units)
    message = (f"zeroed {len(units)} unit{'s' * (len(units) != 1)} of {layer.name}: {', '.join(map(str, units))}; "
               f"control: {len(units)} random other units, {SEEDS} seeds (mean, standard deviation); "
               f"{len(attached.targets)} samples")
    return Result(str(stmt), "ablate", COLUMNS, rows, message)
