"""Metrics: how well a formula's mask F explains a unit's mask M (SPEC section 2 and 7).

Every metric here is a function of four exact integer counts: |M AND F|
(``inter``), |F| (``size``), |M| (``mask``) and the number of positions N.
One function serves both the search engines, on float64 tensors that
broadcast, and the statements, on Python integers: a metric is one division
of exact integers (each below 2**53), and IEEE division is correctly rounded,
so the tensor and the scalar give the same float and the batched and plain
engines the same scores. A zero denominator means a zero numerator, so it is
clamped to 1 and the value is 0, as SPEC asks.

AUROC needs the unit's activations (``needs_activations``): it is still one
division of exact integers, but its ``inter`` is the formula's doubled rank
sum, which the session feeds searchers as per-signature "histograms" from
the layer's activations (:mod:`cxql.activation_source`). A metric SPEC
names that nothing can feed yet goes in :data:`PLANNED`, so ``SET metric``
refuses it with the reason.

Adding a metric: write a :class:`Metric` (name, label, ``score``) and add it
to :data:`METRICS`; ``SET metric``, SEARCH, EVAL, MATCH and the renderers
read it from there (docs/architecture.md has a worked example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import NameResolutionError, QueryError, did_you_mean

Count = Any  # an int, or a float64 torch tensor of exact integer counts (broadcasting)


def positive(x: Count) -> Count:
    """The denominator with 0 replaced by 1 (its numerator is then 0, so the value is 0)."""
    return x.clamp(min=1) if hasattr(x, "clamp") else max(x, 1)


@dataclass(frozen=True)
class Metric:
    """A score in [0, 1] from exact counts; SEARCH maximises it, EVAL and MATCH report it."""

    name: str                 # the setting value and the result column, e.g. 'f1'
    label: str                # how people write it, e.g. 'F1'
    formula: str              # for EXPLAIN, in counts
    score: Callable[[Count, Count, Count, Count], Count]  # (inter, size, mask, n) -> value
    needs_activations: bool = False
    #: When the metric is an increasing function of IoU, that function: the same formulas win,
    #: and an IoU bound maps to a bound on this metric (SEARCH ... EXACT uses it). None otherwise.
    of_iou: Callable[[float], float] | None = None

    def __call__(self, inter: Count, size: Count, mask: Count, n: Count = 0) -> Count:
        return self.score(inter, size, mask, n)


IOU = Metric("iou", "IoU", "|M&F| / (|M| + |F| - |M&F|)",
             lambda inter, size, mask, n: inter / positive(size + mask - inter), of_iou=lambda j: j)
PRECISION = Metric("precision", "precision", "|M&F| / |F|", lambda inter, size, mask, n: inter / positive(size))
RECALL = Metric("recall", "recall", "|M&F| / |M|", lambda inter, size, mask, n: inter / positive(mask))
#: F1 (Dice) = 2 IoU / (1 + IoU): it ranks formulas as IoU does, so exact bounds carry over.
F1 = Metric("f1", "F1", "2 |M&F| / (|M| + |F|)", lambda inter, size, mask, n: 2 * inter / positive(size + mask),
            of_iou=lambda j: 2 * j / (1 + j))

#: Every metric computed from counts, by name, in the order result rows show them.
METRICS: dict[str, Metric] = {m.name: m for m in (IOU, PRECISION, RECALL, F1)}

#: AUROC of the formula's positions ranked by the unit's activation (:mod:`cxql.ranking_metrics`). Its
#: ``inter`` is not |M&F| but 2R, the doubled midranks of F's positions summed (an exact integer): searchers
#: get per-signature rank sums as the unit's histogram, so the same closed-form counts score it.
AUROC = Metric("auroc", "AUROC", "(2R - |F| (|F| + 1)) / (2 |F| (N - |F|)), R = rank sum of F's positions",
               lambda inter, size, mask, n: (inter - size * (size + 1)) / positive(2 * size * (n - size)),
               needs_activations=True)

#: Metrics that rank positions by the unit's activation, by name (EVAL adds p_value and auprc beside them).
ACTIVATION_METRICS: dict[str, Metric] = {AUROC.name: AUROC}

#: Metrics SPEC names that need more than counts and no searcher feeds yet; ``SET metric`` refuses them.
PLANNED: dict[str, str] = {}

#: Every name ``SET metric`` takes.
CHOICES: tuple[str, ...] = (*METRICS, *ACTIVATION_METRICS)


def get(name: str) -> Metric:
    """The metric called ``name`` (case-insensitive), or a clear error naming the choices."""
    key = str(name).lower()
    if key in METRICS:
        return METRICS[key]
    if key in ACTIVATION_METRICS:
        return ACTIVATION_METRICS[key]
    if key in PLANNED:
        raise QueryError(f"metric {name!r} is not available: {PLANNED[key]}", needle=str(name),
                         hint="metrics: " + ", ".join(CHOICES))
    raise NameResolutionError(f"unknown metric {name!r}", needle=str(name),
                              hint=did_you_mean(key, CHOICES) or "metrics: " + ", ".join(CHOICES))


def values(inter: int, size: int, mask: int, n: int = 0) -> dict[str, float]:
    """Every count metric of one (formula, unit) pair, by name: the columns of EVAL, MATCH and SEARCH rows."""
    return {name: float(m(inter, size, mask, n)) for name, m in METRICS.items()}


def columns(metric: Metric) -> list[str]:
    """Result columns for the metrics: the chosen one first, then the others in registry order."""
    return [metric.name] + [name for name in METRICS if name != metric.name]


__all__ = ["ACTIVATION_METRICS", "AUROC", "CHOICES", "F1", "IOU", "METRICS", "Metric", "PRECISION", "RECALL",
           "columns", "get", "positive", "values"]
