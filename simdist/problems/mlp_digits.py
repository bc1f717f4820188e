"""A one-hidden-layer MLP classifier on scikit-learn's digits: the non-convex problem.

Data: scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels, 10 classes),
each pixel standardized to mean 0 and variance 1 (constant pixels left at 0). Needs the
``data`` extra (scikit-learn).

Model (h = ``hidden``, act = tanh or relu), parameters flattened into one vector x in the
order W1 (64 x h, row-major), b1 (h), W2 (h x 10, row-major), b2 (10), so d = 75 h + 10
(2410 for h = 32):

    z_j(x) = W2^T act(W1^T a_j + b1) + b2,
    f_j(x) = -log softmax(z_j)[c_j] + (lam/2) ||x||^2,    f = (1/n) sum_j f_j.

Gradients by backpropagation, vectorized across nodes: the (P, B, 64) minibatch goes through
batched matmuls, and the per-node weight gradients are the batched products
(P, 64, B) @ (P, B, h) and (P, h, B) @ (P, B, 10).

Initialization (``seed``): W1 ~ N(0, 1/64), W2 ~ N(0, 1/h) (LeCun), biases 0. Non-convex:
x*, f*, L, mu, sigma2 and R are None (:meth:`grad_variance` still gives the variance at any x).
``labels`` (for the skewed split) are the digit classes.

Example:
    >>> import numpy as np
    >>> p = MLPDigits(hidden=8)
    >>> p.dim, p.n_samples
    (610, 1797)
    >>> bool(abs(p.loss(p.x0) - np.log(10)) < 0.5)     # near-uniform predictions at init
    True

References:
    E. Alpaydin, C. Kaynak, "Optical recognition of handwritten digits" (UCI, 1998; the data set);
    QSGD (Alistarh et al., NeurIPS 2017) Theorem 3.5 (non-convex rate).
"""

from __future__ import annotations

import functools

import numpy as np

from .._validate import check_choice, check_float, check_int
from .base import Problem, check_dtype, require_sklearn
from .registry import register

__all__ = ["MLPDigits"]

N_IN, N_OUT = 64, 10


@functools.lru_cache(maxsize=2)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = require_sklearn().load_digits()
    X = np.asarray(data.data, dtype=np.float64)
    sd = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return X, np.asarray(data.target, dtype=np.int64)


@register
class MLPDigits(Problem):
    """Softmax cross-entropy of a 64 -> hidden -> 10 MLP on the digits (see the module docstring).

    Args:
        hidden: hidden units (>= 1; default 32).
        activation: ``"tanh"`` (default) or ``"relu"``.
        lam: L2 regularization (>= 0; default 0).
        seed: seed of the initialization x0 (>= 0).
        dtype: ``"float64"`` (default) or ``"float32"``.
    """

    flops_per_param = 6.0  # forward (2 per weight) + backward (4 per weight)

    name = "mlp_digits"
    classifier = True

    def __init__(self, hidden: int = 32, activation: str = "tanh", lam: float = 0.0, seed: int = 0, dtype="float64"):
        hidden = check_int("hidden", hidden, low=1, high=4096)
        check_choice("activation", activation, ("tanh", "relu"))
        lam = check_float("lam", lam, low=0.0)
        seed = check_int("seed", seed, low=0)
        dtype = check_dtype(dtype)
        X, c = _digits()
        self.X = X.astype(dtype)
        self.classes = c
        self.X.setflags(write=False)
        self.hidden, self.activation, self.lam = hidden, activation, lam
        h = hidden
        self._sizes = (N_IN * h, h, h * N_OUT, N_OUT)
        rng = np.random.default_rng(seed)
        W1 = rng.standard_normal(N_IN * h) / np.sqrt(N_IN)
        W2 = rng.standard_normal(h * N_OUT) / np.sqrt(h)
        x0 = np.concatenate([W1, np.zeros(h), W2, np.zeros(N_OUT)])
        self._setup(
            dict(hidden=hidden, activation=activation, lam=lam, seed=seed, dtype=dtype),
            dim=x0.size,
            n_samples=X.shape[0],
            dtype=dtype,
            x0=x0,
            labels=c,
        )

    def unpack(self, x):
        """Views (W1, b1, W2, b2) of x; x (d,) gives (64, h), (h,), (h, 10), (10,), x (P, d) a leading P axis."""
        lead = x.shape[:-1]
        h = self.hidden
        o = np.cumsum((0,) + self._sizes)
        W1 = x[..., o[0] : o[1]].reshape(lead + (N_IN, h))
        b1 = x[..., o[1] : o[2]]
        W2 = x[..., o[2] : o[3]].reshape(lead + (h, N_OUT))
        b2 = x[..., o[3] : o[4]]
        return W1, b1, W2, b2

    def _forward(self, Xb, x):
        """Hidden activations H and class probabilities S for inputs Xb (P, B, 64) or (n, 64)."""
        W1, b1, W2, b2 = self.unpack(x)
        pre = np.matmul(Xb, W1) + (b1[..., None, :] if x.ndim == 2 else b1)
        H = np.tanh(pre) if self.activation == "tanh" else np.maximum(pre, 0.0)
        Z = np.matmul(H, W2) + (b2[..., None, :] if x.ndim == 2 else b2)
        Z = Z - Z.max(axis=-1, keepdims=True)  # stable softmax
        E = np.exp(Z)
        return H, Z, E / E.sum(axis=-1, keepdims=True)

    def _loss(self, x):
        _, Z, _ = self._forward(self.X, x)
        logp = Z[np.arange(self.n_samples), self.classes] - np.log(np.exp(Z).sum(axis=1))
        return -float(np.mean(logp)) + 0.5 * self.lam * float(x @ x)

    def _grads(self, x, idx):
        P, B = idx.shape
        # 1. forward on the gathered minibatches (P, B, 64)
        Xb = self.X[idx]
        H, _, S = self._forward(Xb, x)
        # 2. dL/dZ = (softmax - onehot) / B
        dZ = S
        dZ[np.arange(P)[:, None], np.arange(B)[None, :], self.classes[idx]] -= 1.0
        dZ /= B
        # 3. output layer: gW2 = H^T dZ, gb2 = sum_b dZ (per node)
        _, _, W2, _ = self.unpack(x)
        gW2 = np.matmul(H.transpose(0, 2, 1), dZ)
        gb2 = dZ.sum(axis=1)
        # 4. back through the activation, then the input layer: gW1 = Xb^T dA, gb1 = sum_b dA
        dH = np.matmul(dZ, np.swapaxes(W2, -1, -2))
        dA = dH * (1.0 - H * H) if self.activation == "tanh" else dH * (H > 0)
        gW1 = np.matmul(Xb.transpose(0, 2, 1), dA)
        gb1 = dA.sum(axis=1)
        G = np.concatenate([gW1.reshape(P, -1), gb1, gW2.reshape(P, -1), gb2], axis=1)
        if self.lam:
            G += self.lam * x
        return G

    def _accuracy(self, x):
        _, Z, _ = self._forward(self.X, x)
        return float(np.mean(Z.argmax(axis=1) == self.classes))
