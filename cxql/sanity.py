"""Sanity checks of an explanation, after NeuronEval (ICML 2025): does it beat two controls?

An explanation (formula F for unit u) scores ``s`` in the session's metric.
It should explain *this* unit with *this* concept, so it is compared with

* **a random unit**: F scored against another unit v of the layer, chosen by
  ``numpy.random.default_rng([SEED, u])`` uniformly among the other units
  (deterministic; no control when the layer has one unit);
* **a shuffled concept**: F's mask with its samples permuted (the same
  generator; each image keeps its own shape, but lands on another image),
  scored against u. Stores whose samples differ in size permute positions.

The explanation passes when ``s`` is above both control scores. A metric
that is high for a random unit (recall of a huge formula, say) or for a
shuffled concept (a formula that covers most positions) fails, which is
NeuronEval's point: recall and AUROC alone can look good without explaining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import syntax as s
from .statements import unit_intersections

if TYPE_CHECKING:
    from .context import StatementContext as Session

SEED = 14


@dataclass(frozen=True)
class Sanity:
    """One explanation's score and its two controls."""

    score: float
    random_unit: int | None          # the control unit (None: the layer has one unit)
    random_unit_score: float | None
    shuffled_score: float

    @property
    def passes(self) -> bool:
        return self.score > max(self.shuffled_score, self.random_unit_score or 0.0)

    def verdict(self) -> str:
        """'passes', or what the explanation does not beat."""
        fails = []
        if self.random_unit_score is not None and self.score <= self.random_unit_score:
            fails.append(f"no better on unit {self.random_unit} ({self.random_unit_score:.4f})")
        if self.score <= self.shuffled_score:
            fails.append(f"no better with its samples shuffled ({self.shuffled_score:.4f})")
        return "passes" if not fails else "fails: " + "; ".join(fails)


def check(session: Session, unit: int, formula: s.Formula) -> Sanity:
    """Score ``formula`` for ``unit`` and against both controls, in the session's metric."""
    backend, store, metric = session.backend, session.store, session.metric
    mask = backend.formula_mask(session.formula_plan(formula))
    sig_mask, size, n = mask.cpu().numpy(), backend.formula_size(mask), store.n_positions
    rng = np.random.default_rng([SEED, unit])
    others = [v for v in range(session.layer().n_units) if v != unit]
    other = int(rng.choice(others)) if others else None
    positions = np.asarray(sig_mask, dtype=bool)[np.asarray(store.position_signatures[:], dtype=np.int64)]
    shuffled = shuffle_samples(positions, store.sample_offsets, rng)
    if metric.needs_activations:
        source = session.activation_source()
        score_of = lambda u: source.scores(u, sig_mask, size, positions)["auroc"]  # noqa: E731
        ranking = source.ranking(unit)
        rank2 = np.empty(n, dtype=np.int64)
        rank2[ranking.order] = ranking.rank2
        shuffled_score = float(metric(int(rank2[shuffled].sum()), size, 0, n))
    else:
        inters, sizes = unit_intersections(session, sig_mask)
        score_of = lambda u: float(metric(int(inters[u]), size, int(sizes[u]), n))  # noqa: E731
        active = session.unit_positions(unit)
        shuffled_score = float(metric(int(shuffled[active].sum()), size, len(active), n))
    return Sanity(score_of(unit), other, None if other is None else score_of(other), shuffled_score)


def shuffle_samples(positions: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool [N]: the mask with whole samples permuted when they are all one size, else positions permuted."""
    sizes = np.diff(offsets)
    if len(sizes) > 1 and np.all(sizes == sizes[0]):
        return positions.reshape(len(sizes), -1)[rng.permutation(len(sizes))].reshape(-1)
    return positions[rng.permutation(len(positions))]


__all__ = ["SEED", "Sanity", "check", "shuffle_samples"]
