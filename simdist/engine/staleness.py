"""Bounded-staleness SGD: each node's gradient of step t is taken at an old iterate x_{t - delay}.

The model of asynchronous data-parallel SGD with bounded delay tau (Agarwal & Duchi 2011; Lian et
al. 2015; THEORY.md 10): the update of step t applies gradients computed at iterates up to tau
steps old, because the nodes read the parameters before the previous updates reached them.
:class:`Staleness` keeps the last tau + 1 iterates and builds, for each step, the (P, d) matrix of
the iterates the nodes read:

1. the delays of step t: ``"fixed"``: every node min(tau, t); ``"uniform"``: node i's delay is
   uniform in [0, tau] (from the step's own generator :func:`simdist.rng.delay_rng`, so the same
   seed gives the same delays on every backend), then capped at t (nothing before x_0);
2. row i = x_{t - delay_i}; when every delay is 0 the iterate itself is returned (the
   synchronous run, bit for bit).

The update (step 5 of the loop) is unchanged: x_{t+1} = x_t - lr(t) * (momentum buffer of the
aggregated stale gradients). With tau = 0 a run is the synchronous one exactly.

What the theory says [M] (THEORY.md 10): for convex L-smooth f the delay costs only a higher-order
term, O(R sigma / sqrt(T) + (tau + 1) L R^2 / T) with a step of order 1/(L (tau + 1)).
[D] for deterministic delayed gradient descent on a quadratic of curvature L with a fixed delay tau,
x_{t+1} - x* = (x_t - x*) - a (x_{t - tau} - x*) with a = lr L, which is stable iff
0 < a < 2 sin(pi / (2 (2 tau + 1))) (:func:`analysis.staleness.delayed_gd_critical_step`).

Example:
    >>> import numpy as np
    >>> st = Staleness(tau=2, mode="fixed", seed=0, nodes=3)
    >>> for t in range(3):
    ...     X = st.points(np.full(2, float(t)), t)
    >>> X.tolist()   # at t = 2, every node reads x_0
    [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]

References:
    A. Agarwal, J. C. Duchi, "Distributed Delayed Stochastic Optimization", NeurIPS 2011;
    X. Lian, Y. Huang, Y. Li, J. Liu, "Asynchronous Parallel Stochastic Gradient for Nonconvex
    Optimization", NeurIPS 2015; S. Levin, R. May (1976) for the stability of x_{t+1} = x_t - a x_{t-tau}.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .._validate import check_choice, check_int
from ..rng import delay_rng

__all__ = ["Staleness", "MODES"]

MODES = ("uniform", "fixed")


class Staleness:
    """The iterates of the last tau + 1 steps and each step's per-node delays.

    Args:
        tau: the largest delay, >= 0.
        mode: "uniform" or "fixed" (see the module docstring).
        seed: the run's root seed (the delays of step t come from ``delay_rng(seed, t)``).
        nodes: P >= 1.
    """

    def __init__(self, tau: int, mode: str, seed: int, nodes: int):
        self.tau = check_int("staleness", tau, low=0)
        self.mode = check_choice("delays", mode, MODES)
        self.seed = check_int("seed", seed, low=0)
        self.nodes = check_int("nodes", nodes, low=1)
        self._hist: deque = deque(maxlen=self.tau + 1)
        self._t = 0

    def delays(self, t: int) -> np.ndarray:
        """Step 1: the (P,) int64 delays of step t, each in [0, min(tau, t)]."""
        t = check_int("t", t, low=0)
        cap = min(self.tau, t)
        if self.mode == "fixed" or self.tau == 0:
            return np.full(self.nodes, cap, np.int64)
        return np.minimum(delay_rng(self.seed, t).integers(0, self.tau + 1, size=self.nodes), cap)

    def _push(self, x, t: int) -> None:
        if t != self._t:
            raise ValueError(f"steps must be visited in order: expected t={self._t}, got {t}")
        self._t += 1
        self._hist.append(x)

    def _at(self, delay) -> object:
        return self._hist[len(self._hist) - 1 - int(delay)]

    def points(self, x, t: int):
        """Step 2: the iterate every node reads at step t: ``x`` (the current x_t) when every delay is 0,
        else the (P, d) matrix of x_{t - delay_i}. Call once per step, in order t = 0, 1, ..."""
        self._push(x, t)
        if self.tau == 0:
            return x
        dl = self.delays(t)
        return x if not dl.any() else np.stack([self._at(k) for k in dl])

    def point(self, x, t: int, node: int):
        """Node ``node``'s iterate x_{t - delay_node} at step t (one process per node: the delays of
        :meth:`points`). Call once per step, in order."""
        node = check_int("node", node, low=0, high=self.nodes - 1)
        self._push(x, t)
        return x if self.tau == 0 else self._at(self.delays(t)[node])
