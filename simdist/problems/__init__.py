"""Problems (objectives with minibatch gradients and their theory constants) and data partitioning.

Every problem is built by name from the registry and has the interface of :class:`Problem`:
``loss(x)``, ``full_grad(x)``, ``grads(x, idx)`` vectorized over nodes, and the constants
``x_star, f_star, L, L_sample, mu, sigma2, R, x0`` (None where unknown).

Built-in problems: ``mean_estimation``, ``least_squares``, ``logistic`` (synthetic or
scikit-learn's breast-cancer set), ``mlp_digits`` (scikit-learn's digits, non-convex) and
``sign_counterexample`` (THEORY.md section 4). The two that load bundled data sets need the
``data`` extra (scikit-learn).

Example:
    >>> import numpy as np
    >>> from simdist import problems
    >>> p = problems.make("least_squares", n=200, d=10, seed=1)
    >>> parts = problems.partition(p.n_samples, 4, kind="iid", seed=0)
    >>> idx = problems.sample_minibatch(parts, 8, np.random.default_rng(0))
    >>> p.grads(p.x0, idx).shape
    (4, 10)
"""

from .base import Problem
from .partition import PARTITION_KINDS, partition, sample_minibatch
from .registry import available, get, make, register

__all__ = ["Problem", "available", "get", "make", "register", "partition", "sample_minibatch", "PARTITION_KINDS"]
