"""What a statement handler may use of the session: a typed, public view.

Statement handlers (:mod:`cxql.statements`, :mod:`cxql.introspect`) take a
:class:`StatementContext` rather than :class:`cxql.engine.Session`, so they
import nothing from the engine (the engine imports them: data flows one way)
and touch no private field. :class:`~cxql.engine.Session` implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import syntax as s
from .cancel import CancelToken
from .metrics import Metric
from .result import Progress

if TYPE_CHECKING:  # torch loads with the first statement that computes
    import torch

    from .activation_source import ActivationSource
    from .backend import Backend
    from .compiler import Compiler, Plan, Resolver
    from .searcher import SearchContext, Searcher
    from .store import ConceptStore, Layer


class StatementContext(Protocol):
    store: ConceptStore
    settings: dict[str, Any]
    lets: dict[str, s.Formula]
    progress: Progress
    token: CancelToken
    resolver: Resolver
    compiler: Compiler

    @property
    def backend(self) -> Backend: ...
    @property
    def metric(self) -> Metric: ...
    def layer(self) -> Layer: ...
    def units(self, selection: s.Units) -> list[int]: ...
    def unit_histograms(self) -> tuple[np.ndarray, ...]: ...
    def unit_positions(self, u: int) -> np.ndarray: ...
    def unit_hist(self, u: int) -> torch.Tensor: ...
    def formula_plan(self, formula: s.Formula) -> Plan: ...
    def forget_plans(self) -> None: ...
    def search_context(self, within: float | None = None, units: list[int] | None = None) -> SearchContext: ...
    def activation_source(self) -> ActivationSource: ...
    def searcher(self, name: str | None = None) -> Searcher: ...


__all__ = ["StatementContext"]
