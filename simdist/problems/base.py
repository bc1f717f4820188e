"""The problem contract: an objective over n samples, its minibatch gradients, its constants.

A problem is f(x) = (1/n) sum_j f_j(x) over ``n_samples`` samples in dimension ``dim``. The
engine holds one iterate (or one per node) and asks for node gradients in one call:

    G = problem.grads(x, idx)      # idx: (P, B) sample indices, row i = node i's minibatch
                                   # G: (P, d), row i = (1/B) sum_b grad f_{idx[i, b]}(x)

``grads`` is vectorized across nodes (one gather of the (P, B, ...) data and batched matmuls,
no Python loop over nodes); ``x`` is a (d,) vector shared by every node or a (P, d) matrix of
per-node iterates. A single-sample gradient g_j(x) = grad f_j(x) is an unbiased estimate of
grad f(x) when j is uniform on the samples.

Constants for the theory (None where unknown): ``x_star``, ``f_star``, ``L`` (smoothness of f:
largest Hessian eigenvalue bound), ``L_sample`` (smoothness of every f_j, the constant plain
SGD step sizes need), ``mu`` (strong convexity), ``sigma2`` (variance of a single-sample
gradient, E_j ||g_j(x) - grad f(x)||^2; ``sigma2_at`` says where: ``"everywhere"`` when it does
not depend on x, ``"x_star"`` when it is the value at x* (the variance is unbounded in x), or
``"sup"`` when it is a bound over all x), ``sigma2_sup`` (a bound on the variance over all x,
where one is known), ``R`` = ||x0 - x*||, and ``x0`` (the initial point).
:meth:`grad_variance` computes the variance exactly at any x.

``labels`` (one value per sample) orders the samples for the skewed, label-sorted split of
:func:`simdist.problems.partition` (class labels for classifiers; documented per problem for
regression).

Example:
    >>> import numpy as np
    >>> from simdist import problems
    >>> p = problems.make("least_squares", n=100, d=5, seed=0)
    >>> idx = np.array([[0, 1], [2, 3], [4, 5]])     # 3 nodes, batch 2
    >>> p.grads(p.x0, idx).shape
    (3, 5)
    >>> bool(np.linalg.norm(p.full_grad(p.x_star)) < 1e-10)
    True
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import numpy as np

from .._validate import check_choice, check_int
from ..gpu.backend import array_namespace, is_device_array

__all__ = ["Problem", "require_sklearn", "check_dtype", "expit"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype) -> str:
    """Normalise a dtype parameter to ``"float32"`` or ``"float64"`` (ValueError otherwise)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    return check_choice("dtype", name, tuple(_DTYPES))


def require_sklearn():
    """Import scikit-learn's ``datasets`` lazily, with an error naming the extra when missing."""
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError(
            "this problem loads a data set bundled with scikit-learn, which is not installed; "
            "install the 'data' extra: pip install 'simdist[data]' (or pip install scikit-learn)"
        ) from exc
    return datasets


def _readonly(a):
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


