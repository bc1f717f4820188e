"""Deep Gradient Compression (DGC) as a stateful wrapper around top-k, with explicit state.

Each node keeps a velocity ``u`` (momentum correction: it accumulates momentum, not the raw
gradient) and an accumulation ``v`` (what was not sent yet), both float64, held by the caller
and passed back at every step (never hidden in the object):

    dgc = DGC(momentum=0.9, sparsity=0.999, warmup_steps=4 * steps_per_epoch)
    state = dgc.init(d)                                   # DGCState(u=0, v=0)
    payload, state = dgc.compress(g, state, step=t)       # one step of one node
    y = dgc.decompress(payload)                           # what the receivers apply
    x -= lr * mean over nodes of y                        # no further momentum: it is in u

Algorithm (one step, per row; numbered as in the code):
    1. Local gradient clipping (when ``clip_norm`` is set): g = g * clip_norm / ||g||_2 where
       ||g||_2 > clip_norm (g read in float64). The paper clips each of N nodes at N^{-1/2} times
       the global threshold; ``clip_norm`` is that per-node threshold.
    2. Momentum correction: u = momentum * u + g.
    3. Accumulation: v = v + u.
    4. Send the top-k of v with k = ceil(d * (1 - sparsity_at(step))), at least 1. The message is
       exactly ``TopK(k=k)``'s message of q = v rounded to the gradient's dtype (any top-k decoder
       reads it); c = its decoded value. Exact top-k (linear-time selection, ties to the lowest
       index) replaces the paper's sampled threshold, which is only an implementation shortcut.
    5. Clear what was sent: v = v - c (zero on the sent entries up to the float32 rounding of the
       values, which stays in v as in :class:`ErrorFeedback`; unchanged elsewhere); with
       ``momentum_masking``, u = 0 on the sent entries (momentum factor masking).
    "Sent" means an entry whose decoded value is nonzero: an index that top-k fills with a zero
    (fewer than k nonzero entries in q) carries nothing and masks nothing.

Exactness (tested): step 5 is an exact subtraction (Sterbenz: c_i is 0 or v_i rounded to
float32), so, whenever the additions of steps 2-3 are exact, the sum of the decoded messages of
all steps plus the current v equals the sum of the velocities u_t [D]. With momentum = 0, no
clipping and a constant sparsity the steps are those of ``ErrorFeedback(TopK(k))``, and the
payloads and the memory v are bitwise equal to it [D].

Warm-up schedule [M] (the stage values 75%, 93.75%, 98.4375%, 99.6%, then 99.9% are the
paper's; equal stages over ``warmup_steps`` steps are the usual form): the density 1 - sparsity
starts at 1/4 and is divided by 4 each stage while it stays above the final density, so there are
S = #{j >= 1 : 4^-j > 1 - sparsity} stages (S = 4 for 0.999). Step t < warmup_steps is in stage
j = floor(t * S / warmup_steps) with sparsity 1 - 4^-(j+1); later steps use ``sparsity``.
Sparsities are read as the shortest decimal that gives the float (``repr``), so that 0.999 means
999/1000 and k = ceil(1000 * 0.001) = 1, not the 2 that the binary value of 0.999 would give.

Wire format: none of its own; the payload is a ``topk`` payload (codec "topk", k in its header).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from .._validate import FLOAT_DTYPES, check_finite, check_float, check_int, check_like, check_matrix, check_vector
from ..errors import DecodeError, raise_decode_status
from ..registry import Registry
from .payload import Payload, PayloadBatch

__all__ = ["DGC", "DGCState"]

#: dtype of the velocity and the accumulation.
STATE_DTYPE = np.dtype(np.float64)


class DGCState(NamedTuple):
    """The state of one node (1-D arrays) or of n nodes ((n, d) arrays), both float64.

    Attributes:
        u: the velocity (momentum-corrected accumulation of gradients).
        v: the accumulation: what has not been sent yet.
    """

    u: np.ndarray
    v: np.ndarray


def _decimal(x: float) -> Fraction:
    """The shortest decimal that reads back as ``x`` (0.999 -> 999/1000), as an exact fraction."""
    return Fraction(repr(float(x)))


#: Stateful wrappers by their config name (names checked, unknown parameters refused by
#: :meth:`Registry.resolve`); apart from the compressor registry, since they are not compressors.
_STATEFUL = Registry("stateful wrapper", __package__, ())


@_STATEFUL.register
@dataclass(frozen=True)
class DGC:
    """Deep Gradient Compression: momentum correction, clipping, masking and warm-up over top-k.

    Not a :class:`Compressor` (``compress`` takes and returns the state and the step) and not in
    the compressor registry (its name is in a registry of stateful wrappers that only
    :meth:`from_config` reads); ``get_config()`` is ``{"name": "dgc", **parameters}``.

    Args:
        momentum: momentum factor m in [0, 1) (momentum correction; 0 turns it off).
        sparsity: final fraction of entries not sent, in [0, 1) (the paper uses 0.999).
        warmup_steps: steps of the exponential sparsity warm-up, an integer >= 0 (0: none).
        clip_norm: per-node L2 clipping threshold, a float > 0, or None (no clipping).
        momentum_masking: zero the velocity of the sent entries (a bool).

    Example:
        >>> import numpy as np
        >>> dgc = DGC(momentum=0.5, sparsity=0.5)
        >>> state = dgc.init(4)
        >>> g = np.array([1.0, -4.0, 2.0, 0.5], np.float32)
        >>> payload, state = dgc.compress(g, state, step=0)      # k = ceil(4 * 0.5) = 2
        >>> dgc.decompress(payload).tolist(), state.u.tolist(), state.v.tolist()
        ([0.0, -4.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.5], [1.0, 0.0, 0.0, 0.5])
        >>> payload, state = dgc.compress(g, state, step=1)      # v = [2.5, -4, 2, 1.25]
        >>> dgc.decompress(payload).tolist(), state.u.tolist(), state.v.tolist()
        ([2.5, -4.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.75], [0.0, 0.0, 2.0, 1.25])
        >>> [DGC(sparsity=0.999, warmup_steps=4).sparsity_at(t) for t in range(5)]
        [0.75, 0.9375, 0.984375, 0.99609375, 0.999]

    References:
        Lin, Han, Mao, Wang, Dally, "Deep Gradient Compression: Reducing the Communication
        Bandwidth for Distributed Training", ICLR 2018, Alg. 1-2, Sec. 3.2-3.3 (momentum
        correction, local gradient clipping, momentum factor masking, warm-up training);
        Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018 (the memory);
        THEORY.md section 5.
    """

    momentum: float = 0.9
    sparsity: float = 0.999
    warmup_steps: int = 0
    clip_norm: float | None = None
    momentum_masking: bool = True

    name = "dgc"
    #: DGC sends past (accumulated) updates: biased per step.
    unbiased = False
    #: Deterministic: ``rng`` is accepted and ignored.
    needs_rng = False

    def __post_init__(self):
        object.__setattr__(self, "momentum", check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True))
        object.__setattr__(self, "sparsity", check_float("sparsity", self.sparsity, low=0.0, high=1.0, high_open=True))
        object.__setattr__(self, "warmup_steps", check_int("warmup_steps", self.warmup_steps, low=0))
        object.__setattr__(self, "clip_norm",
                           check_float("clip_norm", self.clip_norm, low=0.0, low_open=True, allow_none=True))
        if not isinstance(self.momentum_masking, (bool, np.bool_)):
            raise TypeError(f"momentum_masking must be a bool (True or False), got "
                            f"{type(self.momentum_masking).__name__} {self.momentum_masking!r}")
        object.__setattr__(self, "momentum_masking", bool(self.momentum_masking))

    # -- schedule (pure functions of the config and the step) -------------------------------
    @property
    def warmup_stages(self) -> int:
        """S, the number of warm-up stages: the j >= 1 with 4^-j above the final density."""
        density, stages = 1 - _decimal(self.sparsity), 0
        while Fraction(1, 4 ** (stages + 1)) > density:
            stages += 1
        return stages

    def density_at(self, step: int) -> Fraction:
        """The exact fraction of entries sent at ``step`` (an integer >= 0): ``4^-(j+1)`` in warm-up
        stage j, else ``1 - sparsity`` (sparsity read as its decimal) [M]; see the module docstring."""
        step = check_int("step", step, low=0)
        stages = self.warmup_stages
        if step < self.warmup_steps and stages > 0:
            return Fraction(1, 4 ** (step * stages // self.warmup_steps + 1))
        return 1 - _decimal(self.sparsity)

    def sparsity_at(self, step: int) -> float:
        """The sparsity of step ``step``: 0.75, 0.9375, ... in the warm-up stages, then ``sparsity``."""
        return float(1 - self.density_at(step))

    def k_at(self, step: int, d: int) -> int:
        """Entries sent at ``step`` for dimension ``d``: ``max(1, ceil(d * (1 - sparsity_at(step))))``,
        computed exactly."""
        d = check_int("d", d, low=1)
        return max(1, math.ceil(d * self.density_at(step)))

    # -- state ------------------------------------------------------------------------------
    def init(self, shape, dtype=np.float32) -> DGCState:
        """Zero state for vectors of length ``d`` (``shape=d``) or a batch (``shape=(n, d)``).

        Args:
            shape: ``d`` or ``(n, d)`` (positive integers).
            dtype: dtype of the gradients it will serve (float32 or float64); the state itself
                is float64 in both cases.

        Returns:
            ``DGCState(u, v)`` of float64 zeros of that shape.
        """
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not 1 <= len(dims) <= 2:
            raise ValueError(f"shape must be d or (n, d), got {shape!r}")
        dims = tuple(check_int("shape", s, low=1) for s in dims)
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        _topk(1)._check_dim(dims[-1])  # d within the index coder's range
        return DGCState(np.zeros(dims, STATE_DTYPE), np.zeros(dims, STATE_DTYPE))

    # -- one step ---------------------------------------------------------------------------
    def compress(self, x: np.ndarray, state: DGCState, step: int, rng=None) -> tuple[Payload, DGCState]:
        """One DGC step of one node.

        Args:
            x: the gradient, a 1-D finite float32/float64 vector.
            state: the node's :class:`DGCState` (from :meth:`init` or the previous step).
            step: the global step (an integer >= 0; it sets the warm-up sparsity).
            rng: ignored (DGC is deterministic); accepted so DGC stands where ErrorFeedback does.

        Returns:
            ``(payload, new_state)``: a ``topk`` payload; the old state is not modified.
        """
        x = check_vector("x", x)
        batch, new = self._step(x[None, :], state, step, x.shape)
        return batch[0], new

    def compress_batch(self, X: np.ndarray, state: DGCState, step: int, rngs=None) -> tuple[PayloadBatch, DGCState]:
        """One DGC step for every row of an (n, d) matrix (one node per row, vectorized).

        Args:
            X: (n, d) finite float32/float64 gradients.
            state: :class:`DGCState` of (n, d) arrays.
            step: the global step (an integer >= 0).
            rngs: ignored (DGC is deterministic).

        Returns:
            ``(batch, new_state)``; row i equals ``compress(X[i], DGCState(u[i], v[i]), step)``.
        """
        X = check_matrix("X", X)
        return self._step(X, state, step, X.shape)

    def _step(self, X, state, step, shape) -> tuple[PayloadBatch, DGCState]:
        if not isinstance(state, DGCState):
            raise TypeError(f"state must be a DGCState (from init(...)), got {type(state).__name__}")
        for name, a in (("state.u", state.u), ("state.v", state.v)):
            check_like(name, a, shape, STATE_DTYPE)
            check_finite(name, a)
        topk = _topk(self.k_at(step, X.shape[1]))
        G = X.astype(STATE_DTYPE)  # a copy: clipped in place
        if self.clip_norm is not None:  # 1. local gradient clipping
            self._clip(G)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: checked on Q below
            U = self.momentum * state.u.reshape(G.shape) + G  # 2. momentum correction
            V = state.v.reshape(G.shape) + U  # 3. accumulation
            Q = V.astype(X.dtype, copy=False)
        if not np.all(np.isfinite(Q)):
            raise ValueError(f"the accumulation v = v + u overflows {X.dtype} (state or gradients too large)")
        batch = topk.compress_batch(Q)  # 4. top-k of the accumulation, TopK's message
        C = topk.decompress_batch(batch)
        V -= C  # 5. clear what was sent (exact: Sterbenz)
        if self.momentum_masking:
            U[C != 0] = 0.0  # momentum factor masking
        return batch, DGCState(U.reshape(shape), V.reshape(shape))

    def _clip(self, G: np.ndarray) -> None:
        """Step 1 in place: scale each row with ||g||_2 > clip_norm to norm clip_norm."""
        with np.errstate(over="ignore"):
            norms = np.sqrt(np.sum(G * G, axis=1))
        if not np.all(np.isfinite(norms)):
            raise ValueError("x: the L2 norm of a gradient overflows float64 (needed by clip_norm)")
        over = norms > self.clip_norm
        G[over] *= (self.clip_norm / norms[over])[:, None]

    # -- receiver side ----------------------------------------------------------------------
    def decompress(self, payload: Payload) -> np.ndarray:
        """Decode one payload (any k: it is read from the message's header)."""
        if not isinstance(payload, Payload):
            raise TypeError(f"payload must be a Payload, got {type(payload).__name__}")
        return _reader(payload.data, 0, payload.nbytes, payload.dim).decompress(payload)

    def decompress_batch(self, batch: PayloadBatch) -> np.ndarray:
        """Decode every row of a batch (the rows of one step share their k)."""
        if not isinstance(batch, PayloadBatch):
            raise TypeError(f"batch must be a PayloadBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            return _topk(1).decompress_batch(batch)
        return _reader(batch.buffer, int(batch.offsets[0]), int(batch.offsets[1]), batch.dim).decompress_batch(batch)

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        """``{"name": "dgc", "momentum": ..., "sparsity": ..., "warmup_steps": ..., "clip_norm": ...,
        "momentum_masking": ...}`` (JSON-ready)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_config(cls, config) -> "DGC":
        """Inverse of :meth:`get_config` (the dict or its JSON string; missing keys take defaults).

        Raises:
            ValueError: another name than "dgc", or an unknown or out-of-range parameter.
            TypeError: not a dict, or a parameter of the wrong type.
        """
        if isinstance(config, str):
            config = json.loads(config)
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict or its JSON string, got {type(config).__name__}")
        _, params = _STATEFUL.resolve(config, {})
        return cls(**params)

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name}({params})"


def _topk(k: int):
    """``TopK(k=k)`` (imported on first use: it loads the Numba kernels, which
    ``import simdist.compressors`` does not)."""
    from .topk import TopK

    return TopK(k=k)


def _reader(buffer, start: int, stop: int, d: int):
    """The TopK whose decoder reads the message at ``buffer[start:stop]`` (k from its header)."""
    from ..coding.indices import get_index_header

    if not (isinstance(buffer, np.ndarray) and buffer.dtype == np.uint8 and buffer.ndim == 1):
        raise TypeError(f"dgc decodes host messages (a 1-D uint8 numpy buffer), got {type(buffer).__name__}")
    if not 0 <= start <= stop <= buffer.shape[0]:
        raise DecodeError(f"dgc: message bytes [{start}, {stop}) outside a buffer of {buffer.shape[0]} bytes")
    k, _, pos = get_index_header(buffer, 8 * stop, 8 * start, d)
    raise_decode_status(min(int(pos), 0), "dgc (topk message header)")
    if k == 0:
        raise DecodeError("dgc: the message sends no entry (a top-k message has k >= 1)")
    return _topk(int(k))
