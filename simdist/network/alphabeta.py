"""The alpha-beta (Hockney) network model, with a gamma term for local reductions.

A message of ``b`` bytes costs ``alpha + beta * b`` seconds (``alpha``: latency per message,
``beta``: seconds per byte, the inverse bandwidth); summing ``b`` bytes of incoming data into a
local buffer costs ``gamma * b`` seconds. This is the model in which Thakur, Rabenseifner and
Gropp (2005) state the costs of the MPICH collectives (THEORY.md section 6, and
:mod:`analysis.collectives` for the closed forms).

Pricing a trace (the convention of :mod:`simdist.collectives.trace`):

1. every message ``(round, src, dst, nbits)`` costs its sender ``alpha + beta * ceil(nbits / 8)``
   in that round (full duplex: receiving is free);
2. every reduction ``(round, rank, nbytes)`` costs that rank ``gamma * nbytes`` in that round;
3. a rank's time in a round is the sum of its costs there; a round lasts as long as its slowest
   rank; the collective lasts the sum of its rounds.

Example:
    >>> from simdist.collectives.trace import Trace
    >>> net = AlphaBeta(alpha=1e-6, beta=1e-9, gamma=0.0)
    >>> t = Trace(2)
    >>> t.add_message(0, 0, 1, 8000); t.add_message(0, 1, 0, 8000)   # 1000 bytes each way
    >>> round(net.price(t) * 1e6, 9)                                   # 1 us + 1000 ns
    2.0

References:
    R. W. Hockney, "The communication challenge for MPP: Intel Paragon and Meiko CS-2",
    Parallel Computing 20(3), 1994 (the alpha-beta model). R. Thakur, R. Rabenseifner,
    W. Gropp, "Optimization of Collective Communication Operations in MPICH", IJHPCA 19(1),
    2005, Section 2 (the cost model with alpha, beta, gamma).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_float
from .profile import cost_profile, price_profile, rank_round_totals

__all__ = ["AlphaBeta", "nbytes_of"]


def nbytes_of(nbits):
    """Bytes on the wire for ``nbits`` bits: ``ceil(nbits / 8)`` (scalar or integer array).

    Example:
        >>> nbytes_of(1), nbytes_of(8), nbytes_of(9), nbytes_of(0)
        (1, 1, 2, 0)
    """
    if isinstance(nbits, np.ndarray):
        return (nbits.astype(np.int64) + 7) // 8
    return (int(nbits) + 7) // 8


@dataclass(frozen=True)
class AlphaBeta:
    """Alpha-beta network model: ``alpha`` s per message, ``beta`` s per byte, ``gamma`` s per byte reduced.

    Args:
        alpha: latency per message in seconds (finite, >= 0).
        beta: transfer time per byte in seconds (finite, >= 0), i.e. 1 / (bytes per second).
        gamma: reduction time per byte in seconds (finite, >= 0).
        name: a label (a preset's name; free text otherwise).

    Example:
        >>> net = AlphaBeta(alpha=2e-5, beta=8e-10, gamma=2e-10, name="10gbe")
        >>> round(net.message_time(1250) * 1e6, 9)      # 20 us + 1 us, in us
        21.0
        >>> AlphaBeta.from_config(net.get_config()) == net
        True

    References:
        Hockney 1994; Thakur, Rabenseifner, Gropp 2005, Section 2.
    """

    alpha: float
    beta: float
    gamma: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        for field in ("alpha", "beta", "gamma"):
            object.__setattr__(self, field, check_float(field, getattr(self, field), low=0.0))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__} {self.name!r}")

    # -- configuration ---------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-ready dict ``{"name", "alpha", "beta", "gamma"}``; :meth:`from_config` inverts it."""
        return {"name": self.name, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    @classmethod
    def from_config(cls, config: dict) -> "AlphaBeta":
        """Build from :meth:`get_config`'s dict; unknown keys are a ValueError naming them."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"unknown network parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**config)

    def replace(self, **changes) -> "AlphaBeta":
        """A copy with some parameters changed (validated), e.g. ``net.replace(gamma=0.0)``."""
        return dataclasses.replace(self, **changes)

    # -- costs -----------------------------------------------------------------------------
    @property
    def bandwidth(self) -> float:
        """Bytes per second, ``1 / beta`` (``inf`` when beta = 0)."""
        return math.inf if self.beta == 0.0 else 1.0 / self.beta

    def message_time(self, nbytes):
        """Seconds to send one message of ``nbytes`` bytes: ``alpha + beta * nbytes``.

        Args:
            nbytes: bytes (a number >= 0, or an array of them).

        Returns:
            A float, or a float64 array of the shape of ``nbytes``.
        """
        if isinstance(nbytes, np.ndarray):
            if np.any(nbytes < 0):
                raise ValueError("nbytes must be >= 0")
            return self.alpha + self.beta * nbytes.astype(np.float64)
        nbytes = check_float("nbytes", nbytes, low=0.0)
        return self.alpha + self.beta * nbytes

    def _cost(self, totals: np.ndarray) -> np.ndarray:
        """``alpha n + beta B + gamma R`` of (..., 3) integer (messages, bytes, reduced bytes)."""
        t = totals.astype(np.float64)
        return self.alpha * t[..., 0] + self.beta * t[..., 1] + self.gamma * t[..., 2]

    def rank_round_times(self, trace) -> np.ndarray:
        """``(nrounds, size)`` seconds each rank spends in each round (steps 1-2 of the module
        docstring): ``alpha n + beta B + gamma R`` with n messages of B bytes in all sent and R
        bytes reduced (:func:`simdist.network.profile.rank_round_totals`).

        Args:
            trace: a :class:`simdist.collectives.trace.Trace` (anything with ``size``,
                ``messages()`` -> (m, 4) and ``reductions()`` -> (r, 3) integer arrays).
        """
        return self._cost(rank_round_totals(trace))

    def price_rounds(self, trace) -> np.ndarray:
        """``(nrounds,)`` seconds of each round: the slowest rank's time there (step 3)."""
        times = self.rank_round_times(trace)
        if times.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        return times.max(axis=1)

    def price(self, trace) -> float:
        """Seconds the whole collective takes: the sum over rounds of the slowest rank's time.

        Args:
            trace: the collective's :class:`~simdist.collectives.trace.Trace`.

        Returns:
            Simulated seconds (0.0 for an empty trace).
        """
        return price_profile(cost_profile(trace), self)  # = price_rounds(trace).sum(), bit for bit
