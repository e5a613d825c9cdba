"""Metrics that rank positions by a unit's activation: AUROC, Mann-Whitney p-value, AUPRC (SPEC section 7).

Definitions (INVERT, Bykov et al. 2023; NeuronEval): the positives are the
positions where the formula F holds, every position is scored by the unit's
activation there, and

* ``auroc`` = P(a random position of F outranks a random one outside F), ties
  counted half: (R - P (P + 1) / 2) / (P Q), with R the sum of the midranks
  (1-based, ascending activation) of F's P positions and Q = N - P. It equals
  scikit-learn's ``roc_auc_score(F, a)``. With P = 0 or Q = 0 it is 0 (a
  zero denominator gives 0, as for the count metrics).
* ``p_value``: one-sided Mann-Whitney U test that the activation is higher
  inside F, by the normal approximation with tie correction and continuity
  correction, as ``scipy.stats.mannwhitneyu(inside, outside,
  alternative='greater', method='asymptotic')``; 1 when P or Q is 0.
* ``auprc``: average precision, sum over distinct activation thresholds
  (descending) of (recall step) x precision, as scikit-learn's
  ``average_precision_score(F, a)``; 0 when F is empty.

Doubled midranks are integers, so R is kept as the exact integer 2R: a sum
of them over positions (``rank_sums``) is exact in float64 while N (N + 1)
stays below 2**53 (N below 94 million), and a formula's 2R is a linear
function of its signature mask, so beam search scores AUROC with the same
kernels it uses for |M AND F| (the unit's "histogram" holds 2R per signature).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np


@dataclass(frozen=True)
class Ranking:
    """A unit's activations over the N positions, sorted once; every formula is then O(N) or O(S)."""

    order: np.ndarray      # int64 [N]: positions by ascending activation (equal ones in any order: every
                           # result depends only on the groups of equal values)
    rank2: np.ndarray      # int64 [N]: twice the 1-based midrank of each sorted position
    ends: np.ndarray       # int64 [G]: one past the last sorted index of each group of equal activations
    tie_term: float        # sum over groups of t**3 - t
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> "Ranking":
        values = np.asarray(values)
        order = np.argsort(values, kind="quicksort")  # twice as fast as a stable sort; ties are grouped below
        ordered = values[order]
        ends = np.concatenate([np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, [len(values)]]).astype(np.int64)
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        sizes = ends - starts
        rank2 = np.repeat(starts + ends + 1, sizes)  # group i..j-1 (0-based): midrank (i + 1 + j) / 2
        t = sizes.astype(np.float64)
        return cls(order, rank2.astype(np.int64), ends, float(np.sum(t ** 3 - t)), len(values))

    def rank_sums(self, position_sig: np.ndarray, n_signatures: int) -> np.ndarray:
        """float64 [S]: 2R per signature (each position's doubled midrank, summed by its signature); exact."""
        return np.bincount(np.asarray(position_sig[self.order], dtype=np.int64), weights=self.rank2,
                           minlength=n_signatures)

    def average_precision(self, positive: np.ndarray) -> float:
        """AUPRC of the bool [N] positions (in position order), as scikit-learn's average_precision_score."""
        hits = np.asarray(positive, dtype=bool)[self.order][::-1]  # descending activation
        total = int(hits.sum())
        if total == 0:
            return 0.0
        ends = (self.n - self.ends[::-1])[1:]                      # group ends in the descending order
        ends = np.concatenate([ends, [self.n]]).astype(np.int64)
        tps = np.cumsum(hits, dtype=np.int64)[ends - 1]
        precision = tps / ends
        recall_step = np.diff(np.concatenate([[0], tps])) / total
        return float(np.sum(recall_step * precision))


def p_value(rank2_sum: float, p: int, n: int, tie_term: float) -> float:
    """One-sided Mann-Whitney p-value (activation higher inside F), as scipy's asymptotic method."""
    q = n - p
    if p == 0 or q == 0:
        return 1.0
    u = rank2_sum / 2 - p * (p + 1) / 2
    variance = p * q / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:  # every activation equal: no evidence either way
        return 1.0
    z = (u - p * q / 2 - 0.5) / math.sqrt(variance)
    return min(1.0, max(0.0, 0.5 * math.erfc(z / math.sqrt(2))))


__all__ = ["Ranking", "p_value"]
