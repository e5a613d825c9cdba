"""The one place that formats results: Rich tables, JSON, JSON lines, CSV.

Results arrive as plain data (:class:`cxql.engine.Result`); this module turns
them into text for people (tables with IoU bars) or for programs (json,
jsonl, csv). The CLI and the shell both call :func:`render`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .engine import Result

FORMATS = ("table", "json", "jsonl", "csv")


def to_plain(value: Any) -> Any:
    """A value JSON can hold (numpy scalars and tuples included)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return value.item()
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def render(results: Iterable[Result], fmt: str, out: TextIO, console: Console | None = None) -> None:
    """Write results to ``out`` in format ``fmt`` (one of FORMATS)."""
    if fmt == "json":
        json.dump([to_plain(r.to_json()) for r in results], out, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for r in results:
            for row in r.rows:
                out.write(json.dumps(to_plain(row)) + "\n")
    elif fmt == "csv":
        for r in results:
            write_csv(r, out)
    else:
        console = console or Console(file=out, highlight=False, soft_wrap=False)
        for r in results:
            print_table(r, console)


def write_csv(result: Result, out: TextIO) -> None:
    """Rows as CSV with a header; nested values (by_length) as JSON text."""
    if not result.rows:
        return
    columns = list(dict.fromkeys(k for row in result.rows for k in row))
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: json.dumps(to_plain(v)) if isinstance(v, (list, dict)) else v for k, v in row.items()})


def csv_text(result: Result) -> str:
    buf = io.StringIO()
    write_csv(result, buf)
    return buf.getvalue()


def formula_text(formula: str) -> Text:
    """A formula with its operators highlighted."""
    text = Text(formula)
    text.highlight_words(["AND", "OR", "NOT", "NEIGHBORS"], style="bold magenta")
    text.highlight_regex(r"[()]", style="dim")
    return text


def iou_bar(value: float, width: int = 10) -> Text:
    """``0.123 ███▍`` with the bar scaled to IoU 1 = full width."""
    full = max(0.0, min(1.0, value)) * width
    blocks = "█" * int(full) + (" ▏▎▍▌▋▊▉"[int((full - int(full)) * 8)] if full < width else "")
    return Text(f"{value:.4f} ") + Text(blocks.rstrip(), style="green")


def cell(column: str, value: Any) -> Text | str:
    if column in ("formula",) and isinstance(value, str):
        return formula_text(value)
    if column == "iou" and isinstance(value, float):
        return iou_bar(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def print_table(result: Result, console: Console) -> None:
    """One result as a Rich table, with its message under it."""
    if result.rows:
        numeric = {c for c in result.columns
                   if all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in result.rows)}
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for c in result.columns:
            table.add_column(c, justify="right" if c in numeric and c != "iou" else "left",
                             overflow="fold")
        for row in result.rows:
            table.add_row(*(cell(c, row.get(c)) for c in result.columns))
        console.print(table)
    if result.message:
        console.print(Text(result.message, style="dim"))
