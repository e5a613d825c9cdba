"""The one place that formats results: Rich tables, JSON, JSON lines, CSV.

Results arrive as plain data (:class:`cxql.engine.Result`); this module turns
them into text for people (tables with IoU bars) or for programs (json,
jsonl, csv). The CLI and the shell both call :func:`render`.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Any, Iterable, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .grammar_terms import formula_keywords
from .metrics import METRICS
from .result import Result
from .version import __version__

FORMATS = ("table", "json", "jsonl", "csv")
#: Statements that change the session: their acknowledgement is no data row in jsonl or csv.
SILENT_IN_ROWS = ("set", "let")


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
    writer = ResultWriter(fmt, out, console)
    for r in results:
        writer.write(r)
    writer.close()


class ResultWriter:
    """Writes results one by one as statements finish, so a later error or Ctrl-C keeps the earlier ones.

    The machine formats carry where the numbers come from (each result's
    :attr:`~cxql.result.Result.context`: cxql version, store, layer,
    threshold, metric):

    * json: one object ``{"cxql_version", "store", "results": [...], "error"}``,
      each result with its ``context``; :meth:`close` ends it, so the text is
      valid JSON even after an error (``"error"`` holds its message) or an
      interrupt (``"interrupted"``).
    * jsonl: one object per data row, each with a ``context`` object (the
      above plus the ``statement``); SET and LET write no row.
    * csv: one table per statement: ``# key: value`` comment lines (the
      statement and its context), then the header and the rows; tables are
      separated by a blank line (``pandas.read_csv(path, comment="#")`` reads
      a one-statement file).
    """

    def __init__(self, fmt: str, out: TextIO, console: Console | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt, self.out = fmt, out
        self.console = console or (table_console(out) if fmt == "table" else None)
        self.count = 0  # results written
        self.tables = 0  # csv tables written
        self.closed = False
        self._started = False  # json: the opening written

    def write(self, result: Result) -> None:
        if self.fmt == "json":
            self._json_start(result.context)
            body = json.dumps(to_plain(result.to_json()), indent=2)
            self.out.write(("" if self.count == 0 else ",\n") + "\n".join("    " + line for line in body.splitlines()))
        elif self.fmt == "jsonl":
            if result.kind not in SILENT_IN_ROWS:
                context = {"statement": result.statement, **result.context}
                for row in result.rows:
                    self.out.write(json.dumps(to_plain({**row, "context": context})) + "\n")
        elif self.fmt == "csv":
            if result.kind not in SILENT_IN_ROWS:
                if self.tables:
                    self.out.write("\n")
                write_csv(result, self.out)
                self.tables += 1
        else:
            assert self.console is not None
            print_table(result, self.console)
        self.count += 1
        self.out.flush()

    def close(self, error: str | None = None) -> None:
        """Finish the output (the json object's closing brackets); ``error`` is recorded in json."""
        if self.closed:
            return
        self.closed = True
        if self.fmt == "json":
            self._json_start({})
            self.out.write(("\n" if self.count else "") + "  ],\n  \"error\": " + json.dumps(error) + "\n}\n")
            self.out.flush()

    def _json_start(self, context: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            head = {"cxql_version": context.get("cxql_version", __version__), "store": context.get("store")}
            self.out.write("{\n" + "".join(f"  {json.dumps(k)}: {json.dumps(v)},\n" for k, v in head.items())
                           + '  "results": [\n')


def table_console(out: TextIO) -> Console:
    """A console for tables: the terminal's width, or unbounded in pipes so formulas never wrap."""
    is_tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, highlight=False, soft_wrap=False, width=None if is_tty else 10_000)


def write_csv(result: Result, out: TextIO) -> None:
    """One statement's table: ``# key: value`` comment lines, a header, the rows; nested values as JSON text."""
    columns = list(dict.fromkeys(k for row in result.rows for k in row)) or list(result.columns)
    for key, value in {"statement": result.statement, **result.context}.items():
        out.write(f"# {key}: {' '.join(str(value).split())}\n")
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: json.dumps(to_plain(v)) if isinstance(v, (list, dict)) else v for k, v in row.items()})


def formula_text(formula: str) -> Text:
    """A formula with its operators highlighted."""
    text = Text(formula)
    text.highlight_words(sorted(formula_keywords()), style="bold magenta")
    text.highlight_regex(r"[()]", style="dim")
    return text


def score_column(result: Result) -> str:
    """The column of the metric the statement ranked by (``SET metric``; IoU for results without context)."""
    return result.context.get("metric") or "iou"


