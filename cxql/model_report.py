"""The report's model sections: the layer summary figure and, for the last layer, class contributions.

Kept out of :mod:`cxql.report` (which draws units) so that page stays one
responsibility; :func:`sections` returns HTML and writes the figure beside it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import model as cm
from .errors import CxqlError

if TYPE_CHECKING:
    from .engine import Session


def _table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="s"><tr>{head}</tr>{body}</table>'


def _copy_paste(session: "Session", per_class_rows: list[dict[str, Any]], out: Path, safe: str) -> list[str]:
    from .paste_report import COLUMNS, copy_paste

    rows, grids = copy_paste(session.store, per_class_rows, out, safe)
    if not rows:
        return []
    note = ("Each class's top units name the concept; it is pasted from random donors of other classes into "
            "correctly read images of each other class (up to 10, seed 0), against as many of the donor's "
            "pixels at random positions. to_class: share now predicted as the class.")
    imgs = "".join(f'<p><img src="{html.escape(g)}" alt="victim, donor, pasted; before -> after"></p>'
                   for g in grids)
    return ["<h2>Copy-paste examples</h2>", f'<p class="m">{note}</p>', _table(COLUMNS, rows), imgs]


def sections(session: "Session", layer: str, formulas: dict[int, str], out: Path, length: int = 3) -> str:
    """HTML for the layer summary (PNG written to ``out/LAYER_summary.png``) and class contributions."""
    from .contributions import contributions
    from .summary import COLUMNS, plot_png
    from . import syntax as s

    safe = layer.replace("/", "_")
    result = session.execute(f"SUMMARY LAYER {s.format_name(layer)} LENGTH {int(length)}")
    plot_png(result.rows, out / f"{safe}_summary.png", title=f"{layer}: mean best IoU by formula length")
    parts = [f'<h2>Layer summary</h2><p><img src="{html.escape(safe)}_summary.png" alt="mean IoU by length"></p>',
             f'<p class="m">{html.escape(result.message or "")}</p>', _table(COLUMNS, result.rows)]
    if cm.has_model(session.store):
        try:
            per_class, per_unit = contributions(session.store, layer, formulas)
        except CxqlError:
            return "".join(parts)  # this layer does not feed the output: nothing to show
        parts += ["<h2>Class contributions</h2>", _table(per_class.columns, per_class.rows),
                  "<h2>Units and the classes they favour</h2>", _table(per_unit.columns, per_unit.rows)]
        parts += _copy_paste(session, per_class.rows, out, safe)
    return "".join(parts)
