"""A plain numpy reference for cxql's answers, written independently of cxql.

It works on dense bool masks, counts with Python integers and builds formula
text by hand, so it shares no code with the engine it checks: no signatures,
no closed-form counts, no torch. Tests in every module compare cxql's engine
(and its faster paths) against these functions on random data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou(formula_mask: np.ndarray, unit_mask: np.ndarray) -> float:
    inter = int(np.count_nonzero(formula_mask & unit_mask))
    union = int(np.count_nonzero(formula_mask | unit_mask))
    return inter / union if union else 0.0


def precision(formula_mask: np.ndarray, unit_mask: np.ndarray) -> float:
    inter = int(np.count_nonzero(formula_mask & unit_mask))
    size = int(np.count_nonzero(formula_mask))
    return inter / size if size else 0.0


def recall(formula_mask: np.ndarray, unit_mask: np.ndarray) -> float:
    inter = int(np.count_nonzero(formula_mask & unit_mask))
    size = int(np.count_nonzero(unit_mask))
    return inter / size if size else 0.0


def f1(formula_mask: np.ndarray, unit_mask: np.ndarray) -> float:
    """Dice: the harmonic mean of precision and recall, 2 |M&F| / (|M| + |F|)."""
    inter = int(np.count_nonzero(formula_mask & unit_mask))
    total = int(np.count_nonzero(formula_mask)) + int(np.count_nonzero(unit_mask))
    return 2 * inter / total if total else 0.0


def auroc(formula_mask: np.ndarray, values: np.ndarray) -> float:
    """P(a position in F has a higher value than one outside F), ties half: pairs counted one by one
    (by binary search), as the exact fraction 2 U / (2 |F| |not F|); 0 when either side is empty."""
    inside, outside = values[formula_mask], np.sort(values[~formula_mask])
    if not len(inside) or not len(outside):
        return 0.0
    below = np.searchsorted(outside, inside, side="left")
    not_above = np.searchsorted(outside, inside, side="right")
    twice_u = int(2 * below.sum() + (not_above - below).sum())
    return twice_u / (2 * len(inside) * len(outside))


#: SPEC's count metrics by the names ``SET metric`` takes.
METRICS = {"iou": iou, "precision": precision, "recall": recall, "f1": f1}


def display_names(names: list[str], categories: list[str] | None = None) -> list[str]:
    """Bare names where unique, ``category:name`` otherwise (as cxql prints them)."""
    categories = categories or [""] * len(names)
    out = []
    for name, cat in zip(names, categories):
        unique = names.count(name) == 1
        out.append(name if unique or not cat else f"{cat}:{name}")
    return out


@dataclass
class RefResult:
    formula: str
    iou: float
    by_length: dict[int, tuple[str, float]] = field(default_factory=dict)
    beam: list[tuple[str, float]] = field(default_factory=list)


def search(concepts: np.ndarray, names: list[str], unit: np.ndarray, length: int = 3, beam: int = 5,
           distinct: bool = False, metric=iou) -> RefResult:
    """compexp's beam search, exactly as SPEC section 3 words it, maximising ``metric`` (IoU by default)."""
    k_all = concepts.shape[1]
    single = [metric(concepts[:, k], unit) for k in range(k_all)]
    order = sorted(range(k_all), key=lambda k: -single[k])  # stable: store order on ties
    entries = [(names[k], concepts[:, k], single[k], 1) for k in order if single[k] > 0][:beam]
    if not entries:
        return RefResult("NONE", 0.0)
    best = {1: (entries[0][0], entries[0][2])}
    nonempty = [k for k in range(k_all) if concepts[:, k].any()]
    for _ in range(length - 1):
        new = []
        for text, mask, _score, n in entries:
            for k in nonempty:
                c = concepts[:, k]
                for cand_text, cand in ((f"({text} OR {names[k]})", mask | c),
                                        (f"({text} AND {names[k]})", mask & c),
                                        (f"({text} AND NOT {names[k]})", mask & ~c)):
                    new.append((cand_text, cand, metric(cand, unit), n + 1))
        for cand_text, _m, score, n in new:
            if n not in best or score > best[n][1]:
                best[n] = (cand_text, score)
        ranked = sorted(entries + new, key=lambda e: -e[2])
        chosen, seen = [], set()
        for e in ranked:
            if distinct and e[0] in seen:
                continue
            seen.add(e[0])
            chosen.append(e)
            if len(chosen) == beam:
                break
        entries = chosen
    return RefResult(entries[0][0], entries[0][2], best, [(e[0], e[2]) for e in entries])


def exhaustive_length2(concepts: np.ndarray, unit: np.ndarray) -> float:
    """The best IoU over every formula the search language has with at most 2 leaves.

    Those are ``a``, ``(a OR b)``, ``(a AND b)`` and ``(a AND NOT b)`` for all
    concepts a, b; with a beam as wide as the store, SEARCH LENGTH 2 must find
    this optimum.
    """
    k_all = concepts.shape[1]
    cols = [concepts[:, k] for k in range(k_all)]
    best = max(iou(c, unit) for c in cols)
    for a in cols:
        for b in cols:
            best = max(best, iou(a | b, unit), iou(a & b, unit), iou(a & ~b, unit))
    return best


def evaluate(expr: str, concepts: np.ndarray, names: list[str]) -> np.ndarray:
    """Evaluate a canonical formula string with Python's own parser (names must be identifiers)."""
    env = {name.replace(":", "__"): concepts[:, i] for i, name in enumerate(names)}
    py = expr.replace(" AND NOT ", " & ~").replace(" AND ", " & ").replace(" OR ", " | ")
    py = py.replace("NOT ", "~").replace(":", "__")
    return eval(py, {"__builtins__": {}}, env)  # noqa: S307 - test helper on generated names
