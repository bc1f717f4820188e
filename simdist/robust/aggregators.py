"""Robust aggregation rules: what every node applies to the n received vectors instead of their mean.

With f of the n nodes Byzantine (sending arbitrary vectors, possibly colluding and knowing every
honest gradient), the mean can be moved anywhere by one node. A robust rule bounds that influence:

* ``mean``: the plain average (the baseline; the engine's own mean, bit for bit).
* ``median``: the coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018).
* ``trimmed_mean``: per coordinate, drop the b = floor(beta n) largest and b smallest values and
  average the rest (Yin et al. 2018; beta >= f/n).
* ``krum``: Krum / Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017): score(i) =
  the sum of the squared distances from V_i to its n - f - 2 nearest other vectors; Krum returns the
  vector of least score, Multi-Krum (m > 1) the mean of the m vectors of least score. Needs n > 2f + 2.
* ``geometric_median``: the smoothed Weiszfeld iteration of RFA (Pillutla, Kakade, Harchaoui, 2019)
  for argmin_z sum_i ||z - V_i||.

Each rule is a frozen config registered by name (``make("krum", f=2)`` or ``make({"name": "krum",
"f": 2})``); :meth:`Aggregator.aggregate` takes the (n, d) float32/float64 matrix of received
vectors (finite) and returns the (d,) float64 aggregate. Ties (equal Krum scores) go to the lower
index, so every node computes the same aggregate.

Exact properties (tested, THEORY.md 9 [D]): with n - f honest vectors all equal to v, Krum and Multi-Krum
(n > 2f + 2, any m <= n - f) return v (an honest score is 0, a Byzantine vector other than v has at
least n - 2f - 1 >= 2 honest ones among its n - f - 2 nearest), the median returns v when n - f > n/2,
and the trimmed mean returns v when b >= f; the median and the trimmed mean (b >= f) always lie,
coordinate by coordinate, within the honest vectors' range.

Example:
    >>> import numpy as np
    >>> V = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [9e9, -9e9]])
    >>> make("krum", f=1).aggregate(V).tolist(), make("median").aggregate(V).tolist()
    ([1.0, 2.0], [1.0, 2.0])

References:
    P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS 2017 (Krum, Multi-Krum; Proposition 1).
    D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-Robust Distributed Learning: Towards
    Optimal Statistical Rates", ICML 2018 (coordinate-wise median and trimmed mean).
    K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust Aggregation for Federated Learning", 2019 (RFA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_float, check_int, check_matrix
from ..kernels.rows import mean_rows
from ..registry import Registry
from ._base import Named

__all__ = ["Aggregator", "Mean", "Median", "TrimmedMean", "Krum", "GeometricMedian", "make", "available", "register"]

REGISTRY = Registry("aggregator", "simdist.robust", ("aggregators",))
register = REGISTRY.register
available = REGISTRY.available


def make(spec, **params) -> "Aggregator":
    """Build an aggregator from a name and parameters, a config dict, or return an Aggregator as is.

    Example:
        >>> make({"name": "trimmed_mean", "beta": 0.2}).get_config()
        {'name': 'trimmed_mean', 'beta': 0.2}
    """
    return REGISTRY.build(spec, params, Aggregator)


class Aggregator(Named):
    """Base class: subclasses are frozen dataclasses with a class attribute ``name`` and ``_aggregate``."""

    name = ""

    def check_nodes(self, n: int) -> int:
        """Check that the rule is defined for ``n`` received vectors (ValueError naming n otherwise)."""
        return check_int("nodes", n, low=1)

    def aggregate(self, V) -> np.ndarray:
        """The (d,) float64 aggregate of the (n, d) float32/float64 finite matrix ``V`` (row i = node i's vector)."""
        V = check_matrix("V", V)
        self.check_nodes(V.shape[0])
        return self._aggregate(V)

    def _aggregate(self, V: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@register
@dataclass(frozen=True)
class Mean(Aggregator):
    """The average, rows added in order 0..n-1 in float64 then divided by n (the engine's mean)."""

    name = "mean"

    def _aggregate(self, V):
        out = np.empty(V.shape[1], np.float64)
        mean_rows(V, out)
        return out


@register
@dataclass(frozen=True)
class Median(Aggregator):
    """Coordinate-wise median (for even n, the float64 midpoint of the two middle values, exact)."""

    name = "median"

    def _aggregate(self, V):
        return np.median(V.astype(np.float64), axis=0)


@register
@dataclass(frozen=True)
class TrimmedMean(Aggregator):
    """Coordinate-wise beta-trimmed mean: drop the b = floor(beta n) largest and smallest values per
    coordinate, average the n - 2b others (``scipy.stats.trim_mean``). Tolerates f <= b Byzantine nodes.

    Args:
        beta: the fraction trimmed from each side, in [0, 0.5).
    """

    name = "trimmed_mean"
    beta: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "beta", check_float("beta", self.beta, low=0.0, high=0.5, high_open=True))

    def trimmed(self, n: int) -> int:
        """b = floor(beta n), the values dropped from each side of a coordinate."""
        return int(self.beta * n)

    def _aggregate(self, V):
        from scipy.stats import trim_mean

        return np.asarray(trim_mean(V.astype(np.float64), self.beta, axis=0), np.float64)


@register
@dataclass(frozen=True)
class Krum(Aggregator):
    """Krum (m = 1) and Multi-Krum (m > 1) for at most f Byzantine vectors among n > 2f + 2.

    Steps:
        1. D[i, j] = ||V_i - V_j||^2 for every pair (``scipy.spatial.distance.pdist``, exact differences).
        2. score(i) = the sum of the n - f - 2 smallest D[i, j], j != i.
        3. select the m indices of least score (ties: the lower index first);
        4. return their mean (rows in index order, float64); for m = 1 the selected vector itself.

    Squared distances underflow to 0 below about 1e-154: vectors closer than that count as equal.

    Args:
        f: the number of Byzantine vectors tolerated, >= 0 (n > 2f + 2 is required).
        m: how many vectors Multi-Krum averages, in [1, n - f].
    """

    name = "krum"
    f: int = 1
    m: int = 1

    def __post_init__(self):
        object.__setattr__(self, "f", check_int("f", self.f, low=0))
        object.__setattr__(self, "m", check_int("m", self.m, low=1))

    def check_nodes(self, n: int) -> int:
        n = check_int("nodes", n, low=1)
        if n <= 2 * self.f + 2:
            raise ValueError(f"krum with f={self.f} needs more than 2f + 2 = {2 * self.f + 2} nodes, got nodes={n}")
        if self.m > n - self.f:
            raise ValueError(f"m must be in [1, n - f] = [1, {n - self.f}] for krum with nodes={n}, f={self.f}, "
                             f"got m={self.m}")
        return n

    def scores(self, V) -> np.ndarray:
        """Step 2's scores of the rows of ``V`` (float64, shape (n,))."""
        from scipy.spatial.distance import pdist, squareform

        V = check_matrix("V", V)
        n = self.check_nodes(V.shape[0])
        D = squareform(pdist(V.astype(np.float64), "sqeuclidean"))
        np.fill_diagonal(D, np.inf)  # j != i
        near = n - self.f - 2
        return np.sort(D, axis=1)[:, :near].sum(axis=1)

    def select(self, V) -> np.ndarray:
        """Step 3: the m selected row indices, sorted."""
        s = self.scores(V)
        return np.sort(np.argsort(s, kind="stable")[: self.m])

    def _aggregate(self, V):
        sel = self.select(V)
        out = np.empty(V.shape[1], np.float64)
        mean_rows(np.ascontiguousarray(V[sel]), out)
        return out


@register
@dataclass(frozen=True)
class GeometricMedian(Aggregator):
    """The geometric median argmin_z sum_i ||z - V_i|| by RFA's smoothed Weiszfeld iteration:
    z <- sum_i w_i V_i / sum_i w_i with w_i = 1 / max(nu, ||z - V_i||), from the mean, until the
    objective improves by less than ``tol`` relatively or ``max_iter`` iterations ran. Breakdown
    point 1/2. [M]: RFA's algorithm as commonly stated; the fixed point is a minimizer of the
    nu-smoothed objective (the tests check the optimality condition).

    Args:
        nu: smoothing, > 0 (distances below nu count as nu).
        tol: relative improvement that stops the iteration, in (0, 1).
        max_iter: at most this many iterations, >= 1.
    """

    name = "geometric_median"
    nu: float = 1e-8
    tol: float = 1e-10
    max_iter: int = 200

    def __post_init__(self):
        object.__setattr__(self, "nu", check_float("nu", self.nu, low=0.0, low_open=True))
        object.__setattr__(self, "tol", check_float("tol", self.tol, low=0.0, high=1.0, low_open=True, high_open=True))
        object.__setattr__(self, "max_iter", check_int("max_iter", self.max_iter, low=1))

    def _aggregate(self, V):
        V = V.astype(np.float64)
        z = V.mean(axis=0)
        dist = np.linalg.norm(V - z, axis=1)
        obj = dist.sum()
        for _ in range(self.max_iter):
            w = 1.0 / np.maximum(dist, self.nu)
            z = (w @ V) / w.sum()
            dist = np.linalg.norm(V - z, axis=1)
            new = dist.sum()
            if obj - new <= self.tol * obj:
                break
            obj = new
        return z
