"""L2-regularized logistic regression: synthetic Gaussian classes or scikit-learn's breast cancer.

Data: labels y_j in {-1, +1} and feature rows a_j (with a trailing constant 1 when
``intercept``, so d = features + 1).

* ``dataset="synthetic"``: y_j = +-1 with probability 1/2 each, a_j ~ N(y_j (sep/2) u, I) for a
  random unit vector u (all drawn from ``seed``); ``n`` samples, ``d`` features.
* ``dataset="breast_cancer"``: scikit-learn's bundled Wisconsin diagnostic breast-cancer set
  (569 samples, 30 features), each feature standardized to mean 0 and variance 1,
  y = +1 for benign. Needs the ``data`` extra (scikit-learn).

Objective (lam = ``lam``), with f_j carrying the regularizer so that g_j is unbiased:

    f(x) = (1/n) sum_j log(1 + exp(-y_j a_j.x)) + (lam/2) ||x||^2,
    g_j(x) = -y_j sigmoid(-y_j a_j.x) a_j + lam x,

computed in the stable forms ``logaddexp(0, -z)`` and ``scipy.special.expit``.

Constants:

* L = lambda_max(A^T A) / (4n) + lam (sigmoid' <= 1/4), mu = lam [D bounds];
  L_sample = max_j ||a_j||^2 / 4 + lam;
* x* computed numerically (``scipy.optimize.minimize``, trust-region Newton with the exact
  Hessian, gradient norm below 1e-10) and cached per configuration; f* = f(x*);
* sigma2 = E_j ||g_j(x*) - grad f(x*)||^2 exactly at x* (``sigma2_at = "x_star"``), and
  ``sigma2_sup`` = (1/n) sum_j ||a_j||^2, a bound at every x (the lam x terms cancel and
  |sigmoid| <= 1);
* x0 = 0, R = ||x*||.

``labels`` (for the skewed split) are the classes y_j.

Example:
    >>> import numpy as np
    >>> p = Logistic(n=200, d=4, seed=0)
    >>> bool(np.linalg.norm(p.full_grad(p.x_star)) < 1e-8)
    True
    >>> p.accuracy(p.x_star) > 0.6
    True

References:
    Bubeck 2015, Theorem 6.3 (constants L, mu, sigma^2); W. N. Street, W. H. Wolberg,
    O. L. Mangasarian, "Nuclear feature extraction for breast tumor diagnosis", 1993 (the data set).
"""

from __future__ import annotations

import functools
import json

import numpy as np
from scipy import optimize, special

from .._validate import check_choice, check_float, check_int
from ..gpu.backend import array_namespace
from .base import Problem, check_dtype, check_n_samples, expit, linear_scores, require_sklearn, weighted_rows
from .registry import register

__all__ = ["Logistic", "DATASETS"]

#: The data sets.
DATASETS = ("synthetic", "breast_cancer")


@functools.lru_cache(maxsize=4)
def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    data = require_sklearn().load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = np.where(np.asarray(data.target) == 1, 1.0, -1.0)
    return X, y


def _objective(A, y, lam):
    """f, grad f and the Hessian of the float64 problem (for scipy)."""
    n = A.shape[0]

    def fun(x):
        z = y * (A @ x)
        s = special.expit(-z)
        f = float(np.mean(np.logaddexp(0.0, -z))) + 0.5 * lam * float(x @ x)
        return f, A.T @ (-y * s) / n + lam * x

    def hess(x):
        s = special.expit(A @ x)
        return (A.T * (s * (1.0 - s))) @ A / n + lam * np.eye(A.shape[1])

    return fun, hess


_XSTAR_CACHE: dict[str, tuple[np.ndarray, float]] = {}


def _solve(key: str, A, y, lam) -> tuple[np.ndarray, float]:
    """x* and f* of the float64 problem, cached per configuration ``key``."""
    if key not in _XSTAR_CACHE:
        fun, hess = _objective(A, y, lam)
        opts = {"gtol": 1e-12, "maxiter": 1000}
        res = optimize.minimize(fun, np.zeros(A.shape[1]), jac=True, hess=hess, method="trust-exact", options=opts)
        x = res.x
        for _ in range(3):  # Newton polish to machine precision (quadratic convergence)
            x = x - np.linalg.solve(hess(x), fun(x)[1])
        gnorm = float(np.linalg.norm(fun(x)[1]))
        if not gnorm < 1e-10:  # pragma: no cover - would signal a broken solver
            raise RuntimeError(f"logistic: x* solve did not converge (||grad f|| = {gnorm:.3g})")
        _XSTAR_CACHE[key] = (x, fun(x)[0])
    return _XSTAR_CACHE[key]


