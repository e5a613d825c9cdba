"""Sessions: statements in, :class:`Result` data out (never printed here).

A :class:`Session` holds one open store, the LET names and SET settings, and
runs statements through the compiler, the backend kernels and beam search.
The CLI, the shell and the Python API all call :meth:`Session.execute`, and
all formatting happens in :mod:`cxql.render`, so every front end shows the
same numbers.

Torch and the computing modules (statements, search, backend) are imported
when the first statement runs, not when a session opens: ``cxql --help``, a
store's start-up and the shell's prompt do not wait for torch (issue 11).
The shell warms them up in a background thread (:func:`warm_up`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from . import memory, metrics
from .activation_source import ActivationSource
from . import searcher as searchers
from . import syntax as s
from .cancel import Cancelled, CancelToken
from .compiler import Compiler, Plan, Resolver
from .errors import CxqlError, NameResolutionError, QueryError, UsageError
from .parser import parse_with_spans
from .result import Progress, Quiet, Result
from .settings import defaults
from .store import ConceptStore, Layer, Threshold
from .store import units as un
from .version import __version__

if TYPE_CHECKING:  # torch and the modules that compute load on first use (start-up time)
    import torch

    from .backend import Backend


def connect(store: "str | Path | ConceptStore") -> "Session":
    """A session on a store (a path to open, or a store object)."""
    if not isinstance(store, ConceptStore):
        store = ConceptStore.open(store)
    return Session(store)


def open_session(store: "str | None", device: "str | None" = None) -> "Session":
    """A session on a STORE argument as the command line gives it (a path, ``demo`` or None), on ``--device``.

    A missing store or an unusable device is a usage error naming the option
    the user typed, never a caret into a SET statement they did not write.
    """
    from .resources import locate_store
    from .settings import check_setting

    session = connect(locate_store(store))
    if device:
        try:
            session.settings["device"] = check_setting("device", device)
        except CxqlError as exc:
            raise UsageError(f"--device {device}: {exc.message}") from None
    return session


class Session:
    def __init__(self, store: ConceptStore) -> None:
        self.store = store
        self.settings: dict[str, Any] = defaults()
        self.lets: dict[str, s.Formula] = {}
        self.progress: Progress = Quiet()
        #: The running statement's cancel token (a fresh one per statement; see :meth:`run`).
        self.token = CancelToken()
        self.resolver = Resolver(store.concepts)
        self.compiler = Compiler(self.resolver, self.lets, neighbors=_neighbors_provider(store))
        self._backend: Backend | None = None
        self._unit_cache: dict[tuple[str, str], tuple[un.UnitMasks, tuple[np.ndarray, ...]]] = {}
        self._activations: ActivationSource | None = None

    # ------------------------------------------------------------ entry points

    def execute(self, text: str) -> Result:
        """Run every statement of ``text``; return the last one's result."""
        results = list(self.stream(text))
        if not results:
            raise QueryError("nothing to run: the query is empty")
        return results[-1]

    def stream(self, text: str, token: CancelToken | None = None) -> Iterator[Result]:
        """Run the statements of ``text`` one by one, yielding each result as it is ready.

        With ``token``, every statement runs under it, so one cancel stops the one
        running and no later one starts (the shell's Ctrl-C); else each gets its own.
        """
        for statement, span in parse_with_spans(text):
            if token is not None and token.cancelled:
                return
            try:
                yield self.run(statement, token)
            except CxqlError as exc:
                raise exc.locate(text, span) from None

    def run(self, statement: s.Statement, token: CancelToken | None = None) -> Result:
        """Run one parsed statement under ``token`` (a fresh one when None).

        A statement that stops on :class:`Cancelled` with nothing to show returns a
        result saying so; its half-done work (a re-thresholded layer) is not kept.
        """
        self.token = token if token is not None else CancelToken()
        handler = _handlers()[type(statement)]
        if isinstance(statement, (s.FormulaStmt, s.Eval, s.Match, s.Search, s.Explain)):
            from . import sequence  # PREV/NEXT/WITHIN and USING run on a derived store

            if sequence.uses_sequence(statement, self.compiler.canonical):
                handler = sequence.run
        try:
            result = handler(self, statement)
        except Cancelled as exc:
            result = Result(str(statement), "cancelled", [], [], exc.message)
        result.context = self.context()
        return result

    def context(self) -> dict[str, Any]:
        """What an exported result needs to be read later: store, layer, threshold, metric, cxql version."""
        layer = self.settings["layer"] or next(iter(self.store.layers), None)
        threshold = None
        if layer in self.store.layers:
            rule = self.store.layers[layer].threshold
            override = self.settings["threshold"]
            try:
                threshold = str(rule if override is None else Threshold.parse(override, self.store.default_threshold()))
            except CxqlError:
                threshold = str(override)
        return {"cxql_version": __version__, "store": str(self.store.path) if self.store.path else None,
                "layer": layer, "threshold": threshold, "metric": self.settings["metric"]}

    def cancel(self) -> None:
        """Ask the running statement to stop after its current step (see :mod:`cxql.cancel`)."""
        self.token.cancel()

    @property
    def metric(self) -> metrics.Metric:
        """What SEARCH maximises and MATCH ranks by (``SET metric``)."""
        return metrics.get(self.settings["metric"])

    # ------------------------------------------------------------ shared pieces

    @property
    def backend(self) -> Backend:
        import torch

        from .backend import Backend

        chunk = int(self.settings["chunk_mb"]) << 20
        device = self.settings["device"]
        if self._backend is None or str(self._backend.device) != str(torch.device(device)) \
                or self._backend.chunk_bytes != chunk:
            self._backend = Backend(self.store, device, chunk)
        return self._backend

    def layer(self) -> Layer:
        if not self.store.layers:
            raise QueryError("this store has no unit layers yet",
                             hint="attach one with: cxql units add STORE LAYER ACTIVATIONS.npy")
        name = self.settings["layer"] or next(iter(self.store.layers))
        if name not in self.store.layers:
            raise NameResolutionError(f"unknown layer {name!r}; layers: {', '.join(self.store.layers)}",
                                      needle=name)
        return self.store.layers[name]

    def units(self, selection: s.Units) -> list[int]:
        n = self.layer().n_units
        if selection.all:
            return list(range(n))
        out: list[int] = []
        for i, item in enumerate(selection.items):
            first, last = (item, item) if isinstance(item, int) else (item.first, item.last)
            span = selection.spans[i] if i < len(selection.spans) else None
            if first > last:
                raise QueryError(f"empty unit range {item}", needle=str(item)).at(span)
            if last >= n:
                raise NameResolutionError(f"unit {last} does not exist: layer {self.layer().name!r} "
                                          f"has units 0..{n - 1}", needle=str(last)).at(span)
            out.extend(range(first, last + 1))
        return list(dict.fromkeys(out))

    def unit_histograms(self) -> tuple[np.ndarray, ...]:
        """The current layer's per-unit signature histograms (CSR), under the session's threshold."""
        layer = self.layer()
        rethresholded = self._rethresholded(layer)
        if rethresholded is None:
            return layer.histograms  # checked against the masks on first use
        return rethresholded[1]

    def unit_positions(self, u: int) -> np.ndarray:
        """Sorted positions where unit u of the current layer fires, under the session's threshold."""
        layer = self.layer()
        rethresholded = self._rethresholded(layer)
        return layer.unit_positions(u) if rethresholded is None else rethresholded[0].unit(u)

    def _rethresholded(self, layer: Layer) -> tuple[un.UnitMasks, tuple[np.ndarray, ...]] | None:
        """(masks, histograms) under ``SET threshold`` (computed once per rule), or None for the store's own."""
        override = self.settings["threshold"]
        if override is None:
            return None
        rule = Threshold.parse(override, self.store.default_threshold())
        key = (layer.name, str(rule))
        if key not in self._unit_cache:
            if layer.activations is None:
                raise QueryError(f"layer {layer.name!r} keeps no activations, so its threshold is fixed",
                                 hint="SET threshold = 'default', or re-add the layer with its activations")
            thresholds, upper = un.unit_bands(layer.activations, rule)
            estimate = memory.rethreshold_bytes(layer.activations, thresholds, self.store.n_positions,
                                                un.BLOCK_BYTES)
            memory.check(estimate, self.settings["memory_limit"], f"unit masks of layer {layer.name!r} at "
                         f"threshold {rule}", hint="SET threshold = 'default' to use the store's masks")
            for stale in [k for k in self._unit_cache if k[0] == layer.name]:
                del self._unit_cache[stale]  # one threshold per layer at a time: the memory estimate holds
            what = f"re-thresholding layer {layer.name!r}"

            def step(n: int) -> None:  # after each block of samples: report, then stop if asked
                self.progress.advance(n)
                self.token.check(what)

            self.progress.start(self.store.n_samples, what)
            try:
                masks = self.store.unit_masks_for(layer.activations, thresholds, step, upper)
            finally:
                self.progress.finish()
            hists = un.histograms(masks, self.store.position_signatures)
            self.token.check(what)
            self._unit_cache[key] = (masks, hists)  # only whole results are kept
        return self._unit_cache[key]

    def unit_hist(self, u: int) -> torch.Tensor:
        indptr, sig, cnt = self.unit_histograms()
        a, b = int(indptr[u]), int(indptr[u + 1])
        return self.backend.hist_vector(sig[a:b], cnt[a:b])

    def formula_plan(self, formula: s.Formula) -> Plan:
        return self.compiler.compile(formula)

    def forget_plans(self) -> None:
        """Drop compiled plans (a LET changed what a name means)."""
        self.compiler.clear()

    def search_context(self, within: float | None = None, units: list[int] | None = None) -> searchers.SearchContext:
        """What a searcher may read for this statement: a typed view, not the session.

        Under a metric that ranks by activation (AUROC), the histograms of ``units`` are their
        per-signature doubled rank sums (:mod:`cxql.activation_source`); without ``units``
        (memory estimates, EXPLAIN) they are the count histograms.
        """
        metric = self.metric
        hists = self.unit_histograms()
        if metric.needs_activations and units is not None:
            hists = self.activation_source().rank_hists(units)
        workers = self.settings["workers"]
        return searchers.SearchContext(self.backend, self.resolver, hists, metric,
                                       self.settings["memory_limit"], self.token, self.progress, within,
                                       None if workers == "auto" else workers)

    def activation_source(self) -> ActivationSource:
        """The current layer's activations ranked per unit (refused, saying how to add them, on masks-only layers)."""
        layer = self.layer()
        if self._activations is None or self._activations.layer is not layer:
            self._activations = ActivationSource(self.store, layer)
        return self._activations

    def searcher(self, name: str | None = None) -> searchers.Searcher:
        """The searcher ``name``, or ``SET engine``'s, falling back to ``plain`` where it cannot run."""
        chosen = searchers.get(name or self.settings["engine"])
        if name is None and not chosen.supports(self.search_context()):
            return searchers.get("plain")
        return chosen


@lru_cache(maxsize=1)
def _handlers() -> dict[type, Callable[[Session, Any], Result]]:
    """Statement type -> handler; importing the handlers imports torch, so not before the first statement."""
    from . import ablate, describe, introspect, summary
    from . import statements as st

    return {s.FormulaStmt: st.formula, s.Eval: st.evaluate, s.Search: st.search, s.Match: st.match,
            s.Let: st.let, s.Set: st.set_, s.Show: introspect.show, s.Explain: introspect.explain,
            s.Describe: describe.describe, s.Summary: summary.summary, s.Ablate: ablate.ablate}


def warm_up() -> None:
    """Import what statements need (torch above all), e.g. from a thread while a prompt waits for input."""
    _handlers()
    from . import backend, batched_searcher  # noqa: F401


def _neighbors_provider(store: ConceptStore):
    """NEIGHBORS support, when the store carries word vectors (text stores)."""
    try:
        from .text import neighbors_for  # noqa: WPS433 - optional, installed with text stores
    except ImportError:
        return None
    return neighbors_for(store)


__all__ = ["Result", "Session", "connect", "warm_up"]
