"""Searchers: the algorithms behind SEARCH, behind one small interface, found by name.

A searcher gets a :class:`SearchContext` (what it may read: the store on
its device through the backend, the units' signature histograms under the
session's threshold, the metric to maximise, the memory limit, the
statement's cancel token and a progress sink) and never the session, so data
flows one way: the statement builds the context, the searcher returns
:class:`~cxql.search.SearchResult` objects, the statement makes rows.

The registry maps a name to ``module:Class``, imported on first use (torch
loads when a SEARCH runs, not at start-up), so adding a searcher is a file
with a class and a line here (docs/architecture.md has a worked example).
``SET engine`` chooses among the beam searchers in :data:`ENGINES`.

A searcher's contract: results for the units it finished, in unit order,
equal to what the per-unit reference (``plain``) finds for the same
metric; on cancel, the units finished so far and no partial unit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import syntax as s
from .cancel import CancelToken
from .errors import NameResolutionError, did_you_mean
from .metrics import IOU, Metric
from .result import Progress, Quiet

if TYPE_CHECKING:  # torch loads with the first SEARCH
    import torch

    from .backend import Backend
    from .compiler import Resolver

Hists = tuple[np.ndarray, np.ndarray, np.ndarray]  # per-unit signature histograms (CSR: indptr, sig, count)


@dataclass(frozen=True)
class Scored:
    """A formula with its exact counts against one unit."""

    formula: s.Formula
    inter: int  # |M AND F|
    size: int   # |F|
    score: float  # the search metric's value (IoU unless SET metric says otherwise)

    @property
    def length(self) -> int:
        return s.length(self.formula)


@dataclass
class SearchResult:
    unit: int
    mask_size: int
    best: Scored | None
    beam: list[Scored]
    by_length: dict[int, Scored] = field(default_factory=dict)
    optimal: bool | None = None  # exact searchers: proven best in their space
    bound: float | None = None   # exact searchers: >= every formula's score in their space


def unit_note(r: SearchResult) -> str:
    """``unit 3: (water OR river)``: a progress note for a finished unit."""
    return f"unit {r.unit}: {r.best.formula if r.best else 'NONE'}"


@dataclass(frozen=True)
class SearchContext:
    """Everything a searcher may read, typed; built per statement by the session."""

    backend: "Backend"        # the store's concept table on a device, in chunks of chunk_bytes
    resolver: "Resolver"      # concept display names
    hists: Hists              # the unit source: per-unit signature histograms under the threshold
    metric: Metric = IOU
    memory_limit: int = 1 << 62
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: Progress = field(default_factory=Quiet)
    within: float | None = None  # seconds for the whole search (SEARCH ... EXACT WITHIN t s)
    workers: int | None = 1      # processes SEARCH ... EXACT may use (None: one per core; SET workers)

    @property
    def n_signatures(self) -> int:
        return int(self.backend.bits.shape[0])

    def unit_hist(self, u: int) -> "torch.Tensor":
        """Unit u's signature histogram as a dense float64 vector on the device."""
        indptr, sig, cnt = self.hists
        a, b = int(indptr[u]), int(indptr[u + 1])
        return self.backend.hist_vector(sig[a:b], cnt[a:b])


class Searcher(Protocol):
    """What SEARCH needs from an algorithm."""

    name: str

    def supports(self, ctx: SearchContext) -> bool:
        """Whether this searcher can run on ``ctx`` (else the session falls back to ``plain``)."""

    def estimate_bytes(self, ctx: SearchContext, units: list[int], beam: int) -> int:
        """Peak bytes a search of ``units`` would allocate, checked against ``memory_limit`` first."""

    def search(self, ctx: SearchContext, units: list[int], *, length: int, beam: int,
               distinct: bool) -> list[SearchResult]:
        """Results for the units finished (all of them unless ``ctx.cancel`` was cancelled)."""

    def describe(self, ctx: SearchContext, length: int, beam: int) -> list[str]:
        """EXPLAIN's lines for this searcher's plan."""


#: name -> "module:Class"; a class is instantiated without arguments.
SEARCHERS: dict[str, str] = {
    "batched": "cxql.batched_searcher:BatchedSearcher",
    "plain": "cxql.search:PlainSearcher",
    "exact": "cxql.exact_search:ExactSearcher",
}

#: The names ``SET engine`` accepts (beam searchers; others are chosen by syntax, e.g. EXACT).
ENGINES: tuple[str, ...] = ("batched", "plain")

_loaded: dict[str, Any] = {}


def register(name: str, target: "str | type", *, engine: bool = False) -> None:
    """Add a searcher under ``name``: ``"module:Class"`` (imported on first use) or the class itself.

    ``engine``: selectable with ``SET engine``.
    """
    global ENGINES
    SEARCHERS[name] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    _loaded.pop(name, None)
    if not isinstance(target, str):
        _loaded[name] = target()
    if engine and name not in ENGINES:
        ENGINES = ENGINES + (name,)


def unregister(name: str) -> None:
    """Remove a searcher added with :func:`register` (tests, plug-ins unloading)."""
    global ENGINES
    SEARCHERS.pop(name, None)
    _loaded.pop(name, None)
    ENGINES = tuple(e for e in ENGINES if e != name)


def get(name: str) -> Searcher:
    """The searcher registered as ``name``, imported and instantiated once."""
    if name not in SEARCHERS:
        raise NameResolutionError(f"unknown search engine {name!r}", needle=name,
                                  hint=did_you_mean(name, SEARCHERS) or "engines: " + ", ".join(SEARCHERS))
    if name not in _loaded:
        module, _, cls = SEARCHERS[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


__all__ = ["ENGINES", "SEARCHERS", "Scored", "SearchContext", "SearchResult", "Searcher", "get", "register",
           "unit_note", "unregister"]