class Problem(abc.ABC):
    """Base class of every problem (see the module docstring).

    Subclasses set ``name``, build their data in ``__init__`` and call :meth:`_setup`, and
    implement :meth:`_loss` and :meth:`_grads` on validated input.
    """

    #: Registry name (set by each subclass).
    name: ClassVar[str] = ""
    #: True for classifiers (then :meth:`accuracy` is defined).
    classifier: ClassVar[bool] = False
    #: True when :meth:`_loss` and :meth:`_grads` are written with the array namespace of x
    #: (``xp = array_namespace(x)``, data from :meth:`_data`), so that they accept CuPy arrays
    #: (``device="cuda"`` runs, :mod:`simdist.engine.device`).
    runs_on_device: ClassVar[bool] = False

    # -- set by _setup ----------------------------------------------------------------------
    dim: int
    n_samples: int
    dtype: np.dtype
    x0: np.ndarray
    labels: np.ndarray
    x_star: np.ndarray | None = None
    f_star: float | None = None
    L: float | None = None
    L_sample: float | None = None
    mu: float | None = None
    sigma2: float | None = None
    sigma2_at: str | None = None
    sigma2_sup: float | None = None
    R: float | None = None

    def _setup(self, config: dict, *, dim: int, n_samples: int, dtype: str, x0, labels, **constants) -> None:
        """Record the config, sizes and constants (subclasses call this once, at the end of __init__)."""
        self._config = dict(config)
        self.dim = int(dim)
        self.n_samples = int(n_samples)
        self.dtype = np.dtype(_DTYPES[dtype])
        self.x0 = _readonly(np.asarray(x0, dtype=self.dtype))
        self.labels = _readonly(np.asarray(labels))
        allowed = {"x_star", "f_star", "L", "L_sample", "mu", "sigma2", "sigma2_at", "sigma2_sup", "R"}
        unknown = set(constants) - allowed
        if unknown:  # pragma: no cover - programming error in a subclass
            raise TypeError(f"unknown constants {sorted(unknown)}")
        for key, value in constants.items():
            if key == "x_star":
                value = _readonly(None if value is None else np.asarray(value, dtype=np.float64))
            elif key != "sigma2_at" and value is not None:
                value = float(value)
            setattr(self, key, value)
        if self.x_star is not None and self.R is None:
            self.R = float(np.linalg.norm(self.x0.astype(np.float64) - self.x_star))

    #: FLOPs of one sample's gradient per parameter, for FLOP-based compute models: a dot product and
    #: an axpy for linear models (about 4 d); an MLP overrides it (forward + backward, about 6 d).
    flops_per_param: ClassVar[float] = 4.0

    @property
    def flops_per_sample(self) -> float:
        """Estimated FLOPs of one sample's gradient (``flops_per_param * dim``), an order-of-magnitude model."""
        return self.flops_per_param * self.dim

    # -- subclass hooks ---------------------------------------------------------------------
    @abc.abstractmethod
    def _loss(self, x: np.ndarray) -> float:
        """f(x) for a validated (d,) vector of the problem's dtype."""

    @abc.abstractmethod
    def _grads(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """(P, d) node gradients; x is (d,) or (P, d) of the problem's dtype, idx a valid (P, B) array."""

    def _accuracy(self, x: np.ndarray) -> float:  # pragma: no cover - classifiers override
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------
    def loss(self, x) -> float:
        """The full objective f(x) (a Python float; NaN/Inf when x is not finite)."""
        return float(self._loss(self._check_x(x, allow_nodes=False)))

    def grads(self, x, idx) -> np.ndarray:
        """Node gradients: row i is the average of grad f_j(x) over j in ``idx[i]``.

        Args:
            x: the iterate, (d,) (shared by every node) or (P, d) (one per node).
            idx: (P, B) integer array of sample indices in [0, n_samples).

        Returns:
            (P, d) array of the problem's dtype.
        """
        idx = self._check_idx(idx)
        x = self._check_x(x, allow_nodes=True)
        if x.ndim == 2 and x.shape[0] != idx.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but idx has {idx.shape[0]} (one row per node)")
        if type(x) is not np.ndarray:  # a CuPy iterate: the indices go to the device too
            idx = array_namespace(x).asarray(idx)
        return self._grads(x, idx)

    def full_grad(self, x) -> np.ndarray:
        """grad f(x) (the average of every sample's gradient), shape (d,)."""
        x = self._check_x(x, allow_nodes=False)
        return self._grads(x, np.arange(self.n_samples, dtype=np.int64)[None, :])[0]

    def sample_grads(self, x) -> np.ndarray:
        """Every single-sample gradient g_j(x), shape (n_samples, d)."""
        x = self._check_x(x, allow_nodes=False)
        return self._grads(x, np.arange(self.n_samples, dtype=np.int64)[:, None])

    def grad_variance(self, x) -> float:
        """Exact E_j ||g_j(x) - grad f(x)||^2 with j uniform on the samples (in float64)."""
        G = self.sample_grads(x).astype(np.float64)
        return float(np.mean(np.sum((G - G.mean(axis=0)) ** 2, axis=1)))

    def accuracy(self, x) -> float:
        """Fraction of samples classified correctly (classifiers only)."""
        if not self.classifier:
            raise TypeError(f"{self.name} is not a classifier: accuracy() is undefined")
        return float(self._accuracy(self._check_x(x, allow_nodes=False)))

    def partition(self, nodes: int, kind: str = "iid", seed: int = 0) -> np.ndarray:
        """Split the samples across nodes (:func:`simdist.problems.partition` with this problem's labels)."""
        from .partition import partition

        return partition(self.n_samples, nodes, kind=kind, seed=seed, labels=self.labels)

    def get_config(self) -> dict:
        """JSON-ready config: ``{"name": ..., **parameters}``; ``make(config)`` rebuilds the problem."""
        return {"name": self.name, **self._config}

    @classmethod
    def from_config(cls, config) -> "Problem":
        """Inverse of :meth:`get_config` (accepts the dict or its JSON string)."""
        from .registry import make

        if isinstance(config, str):
            config = json.loads(config)
        if not isinstance(config, dict) or "name" not in config:
            raise TypeError(f"config must be a dict with a 'name' key, got {config!r}")
        if cls is not Problem and cls.name and config["name"] != cls.name:
            raise ValueError(f"config is for {config['name']!r}, not {cls.name!r}")
        return make(config)

    def constants(self) -> dict[str, Any]:
        """The theory constants as a JSON-ready dict (x* as a list, or None)."""
        keys = ("f_star", "L", "L_sample", "mu", "sigma2", "sigma2_at", "sigma2_sup", "R")
        out = {k: getattr(self, k) for k in keys}
        out["x_star"] = None if self.x_star is None else self.x_star.tolist()
        return out

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{self.name}({params})"

    # -- validation -------------------------------------------------------------------------
    def _data(self, xp, *names: str) -> tuple:
        """The data arrays ``names`` (attributes) in namespace ``xp``: as they are for NumPy, else
        device copies made on first use and kept."""
        if xp is np:
            return tuple(getattr(self, n) for n in names)
        cache = self.__dict__.setdefault("_device_data", {})
        return tuple(cache[n] if n in cache else cache.setdefault(n, xp.asarray(getattr(self, n))) for n in names)

    def _check_x(self, x, *, allow_nodes: bool) -> np.ndarray:
        xp = np
        if type(x) is not np.ndarray and is_device_array(x):
            xp = array_namespace(x)
            if xp is np or not self.runs_on_device:
                raise TypeError(f"x must be a NumPy array{' or a CuPy array' if self.runs_on_device else ''} "
                                f"for {self.name}, got {type(x).__module__}.{type(x).__name__}")
        else:
            x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x must be a real array, got dtype {x.dtype}")
        ok = x.ndim == 1 and x.shape[0] == self.dim
        ok |= allow_nodes and x.ndim == 2 and x.shape[1] == self.dim
        if not ok:
            want = f"({self.dim},)" + (f" or (P, {self.dim})" if allow_nodes else "")
            raise ValueError(f"x must have shape {want} for {self.name} (dim {self.dim}), got {x.shape}")
        return xp.ascontiguousarray(x, dtype=self.dtype)

    def _check_idx(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be an integer array of sample indices, got dtype {idx.dtype}")
        if idx.ndim != 2 or idx.shape[0] < 1 or idx.shape[1] < 1:
            raise ValueError(f"idx must be a non-empty (nodes, batch_size) array, got shape {idx.shape}")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.n_samples:
            raise ValueError(f"idx must lie in [0, {self.n_samples - 1}] (n_samples - 1), got values in [{lo}, {hi}]")
        return idx


def check_n_samples(name: str, value, *, low: int = 1) -> int:
    """Sample counts: an int >= low (kept small enough for memory: at most 10**7)."""
    return check_int(name, value, low=low, high=10**7)


def linear_scores(Ab: np.ndarray, x: np.ndarray) -> np.ndarray:
    """a_{pb} . x for gathered rows Ab (P, B, d) and x (d,) or (P, d): shape (P, B) (NumPy or CuPy)."""
    if x.ndim == 1:
        return Ab @ x
    return (Ab @ x[:, :, None])[..., 0]


def weighted_rows(w: np.ndarray, Ab: np.ndarray) -> np.ndarray:
    """sum_b w_{pb} a_{pb} / B for w (P, B) and Ab (P, B, d): shape (P, d) (NumPy or CuPy)."""
    return (w[:, None, :] @ Ab)[:, 0, :] / Ab.shape[1]


def expit(xp):
    """The logistic sigmoid of namespace ``xp``: scipy's ``expit`` or cupyx's (imported lazily)."""
    if xp is np:
        from scipy import special
    else:
        from cupyx.scipy import special
    return special.expit
