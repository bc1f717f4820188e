"""Error feedback (memory) as a wrapper around any compressor, with explicit state.

EF-SGD / 1BitSGD's carried error / Mem-SGD: each node keeps the part of its updates that the
compressor did not send and adds it to the next one. The wrapper is a frozen config; the
memory is an ordinary array that the caller holds and passes back (never hidden in the object):

    ef = ErrorFeedback(make("topk", k=10))
    state = ef.init(d)                              # zeros (float64, see "Precision")
    payload, state = ef.compress(x, state, rng)     # one step
    y = ef.decompress(payload)                      # what the receiver gets

Algorithm (one step, per row; numbered as in the code):
    1. r = x + e_old, computed in float64 (the accumulated vector).
    2. q = r rounded to x.dtype (a no-op for float64 x): the compressor's input.
    3. payload = C(q); c = decompress(payload) (exactly what the receiver decodes).
    4. e_new = r - c, computed in float64 (the new memory).

Wire format: none of its own. The payload is the wrapped compressor's message, byte for byte
(same ``nbits``, same codec name); the memory never travels.

Precision and exactness of ``x + e_old == decompress(payload) + e_new``:
    The memory is kept in float64 for float32 and float64 gradients alike (for float32 x the
    rounding of step 2 is carried in the memory instead of being lost). Evaluated the way NumPy
    evaluates it (both sides in float64), the invariant is bitwise exact whenever step 4 is an
    exact subtraction, because the left side is r by definition (step 1). By the Sterbenz lemma
    step 4 is exact for every entry with c_i = 0 or r_i/2 <= c_i <= 2 r_i. Every compressor whose
    decoded entries are either dropped or the (accumulated) input entry rounded to float32 or
    float16 satisfies that for every input (the rounding of a nonzero r_i to the nearest of a
    binary grid is 0 or within a factor 2 of r_i): identity, fp16, topk, randk(scaled=False),
    threshold, and chains of these. For those compressors the invariant holds bitwise for
    every input; it is tested so on random inputs in float32 and float64.

    It cannot hold for every compressor with one float per entry. Where a compressor can send
    |c_i| > 2|r_i| (QSGD/NUQSGD/TernGrad rounding a small entry up to the first level; sign,
    scaled sign and 1BitSGD; scaled rand-k; chains ending in them), every float64 e gives a sum
    c_i + e on a grid of spacing at least ulp(c_i)/2 near r_i, so no float64 memory makes both
    sides equal unless r_i lies on that grid. There the step is exact up to one rounding of
    step 4 (u = 2**-53): |fl(c + e_new) - fl(x + e_old)| <= u (|r| + (1 + u)|r - c|) entrywise,
    which is what the tests check for them (and the entries meeting the Sterbenz condition are
    still bitwise exact). In real arithmetic x + e_old = c + e_new holds exactly when steps 1
    and 4 are both exact; for float32 x step 1 is exact as long as the binary digits of
    x_i + e_old_i fit in 53 bits (accumulated entries within about 2**29 of each other).

Args (constructor):
    compressor: the wrapped compressor (a Compressor, a registered name or a config dict).

Example:
    >>> import numpy as np
    >>> from simdist.compressors import make
    >>> ef = ErrorFeedback(make("identity"))
    >>> x = np.array([0.5, -1.0], np.float32)
    >>> state = ef.init(2, dtype=np.float32)
    >>> payload, state = ef.compress(x, state)
    >>> ef.decompress(payload).tolist(), state.tolist()
    ([0.5, -1.0], [0.0, 0.0])

References:
    Seide, Fu, Droppo, Li, Yu, "1-bit stochastic gradient descent ...", Interspeech 2014
    (quantization error carried to the next minibatch); Stich, Cordonnier, Jaggi, "Sparsified
    SGD with memory", NeurIPS 2018 (Mem-SGD, Alg. 1); Karimireddy, Rebjock, Stich, Jaggi,
    "Error feedback fixes SignSGD ...", ICML 2019 (EF-SGD, Alg. 2; Theorem II for the rate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .._validate import FLOAT_DTYPES, check_int, check_matrix, check_vector
from .base import Compressor
from .payload import Payload, PayloadBatch

__all__ = ["ErrorFeedback"]

#: dtype of the memory (see "Precision and exactness" above).
MEMORY_DTYPE = np.dtype(np.float64)


@dataclass(frozen=True)
class ErrorFeedback:
    """Wrap ``compressor`` with an error-feedback memory held by the caller.

    Not a :class:`Compressor` (its ``compress`` takes and returns the state) and not in the
    compressor registry; ``get_config()`` is ``{"name": "error_feedback", "compressor": {...}}``.
    """

    compressor: Compressor

    name = "error_feedback"
    #: EF is deliberately biased per step (it sends past errors); it is unbiased only on average.
    unbiased = False

    def __post_init__(self):
        c = self.compressor
        if isinstance(c, (dict, str)):
            from .registry import make

            try:
                c = make(c)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"compressor: {exc}") from None
        if isinstance(c, ErrorFeedback):
            raise TypeError("compressor must be a plain compressor, not another ErrorFeedback (one memory is enough)")
        if not isinstance(c, Compressor):
            raise TypeError(
                f"compressor must be a simdist Compressor, a registered name or a config dict, got {type(c).__name__}"
            )
        object.__setattr__(self, "compressor", c)

    @property
    def needs_rng(self) -> bool:
        """True when the wrapped compressor needs a generator."""
        return self.compressor.needs_rng

    # -- state ------------------------------------------------------------------------------
    def init(self, shape, dtype=np.float32) -> np.ndarray:
        """Zero memory for vectors of length ``d`` (``shape=d``) or a batch (``shape=(n, d)``).

        Args:
            shape: ``d`` or ``(n, d)`` (positive integers).
            dtype: dtype of the gradients it will serve (float32 or float64). The memory itself
                is float64 in both cases (see the module docstring).

        Returns:
            A float64 array of zeros of that shape.
        """
        dims = (shape,) if not isinstance(shape, (tuple, list)) else tuple(shape)
        if not 1 <= len(dims) <= 2:
            raise ValueError(f"shape must be d or (n, d), got {shape!r}")
        dims = tuple(check_int("shape", s, low=1) for s in dims)
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.compressor._check_dim(dims[-1])
        return np.zeros(dims, dtype=MEMORY_DTYPE)

    # -- one step ---------------------------------------------------------------------------
    def compress(self, x: np.ndarray, state: np.ndarray, rng=None) -> tuple[Payload, np.ndarray]:
        """One error-feedback step on a vector.

        Args:
            x: 1-D float32/float64 vector (finite).
            state: the memory from :meth:`init` or the previous step (float64, shape of x).
            rng: generator for a randomized compressor.

        Returns:
            ``(payload, new_state)``; the old state is not modified.
        """
        x = check_vector("x", x)
        q, r = self._accumulate(x, state)
        payload = self.compressor.compress(q, rng)  # step 3
        return payload, r - self.compressor.decompress(payload)  # step 4

    def compress_batch(self, X: np.ndarray, state: np.ndarray, rng=None) -> tuple[PayloadBatch, np.ndarray]:
        """One step for every row of an (n, d) matrix (one compressor batch call).

        Args:
            X: (n, d) float32/float64 matrix, one row per node.
            state: (n, d) float64 memory.
            rng: one Generator or n Generators, as in :meth:`Compressor.compress_batch`
                (with n Generators row i equals ``compress(X[i], state[i], rng[i])``).

        Returns:
            ``(batch, new_state)``.
        """
        X = check_matrix("X", X)
        Q, R = self._accumulate(X, state)
        batch = self.compressor.compress_batch(Q, rng)  # step 3
        return batch, R - self.compressor.decompress_batch(batch)  # step 4

    def _accumulate(self, x, state):
        if not isinstance(state, np.ndarray):
            raise TypeError(f"state must be a numpy.ndarray (from init), got {type(state).__name__}")
        if state.shape != x.shape:
            raise ValueError(f"state must have the shape of x {x.shape}, got {state.shape}")
        if state.dtype != MEMORY_DTYPE:
            raise ValueError(f"state must be the float64 memory returned by init(...), got dtype {state.dtype}")
        if not np.all(np.isfinite(state)):
            raise ValueError("state must be finite; the memory holds NaN or Inf")
        r = x.astype(MEMORY_DTYPE) + state  # step 1
        with np.errstate(over="ignore"):
            q = r.astype(x.dtype)  # step 2
        if not np.all(np.isfinite(q)):
            raise ValueError(f"x + state overflows {x.dtype} (|x + state| too large for the compressor's input)")
        return q, r

    # -- receiver side ----------------------------------------------------------------------
    def decompress(self, payload: Payload) -> np.ndarray:
        """Decode a payload (the wrapped compressor's decoder)."""
        return self.compressor.decompress(payload)

    def decompress_batch(self, batch: PayloadBatch) -> np.ndarray:
        """Decode every row of a batch."""
        return self.compressor.decompress_batch(batch)

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        """``{"name": "error_feedback", "compressor": <the wrapped compressor's config>}``."""
        return {"name": self.name, "compressor": self.compressor.get_config()}

    @classmethod
    def from_config(cls, config) -> "ErrorFeedback":
        """Inverse of :meth:`get_config` (accepts the dict or its JSON string)."""
        if isinstance(config, str):
            config = json.loads(config)
        if not isinstance(config, dict) or config.get("name") != cls.name:
            raise ValueError(f"config must be a dict with name {cls.name!r}, got {config!r}")
        extra = set(config) - {"name", "compressor"}
        if extra or "compressor" not in config:
            raise ValueError(f"config for {cls.name!r} takes exactly the key 'compressor', got {sorted(config)}")
        return cls(config["compressor"])

    def __str__(self) -> str:
        return f"{self.name}({self.compressor})"
