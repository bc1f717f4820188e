"""The sign-compression counterexample (THEORY.md section 4): signSGD without error feedback stalls.

Two samples in R^2, for 0 < eps < 1:

    a_1 = [1 + eps, -1 + eps],    a_2 = [-1 + eps, 1 + eps],
    f(x) = (a_1.x)^2 + (a_2.x)^2 = (1/2) (f_1 + f_2),   f_i(x) = 2 (a_i.x)^2,
    g_i(x) = grad f_i(x) = 4 (a_i.x) a_i.

Scaling: THEORY.md writes the stochastic gradient as 2 (a_i.x) a_i, which is unbiased for f/2;
here f_i carries the factor 2 so that f is the stated objective AND E_i g_i = grad f exactly
(only the step size scale differs; every sign and every invariant is the same).

Invariants [D]: sign(a_1) = [+1, -1] and sign(a_2) = [-1, +1], so every sign(g_i(x)) is a
multiple of [1, -1] (0 when a_i.x = 0), and so is any sum of them: a sign step
x <- x - lr * sign(g) keeps x_1 + x_2 constant. From x0 = [1, 1], x_1 + x_2 = 2 forever, and on
that line, x = [1 + t, 1 - t]: a_1.x = 2 (eps + t), a_2.x = 2 (eps - t), so
f(x) = 8 eps^2 + 8 t^2 >= 8 eps^2 > f* = 0. The invariant needs every compressed gradient to
be a single-sample one (``batch_size = 1``): a minibatch holding both samples averages them
towards grad f, whose sign is not parallel to [1, -1].

Constants: x* = 0, f* = 0; the Hessian of f is 2 (a_1 a_1^T + a_2 a_2^T) with eigenvalues
8 (along [1, -1]) and 8 eps^2 (along [1, 1]), so L = 8, mu = 8 eps^2; L_sample = 4 ||a_i||^2
= 8 (1 + eps^2); sigma2 = 0 at x* (``sigma2_at = "x_star"``; the variance grows as ||x||^2,
no sup); x0 = [1, 1], R = sqrt(2). ``labels`` are the sample indices 0, 1.

Example:
    >>> import numpy as np
    >>> p = SignCounterexample(eps=0.1)
    >>> bool(np.isclose(p.loss(p.x0), p.f_lower_bound))     # 8 eps^2 at x0 (t = 0)
    True
    >>> np.sign(p.sample_grads(p.x0))
    array([[ 1., -1.],
           [-1.,  1.]])

References:
    Karimireddy, Rebjock, Stich, Jaggi, "Error feedback fixes SignSGD and other gradient
    compression schemes", ICML 2019, Section 3 (counterexample; [M] structure, [D] invariants).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_float
from .base import Problem, check_dtype, linear_scores, weighted_rows
from .registry import register

__all__ = ["SignCounterexample"]


@register
class SignCounterexample(Problem):
    """f(x) = (a_1.x)^2 + (a_2.x)^2 on R^2 (see the module docstring).

    Args:
        eps: the asymmetry, 0 < eps < 1 (default 0.1).
        dtype: ``"float64"`` (default) or ``"float32"``.
    """

    name = "sign_counterexample"

    def __init__(self, eps: float = 0.1, dtype="float64"):
        eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
        dtype = check_dtype(dtype)
        self.eps = eps
        self.a = np.array([[1.0 + eps, -1.0 + eps], [-1.0 + eps, 1.0 + eps]], dtype=dtype)
        self.a.setflags(write=False)
        #: 8 eps^2: the value of f on the line x_1 + x_2 = 2 is never below it.
        self.f_lower_bound = 8.0 * eps * eps
        self._setup(
            dict(eps=eps, dtype=dtype),
            dim=2,
            n_samples=2,
            dtype=dtype,
            x0=np.ones(2),
            labels=np.arange(2),
            x_star=np.zeros(2),
            f_star=0.0,
            L=8.0,
            L_sample=8.0 * (1.0 + eps * eps),
            mu=8.0 * eps * eps,
            sigma2=0.0,
            sigma2_at="x_star",
        )

    def _loss(self, x):
        z = self.a.astype(np.float64) @ x.astype(np.float64)
        return float(z @ z)

    def _grads(self, x, idx):
        # g_i = 4 (a_i.x) a_i, averaged over each node's batch
        Ab = self.a[idx]
        return weighted_rows(4.0 * linear_scores(Ab, x), Ab)
