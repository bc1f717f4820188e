"""Distributed mean estimation: the seed's example, where every constant is exact.

Samples e_1..e_n ~ N(m 1, s^2 I_d) (drawn once from ``seed``). The objective and its
single-sample gradients:

    f(x) = (1/2n) sum_j ||x - e_j||^2,        g_j(x) = x - e_j.

Constants, all exact for the drawn samples [D]:

* x* = (1/n) sum_j e_j (the sample mean), f* = sigma2 / 2;
* L = mu = L_sample = 1 (the Hessian of f and of every f_j is I);
* sigma2 = (1/n) sum_j ||e_j - x*||^2, the variance of g_j(x), the same at every x since
  g_j(x) - grad f(x) = x* - e_j (``sigma2_at = "everywhere"``); it is close to d s^2.
* x0 = 0, R = ||x*||.

Averaging P node gradients of batch B (each sample uniform on the n samples) gives an
estimator of grad f(x) with variance sigma2 / (P B) (THEORY.md section 7).
``labels`` (for the skewed split) are the first coordinates of the samples.

Example:
    >>> import numpy as np
    >>> p = MeanEstimation(d=3, n=100, m=2.0, s=0.5, seed=0)
    >>> bool(np.allclose(p.x_star, p.samples.mean(axis=0)))
    True
    >>> bool(np.isclose(p.grad_variance(np.ones(3)), p.sigma2))
    True

References:
    THEORY.md section 7 (distributed mean estimation); Bubeck 2015, Theorem 6.3.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_float, check_int
from ..gpu.backend import array_namespace
from .base import Problem, check_dtype, check_n_samples
from .registry import register

__all__ = ["MeanEstimation"]


@register
class MeanEstimation(Problem):
    """f(x) = (1/2n) sum_j ||x - e_j||^2 with e_j ~ N(m, s^2 I) (see the module docstring).

    Args:
        d: dimension (>= 1).
        n: number of samples (>= 1).
        m: mean of every coordinate of the sampling distribution (finite).
        s: standard deviation of every coordinate (>= 0).
        seed: seed of the samples (>= 0).
        dtype: ``"float64"`` (default) or ``"float32"``.
    """

    name = "mean_estimation"
    runs_on_device = True

    def __init__(self, d: int = 10, n: int = 1000, m: float = 1.0, s: float = 1.0, seed: int = 0, dtype="float64"):
        d = check_int("d", d, low=1, high=10**8)
        n = check_n_samples("n", n)
        if n * d > 10**8:
            raise ValueError(f"n * d must be at most 1e8 (memory), got n={n}, d={d}")
        m = check_float("m", m)
        s = check_float("s", s, low=0.0)
        seed = check_int("seed", seed, low=0)
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        E = (m + s * rng.standard_normal((n, d))).astype(dtype)
        self.samples = E
        self.samples.setflags(write=False)
        E64 = E.astype(np.float64)
        x_star = E64.mean(axis=0)
        sigma2 = float(np.mean(np.sum((E64 - x_star) ** 2, axis=1)))
        self._setup(
            dict(d=d, n=n, m=m, s=s, seed=seed, dtype=dtype),
            dim=d,
            n_samples=n,
            dtype=dtype,
            x0=np.zeros(d),
            labels=E64[:, 0],
            x_star=x_star,
            f_star=sigma2 / 2.0,
            L=1.0,
            L_sample=1.0,
            mu=1.0,
            sigma2=sigma2,
            sigma2_at="everywhere",
            sigma2_sup=sigma2,
        )

    def _loss(self, x):
        xp = array_namespace(x)
        (E,) = self._data(xp, "samples")
        diff = E - x
        return 0.5 * float(xp.mean(xp.einsum("nd,nd->n", diff, diff)))

    def _grads(self, x, idx):
        # g = x - mean_b e_{idx[p, b]}: one gather (P, B, d) and a mean over the batch axis
        (E,) = self._data(array_namespace(x), "samples")
        return x - E[idx].mean(axis=1)
