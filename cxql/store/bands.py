"""Activation bands and clusters: a unit's mask as ``lower < activation <= upper`` (SPEC section 7).

The default mask ``activation > T_u`` is the band ``(T_u, +inf)``. A band
rule picks both ends per unit:

* ``quantile:a..b`` (0 <= a < b <= 1): ``(Q_u(a), Q_u(b)]`` with Q_u the exact
  quantile of the unit's raw activations (numpy's linear method, as the
  default threshold); level 0 is -inf and level 1 is +inf, so the top band
  ``quantile:0.995..1`` gives exactly the default masks;
* ``value:a..b`` (a < b): ``(a, b]`` for every unit;
* ``cluster:k/n`` (1 <= k <= n): the k-th of n clusters of the unit's
  positive (non-zero, for ReLU units) raw activations, found by 1-D k-means
  as Clustered Compositional Explanations do. Deterministic: no random seed;
  centres start at the quantiles (i + 0.5) / n of the values and Lloyd's
  iterations run on the sorted values (exact cumulative sums) until no
  assignment changes (at most 300). Clusters are numbered by centre,
  ascending (k = 1 is the lowest, k = n the highest activations). In 1-D every
  cluster is an interval, so cluster k is the band ``(e_{k-1}, e_k]`` with
  e_0 = 0, e_n = +inf and e_i the midpoint of centres i and i+1 (a value on a
  midpoint goes to the lower cluster).

Bands, like thresholds, are compared with the values a mask is made from:
upsampled maps for spatial layers.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

MAX_ITERATIONS = 300
#: The most clusters 'cluster:k/n' may ask for (1-D k-means keeps n centres per unit; CCE uses a handful).
MAX_CLUSTERS = 1000


def parse_band(text: str, spec: object) -> tuple[float, float]:
    """'a..b' -> (a, b), refusing what is not two numbers with a < b."""
    low, _, high = text.partition("..")
    try:
        a, b = float(low), float(high)
    except ValueError:
        raise DataError(f"threshold {spec!r}: a band is 'LOW..HIGH' with two numbers") from None
    if np.isnan(a) or np.isnan(b):
        raise DataError(f"threshold {spec!r}: a band's ends must be numbers, not NaN")
    if a >= b:
        raise DataError(f"threshold {spec!r}: the band's lower end {a:g} must be below its upper end {b:g}")
    return a, b


def parse_cluster(text: str, spec: object) -> tuple[int, int]:
    """'k/n' -> (k, n), refusing a k outside 1..n."""
    k_text, _, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise DataError(f"threshold {spec!r}: a cluster is 'cluster:K/N', e.g. 'cluster:2/5'") from None
    if not 1 <= n <= MAX_CLUSTERS:
        raise DataError(f"threshold {spec!r}: the number of clusters must be 1..{MAX_CLUSTERS}, got {n}")
    if not 1 <= k <= n:
        raise DataError(f"threshold {spec!r}: cluster index {k} is out of range; clusters are numbered 1..{n} "
                        "by centre, lowest first")
    return k, n


def kmeans_1d(values: np.ndarray, n: int) -> np.ndarray:
    """float64 [n]: the ascending centres of n clusters of ``values`` (see the module docstring)."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if not len(x):
        return np.full(n, np.inf)
    cums = np.concatenate([[0.0], np.cumsum(x)])
    centres = np.quantile(x, (np.arange(n) + 0.5) / n)
    cuts = None
    for _ in range(MAX_ITERATIONS):
        edges = (centres[:-1] + centres[1:]) / 2
        new_cuts = np.searchsorted(x, edges, side="right")  # a value on a midpoint goes to the lower cluster
        if cuts is not None and np.array_equal(new_cuts, cuts):
            break
        cuts = new_cuts
        starts, stops = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(x)]])
        sizes = stops - starts
        filled = sizes > 0
        centres = centres.copy()
        centres[filled] = (cums[stops] - cums[starts])[filled] / sizes[filled]  # empty clusters keep their centre
        centres = np.sort(centres)
    return centres


def cluster_band(values: np.ndarray, k: int, n: int) -> tuple[float, float]:
    """(lower, upper) of cluster k of n of the positive ``values``."""
    positive = np.asarray(values, dtype=np.float64)
    positive = positive[positive > 0]
    if not len(positive):
        return np.inf, np.inf  # no positive activation: every cluster is empty
    centres = kmeans_1d(positive, n)
    edges = np.concatenate([[0.0], (centres[:-1] + centres[1:]) / 2, [np.inf]])
    return float(edges[k - 1]), float(edges[k])


def quantile_ends(block: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``block`` [units, values]: (Q(a), Q(b)) with level 0 -> -inf and 1 -> +inf."""
    rows = block.shape[0]
    low = np.full(rows, -np.inf) if a <= 0 else np.quantile(block, a, axis=1)
    high = np.full(rows, np.inf) if b >= 1 else np.quantile(block, b, axis=1)
    return low, high
