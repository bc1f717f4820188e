"""Learning-rate schedules: constant, 1/t, and the step sizes the theorems prescribe.

A schedule is a frozen config with ``__call__(t) -> lr`` for step t = 0, 1, ...; the
registry builds one from a number (constant), a name, or a config dict.

Example:
    >>> make(0.1)(5)
    0.1
    >>> make({"name": "inverse_time", "lr0": 1.0, "t0": 10})(10)
    0.5
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

from .._validate import check_float, check_int

__all__ = ["Schedule", "Constant", "InverseTime", "BubeckConvex", "make", "available"]

_REGISTRY: dict[str, type] = {}


def _register(cls):
    if cls.name in _REGISTRY:
        raise ValueError(f"a schedule named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


class Schedule:
    """Base class: ``lr = schedule(t)``."""

    name: ClassVar[str] = ""

    def __call__(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        """JSON-ready config."""
        return {"name": self.name, **dataclasses.asdict(self)}


@_register
@dataclass(frozen=True)
class Constant(Schedule):
    """lr(t) = lr (> 0)."""

    name: ClassVar[str] = "constant"
    lr: float = 0.1

    def __post_init__(self):
        check_float("lr", self.lr, low=0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(self.lr)


@_register
@dataclass(frozen=True)
class InverseTime(Schedule):
    """lr(t) = lr0 / (1 + t / t0): the 1/t decay of strongly convex SGD (t0 > 0 steps)."""

    name: ClassVar[str] = "inverse_time"
    lr0: float = 0.1
    t0: float = 1.0

    def __post_init__(self):
        check_float("lr0", self.lr0, low=0.0, low_open=True)
        check_float("t0", self.t0, low=0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(self.lr0 / (1.0 + t / self.t0))


@_register
@dataclass(frozen=True)
class BubeckConvex(Schedule):
    """The constant step of Bubeck (2015) Theorem 6.3 (QSGD Theorem 2.1) [V]:
    eta = 1 / (L + 1/gamma), gamma = (R / sigma) sqrt(2 / T), for T steps with gradient variance sigma^2.

    With ``sigma2 = 0`` the step is 1/L. Pass the variance of the *averaged* gradient (sigma^2 / P for
    P nodes) to get the parallel rate R sqrt(2 sigma^2 / (P T)) + L R^2 / T.

    References:
        S. Bubeck, "Convex Optimization: Algorithms and Complexity", 2015, Theorem 6.3.
    """

    name: ClassVar[str] = "bubeck"
    L: float = 1.0
    R: float = 1.0
    sigma2: float = 1.0
    T: int = 100

    def __post_init__(self):
        check_float("L", self.L, low=0.0, low_open=True)
        check_float("R", self.R, low=0.0, low_open=True)
        check_float("sigma2", self.sigma2, low=0.0)
        check_int("T", self.T, low=1)

    def __call__(self, t: int) -> float:
        if self.sigma2 == 0:
            return 1.0 / self.L
        gamma = self.R / math.sqrt(self.sigma2) * math.sqrt(2.0 / self.T)
        return 1.0 / (self.L + 1.0 / gamma)


def available() -> list[str]:
    """Registered schedule names."""
    return sorted(_REGISTRY)


def make(spec) -> Schedule:
    """A schedule from a positive number (constant), a name, a config dict, or a Schedule."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return Constant(float(spec))
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f"lr must be a positive number, a schedule name or a config dict, got {spec!r}")
    params = dict(spec)
    name = params.pop("name")
    if name not in _REGISTRY:
        raise ValueError(f"unknown lr schedule {name!r}; available: {', '.join(available())}")
    cls = _REGISTRY[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    if set(params) - allowed:
        raise ValueError(f"unknown parameter(s) {sorted(set(params) - allowed)} for schedule {name!r}; allowed: {sorted(allowed)}")
    return cls(**params)