def iou_bar(value: float, width: int = 10, scale: float = 1.0) -> Text:
    """``0.123 ███▍`` with the bar scaled to a score of ``scale`` (1 by default) = full width."""
    full = max(0.0, min(1.0, value / scale if scale > 0 else 0.0)) * width
    blocks = "█" * int(full) + (" ▏▎▍▌▋▊▉"[int((full - int(full)) * 8)] if full < width else "")
    return Text(f"{value:.4f} ") + Text(blocks.rstrip(), style="green")


def cell(column: str, value: Any, score: str = "iou") -> Text | str:
    """One cell for people; ``score`` names the metric column, which gets a bar."""
    if column in ("formula",) and isinstance(value, str):
        return formula_text(value)
    if column == score and isinstance(value, float):
        return iou_bar(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return Text(str(value))  # Text, not str: a "[name]" in a cell is data, not Rich markup


def print_table(result: Result, console: Console) -> None:
    """One result as a Rich table, with its message under it (SET and LET: the message alone)."""
    if result.rows and not (result.kind in ("set", "let") and result.message):
        numeric = {c for c in result.columns
                   if all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in result.rows)}
        score = score_column(result)
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for c in result.columns:
            table.add_column(c, justify="right" if c in numeric and c != score else "left",
                             overflow="fold")
        for row in result.rows:
            table.add_row(*(cell(c, row.get(c), score) for c in result.columns))
        console.print(table)
    if result.message:
        console.print(Text(result.message, style="dim"))


# ---------------------------------------------------------------- for people at a terminal (the shell)


def print_results(results: list[Result], console: Console, fmt: str = "table", *, pager: bool = False) -> None:
    """Results as the shell shows them: tables with charts, paged when taller than the screen.

    Other formats (json, jsonl, csv) are written as :func:`render` writes them.
    """
    if fmt != "table":
        render(results, fmt, console.file, console)
        return

    def body() -> None:
        for r in results:
            print_table(r, console)
            print_by_length(r, console)

    if pager and console.is_terminal and sum(len(r.rows) + 2 for r in results) > console.height - 2:
        with console.pager(styles=True):
            body()
    else:
        body()


def by_length_chart(row: dict[str, Any], score: str = "iou") -> Table | None:
    """The best score (metric ``score``) at each formula length of one SEARCH row (its ``by_length``), as bars."""
    points = row.get("by_length") or []
    if len(points) < 2:
        return None
    top = max(p[score] for p in points) or 1.0
    label = METRICS[score].label if score in METRICS else score
    table = Table(title=f"unit {row.get('unit')}: best {label} by formula length", title_justify="left",
                  title_style="bold", show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("length", justify="right")
    table.add_column(score)
    table.add_column("formula", overflow="fold")
    for p in points:
        table.add_row(str(p["length"]), iou_bar(p[score], width=24, scale=top), formula_text(p["formula"]))
    return table


def print_by_length(result: Result, console: Console) -> None:
    """Under a one-unit SEARCH, how its best score grows with the formula length."""
    if result.kind != "search" or len(result.rows) != 1:
        return
    chart = by_length_chart(result.rows[0], score_column(result))
    if chart is not None:
        console.print()
        console.print(chart)


class LiveProgress:
    """The shell's :class:`cxql.progress.Progress`: a bar, and each unit's best formula as it lands.

    The engine reports ``advance(n, note)`` with notes like ``unit 3: (water OR
    river)``; the last few stay on screen under the bar until the statement
    ends. On a console that is not a terminal it shows nothing.
    """

    def __init__(self, console: Console, keep: int = 8) -> None:
        self.console = console
        self.keep = keep
        self._live: Live | None = None
        self._bar: Progress | None = None
        self._task: Any = None
        self._notes: list[str] = []

    def start(self, total: int, label: str) -> None:
        if not self.console.is_terminal:
            return
        self.finish()
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=self.console)
        self._task = self._bar.add_task(label, total=total)
        self._notes = []
        self._live = Live(self._view(), console=self.console, transient=True, refresh_per_second=10)
        self._live.start()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        if self._live is None or self._bar is None:
            return
        self._bar.advance(self._task, n)
        if note:
            self._notes = (self._notes + [note])[-self.keep:]
        self._live.update(self._view())

    def finish(self) -> None:
        if self._live is not None:
            self._live.stop()
        self._live = self._bar = None

    def _view(self) -> RenderableType:
        notes = Table(box=None, show_header=False, pad_edge=False)
        notes.add_column(style="dim")
        notes.add_column()
        for note in self._notes:
            head, sep, formula = note.partition(": ")
            if not sep:
                head, formula = "", note
            notes.add_row(head, formula_text(formula))
        return Group(self._bar, notes) if self._notes else Group(self._bar)
