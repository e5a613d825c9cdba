"""What statements return: plain data (the progress protocol is :mod:`cxql.progress`).

Kept apart from the engine so that renderers, the shell and the statement
handlers can all speak about results without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import QueryError
from .progress import Progress, Quiet  # noqa: F401  (re-exported: the protocol lives in cxql.progress)


@dataclass
class Result:
    """One statement's answer: rows of plain values, plus a message for the people reading."""

    statement: str
    kind: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    #: Where the numbers come from (store, layer, threshold, metric, cxql version), set by the
    #: session that ran the statement, so exports can say it (:data:`CONTEXT_KEYS`).
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"statement": self.statement, "kind": self.kind, "columns": self.columns,
                "rows": self.rows, "message": self.message, "context": self.context}


#: The keys of :attr:`Result.context`, in the order exports write them.
CONTEXT_KEYS = ("cxql_version", "store", "layer", "threshold", "metric")


def order_rows(rows: list[dict[str, Any]], column: str, descending: bool, columns: list[str],
               what: str) -> list[dict[str, Any]]:
    """Rows sorted by ``column`` (``ORDER BY column [DESC]``), stably, so ties keep their order; None last."""
    if column not in columns:
        raise QueryError(f"cannot order {what} by {column!r}; columns: {', '.join(columns)}", needle=column)
    present = [r for r in rows if r.get(column) is not None]
    return sorted(present, key=lambda r: r[column], reverse=descending) + [r for r in rows if r.get(column) is None]
