"""Least squares on synthetic data: a smooth, strongly convex quadratic with exact constants.

Data (drawn once from ``seed``): rows a_j ~ N(0, diag(c_1..c_d)) with c_k spaced
geometrically from 1 down to 1/``cond`` (``cond = 1``: isotropic), a planted w ~ N(0, I),
b = A w + ``noise`` * N(0, 1). Objective and single-sample gradients:

    f(x) = (1/2n) ||A x - b||^2 = (1/n) sum_j f_j(x),   f_j(x) = (1/2) (a_j.x - b_j)^2,
    g_j(x) = (a_j.x - b_j) a_j.

Constants [D] (for the drawn data):

* x* = argmin f by ``numpy.linalg.lstsq`` (the minimum-norm solution when n < d), f* = f(x*);
* H = A^T A / n is the Hessian of f: L = lambda_max(H), mu = lambda_min(H) (0 when n < d);
* L_sample = max_j ||a_j||^2, the smoothness of every f_j (Hessian a_j a_j^T): the constant
  that a step size for single-sample SGD needs, L <= L_sample;
* sigma2 = (1/n) sum_j ||(a_j.x* - b_j) a_j||^2, the single-sample gradient variance at x*
  (``sigma2_at = "x_star"``: it grows without bound in ||x - x*||, so there is no sup);
* x0 = 0, R = ||x*||.

``labels`` (for the skewed split) are the targets b_j.

Example:
    >>> import numpy as np
    >>> p = LeastSquares(n=200, d=5, seed=0)
    >>> bool(p.mu <= p.L <= p.L_sample)
    True
    >>> bool(np.isclose(p.grad_variance(p.x_star), p.sigma2))
    True

References:
    Bubeck 2015, Theorem 6.3 (the constants L, sigma^2, R); THEORY.md section 7.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_float, check_int
from ..gpu.backend import array_namespace
from .base import Problem, check_dtype, check_n_samples, linear_scores, weighted_rows
from .registry import register

__all__ = ["LeastSquares"]


@register
class LeastSquares(Problem):
    """f(x) = (1/2n) ||A x - b||^2 on synthetic data (see the module docstring).

    Args:
        n: number of samples (rows of A, >= 1).
        d: dimension (>= 1).
        noise: standard deviation of the label noise (>= 0; 0 makes sigma2 = 0).
        cond: ratio of the largest to the smallest feature variance (>= 1).
        seed: seed of the data (>= 0).
        dtype: ``"float64"`` (default) or ``"float32"``.
    """

    name = "least_squares"
    runs_on_device = True

    def __init__(
        self, n: int = 1000, d: int = 20, noise: float = 0.5, cond: float = 1.0, seed: int = 0, dtype="float64"
    ):
        n = check_n_samples("n", n)
        d = check_int("d", d, low=1, high=10**5)
        if n * d > 10**8:
            raise ValueError(f"n * d must be at most 1e8 (memory), got n={n}, d={d}")
        noise = check_float("noise", noise, low=0.0)
        cond = check_float("cond", cond, low=1.0)
        seed = check_int("seed", seed, low=0)
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        scale = np.sqrt(np.geomspace(1.0, 1.0 / cond, d)) if d > 1 else np.ones(1)
        A = (rng.standard_normal((n, d)) * scale).astype(dtype)
        w = rng.standard_normal(d)
        b = (A.astype(np.float64) @ w + noise * rng.standard_normal(n)).astype(dtype)
        self.A, self.b = A, b
        A.setflags(write=False)
        b.setflags(write=False)
        A64, b64 = A.astype(np.float64), b.astype(np.float64)
        x_star = np.linalg.lstsq(A64, b64, rcond=None)[0]
        r = A64 @ x_star - b64
        eig = np.linalg.eigvalsh(A64.T @ A64 / n)
        self.hessian_eigenvalues = eig
        sq = np.einsum("nd,nd->n", A64, A64)
        self._setup(
            dict(n=n, d=d, noise=noise, cond=cond, seed=seed, dtype=dtype),
            dim=d,
            n_samples=n,
            dtype=dtype,
            x0=np.zeros(d),
            labels=b64,
            x_star=x_star,
            f_star=0.5 * float(r @ r) / n,
            L=float(eig[-1]),
            L_sample=float(sq.max()),
            mu=float(max(eig[0], 0.0)) if n >= d else 0.0,
            sigma2=float(np.mean(r * r * sq)),
            sigma2_at="x_star",
        )

    def _loss(self, x):
        A, b = self._data(array_namespace(x), "A", "b")
        r = A @ x - b
        return 0.5 * float(r @ r) / self.n_samples

    def _grads(self, x, idx):
        # 1. gather node minibatches (P, B, d); 2. residuals (P, B); 3. g_p = (1/B) sum_b r_pb a_pb
        A, b = self._data(array_namespace(x), "A", "b")
        Ab = A[idx]
        r = linear_scores(Ab, x) - b[idx]
        return weighted_rows(r, Ab)
