"""SUMMARY LAYER name [LENGTH n]: how well a layer is explained, at a glance (compexp's figures).

Why: one unit's formula says little about a layer; the paper's plot of mean
IoU against formula length, the share of units whose explanation uses each
concept category, and how often explanations need OR, AND, AND NOT, say
whether longer formulas pay and what kind of concepts the layer sees. One
SEARCH of every unit at LENGTH n gives all of it: the score at length l is
the unit's best formula with at most l leaves (the searcher's ``by_length``),
which is what ``SEARCH ... LENGTH l`` answers, since beam search extends the
same beams. Rows come in three parts (``part`` = length, category,
operator); :func:`plot_png` draws the length part with PIL (no matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from . import syntax as s
from .errors import NameResolutionError, did_you_mean
from .result import Result
from .searcher import SearchResult

if TYPE_CHECKING:
    from .context import StatementContext as Session
    from .store import ConceptStore

COLUMNS = ["part", "name", "units", "share", "mean", "median", "q1", "q3", "max"]
OPERATORS = ("OR", "AND", "AND NOT")


def best_up_to(result: SearchResult, length: int) -> float:
    """The unit's best score over formulas of at most ``length`` leaves (0 when none scores)."""
    scores = [sc.score for k, sc in result.by_length.items() if k <= length and sc is not None]
    return max(scores, default=0.0)


def operator_counts(formula: s.Formula) -> dict[str, int]:
    """How many times a formula uses OR, AND (not followed by NOT) and AND NOT."""
    counts = dict.fromkeys(OPERATORS, 0)

    def walk(f: s.Formula) -> None:
        if isinstance(f, s.Or):
            counts["OR"] += 1
        elif isinstance(f, s.And):
            counts["AND NOT" if isinstance(f.right, s.Not) else "AND"] += 1
        for child in (getattr(f, "left", None), getattr(f, "right", None), getattr(f, "operand", None)):
            if child is not None:
                walk(child)

    walk(formula)
    return counts


def categories_of(formula: s.Formula, store: "ConceptStore") -> set[str]:
    """The concept categories a formula's leaves come from."""
    by_name = {}
    for c in store.concepts:
        by_name.setdefault(c.name, c.category or "")
        by_name[c.qualified] = c.category or ""
    return {by_name.get(leaf.name, "") for leaf in s.leaves(formula) if isinstance(leaf, s.Concept)}


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(("mean", "median", "q1", "q3", "max"), 0.0)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "q1": float(np.quantile(a, 0.25)),
            "q3": float(np.quantile(a, 0.75)), "max": float(a.max())}


def summary_rows(results: list[SearchResult], length: int, store: "ConceptStore") -> list[dict[str, Any]]:
    """The three parts of a layer summary from one SEARCH's results (every unit, LENGTH ``length``)."""
    n = len(results)
    blank = dict.fromkeys(("mean", "median", "q1", "q3", "max"))
    rows = []
    for k in range(1, length + 1):
        scores = [best_up_to(r, k) for r in results]
        explained = sum(sc > 0 for sc in scores)
        rows.append({"part": "length", "name": str(k), "units": explained, "share": explained / n if n else 0.0,
                     **_stats(scores)})
    seen: dict[str, list[float]] = {}
    for r in results:
        if r.best is not None:
            for cat in sorted(categories_of(r.best.formula, store)):
                seen.setdefault(cat, []).append(r.best.score)
    for cat in sorted(seen, key=lambda c: (-len(seen[c]), c)):
        rows.append({"part": "category", "name": cat, "units": len(seen[cat]), "share": len(seen[cat]) / n,
                     **_stats(seen[cat])})
    for op in OPERATORS:
        using = [r.best.score for r in results if r.best is not None and operator_counts(r.best.formula)[op]]
        rows.append({"part": "operator", "name": op, "units": len(using), "share": len(using) / n if n else 0.0,
                     **(_stats(using) if using else blank)})
    return rows


def layer_results(session: "Session", layer: str, length: int | None) -> tuple[list[SearchResult], int]:
    """Every unit of ``layer`` searched once (the session's engine, BEAM), with the session's layer restored."""
    from .statements import checked_search

    store = session.store
    if layer not in store.layers:
        raise NameResolutionError(f"unknown layer {layer!r}; layers: {', '.join(store.layers) or 'none'}",
                                  needle=layer, hint=did_you_mean(layer, list(store.layers)))
    length = length if length is not None else session.settings["length"]
    before = session.settings["layer"]
    session.settings["layer"] = layer
    try:
        session.forget_plans()
        units = list(range(store.layers[layer].n_units))
        engine = session.searcher()
        beam = checked_search(session, engine, units, length, session.settings["beam"])
        results = engine.search(session.search_context(), units, length=length, beam=beam,
                                distinct=session.settings["distinct"])
    finally:
        session.settings["layer"] = before
        session.forget_plans()
    return results, length


def summary(session: "Session", stmt: s.Summary) -> Result:
    results, length = layer_results(session, stmt.layer, stmt.length)
    rows = summary_rows(results, length, session.store)
    message = (f"scores are {session.metric.label}; at length l a unit's best formula of at most l leaves; "
               f"{len(results)} units of {stmt.layer}")
    return Result(str(stmt), "summary", COLUMNS, rows, message)


# ------------------------------------------------------------------ the figure


def plot_png(rows: Iterable[dict[str, Any]], path: str | Path, title: str = "", size: tuple[int, int] = (480, 320)
             ) -> Path:
    """Mean score by formula length, with the q1..q3 band and the max, as a PNG (PIL only)."""
    from PIL import Image, ImageDraw

    points = [r for r in rows if r["part"] == "length"]
    w, h = size
    left, right, top, bottom = 56, 16, 28, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    hi = max([r["max"] or 0 for r in points] + [1e-9])
    top_value = min(1.0, float(np.ceil(hi * 10) / 10)) or 0.1

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (w - left - right) * ((i + 0.5) / max(len(points), 1))
        return x, top + (h - top - bottom) * (1 - v / top_value)

    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for k in range(6):
        v = top_value * k / 5
        _, y = xy(0, v)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{v:.2f}", fill="black")
    for i, r in enumerate(points):
        x, _ = xy(i, 0)
        (_, y1), (_, y3) = xy(i, r["q1"]), xy(i, r["q3"])
        draw.rectangle([x - 10, y3, x + 10, y1], fill=(200, 215, 240), outline=(60, 90, 160))
        _, ym = xy(i, r["max"])
        draw.line([(x - 6, ym), (x + 6, ym)], fill=(60, 90, 160))
        draw.text((x - 4, h - bottom + 6), r["name"], fill="black")
    means = [xy(i, r["mean"]) for i, r in enumerate(points)]
    if len(means) > 1:
        draw.line(means, fill=(200, 40, 40), width=2)
    for x, y in means:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(200, 40, 40))
    draw.text((left, 8), title or "mean best score by formula length (box: q1..q3, tick: max)", fill="black")
    draw.text((w // 2 - 40, h - 18), "formula length", fill="black")
    path = Path(path)
    img.save(path, format="PNG")
    return path