@register
class Logistic(Problem):
    """L2-regularized logistic regression (see the module docstring).

    Args:
        dataset: ``"synthetic"`` (default) or ``"breast_cancer"``.
        n: samples (synthetic only; default 1000).
        d: features (synthetic only; default 20).
        sep: distance between the two class means (synthetic only, >= 0; default 2).
        lam: L2 regularization (> 0; default 1e-3).
        intercept: append a constant-1 feature (default True).
        seed: seed of the synthetic data (>= 0).
        dtype: ``"float64"`` (default) or ``"float32"``.
    """

    name = "logistic"
    classifier = True
    runs_on_device = True

    def __init__(
        self,
        dataset: str = "synthetic",
        n: int | None = None,
        d: int | None = None,
        sep: float = 2.0,
        lam: float = 1e-3,
        intercept: bool = True,
        seed: int = 0,
        dtype="float64",
    ):
        check_choice("dataset", dataset, DATASETS)
        lam = check_float("lam", lam, low=0.0, low_open=True)
        sep = check_float("sep", sep, low=0.0)
        seed = check_int("seed", seed, low=0)
        if not isinstance(intercept, bool):
            raise TypeError(f"intercept must be True or False, got {intercept!r}")
        dtype = check_dtype(dtype)
        if dataset == "synthetic":
            n = check_n_samples("n", 1000 if n is None else n)
            d = check_int("d", 20 if d is None else d, low=1, high=10**5)
            if n * d > 10**8:
                raise ValueError(f"n * d must be at most 1e8 (memory), got n={n}, d={d}")
            rng = np.random.default_rng(seed)
            y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
            u = rng.standard_normal(d)
            u /= np.linalg.norm(u)
            X = rng.standard_normal((n, d)) + (0.5 * sep) * y[:, None] * u
        else:
            for pname, value in (("n", n), ("d", d)):
                if value is not None:
                    raise ValueError(f"{pname} applies to dataset='synthetic' only; leave it unset for {dataset!r}")
            X, y = _breast_cancer()
        if intercept:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        config = dict(dataset=dataset, n=n, d=d, sep=sep, lam=lam, intercept=intercept, seed=seed, dtype=dtype)
        self.A = X.astype(dtype)
        self.y = y.astype(dtype)
        self.lam = lam
        self.A.setflags(write=False)
        self.y.setflags(write=False)
        A64, y64 = self.A.astype(np.float64), self.y.astype(np.float64)
        nn, dd = A64.shape
        x_star, f_star = _solve(json.dumps(config, sort_keys=True), A64, y64, lam)
        sq = np.einsum("nd,nd->n", A64, A64)
        lmax = float(np.linalg.eigvalsh(A64.T @ A64)[-1]) / (4.0 * nn)
        V = A64 * (-y64 * special.expit(-y64 * (A64 @ x_star)))[:, None]
        sigma2 = float(np.mean(np.sum((V - V.mean(axis=0)) ** 2, axis=1)))
        self._setup(
            config,
            dim=dd,
            n_samples=nn,
            dtype=dtype,
            x0=np.zeros(dd),
            labels=y64,
            x_star=x_star,
            f_star=f_star,
            L=lmax + lam,
            L_sample=float(sq.max()) / 4.0 + lam,
            mu=lam,
            sigma2=sigma2,
            sigma2_at="x_star",
            sigma2_sup=float(sq.mean()),
        )

    def _loss(self, x):
        xp = array_namespace(x)
        A, y = self._data(xp, "A", "y")
        z = y * (A @ x)
        return float(xp.mean(xp.logaddexp(0.0, -z))) + 0.5 * self.lam * float(x @ x)

    def _grads(self, x, idx):
        # 1. gather (P, B, d) and labels (P, B); 2. margins z = y a.x; 3. g = mean_b (-y sigmoid(-z)) a + lam x
        xp = array_namespace(x)
        A, y = self._data(xp, "A", "y")
        Ab, yb = A[idx], y[idx]
        w = -yb * expit(xp)(-yb * linear_scores(Ab, x))
        return weighted_rows(w.astype(self.dtype, copy=False), Ab) + self.lam * x

    def _accuracy(self, x):
        pred = np.where(self.A @ x > 0, 1.0, -1.0)
        return float(np.mean(pred == self.y))
