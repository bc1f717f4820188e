"""Argument checks shared by the analysis functions (thin wrappers over simdist._validate)."""

from __future__ import annotations

import numpy as np

from simdist._validate import check_float, check_int

__all__ = ["check_int", "check_float", "as_vector", "check_pos", "check_nonneg", "norm2"]


def as_vector(name: str, v) -> np.ndarray:
    """Return ``v`` as a finite, non-empty, 1-D float64 array (ValueError/TypeError otherwise)."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of real numbers, got {type(v).__name__}") from exc
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or Inf)")
    return a


def check_pos(name: str, value) -> float:
    """A finite float > 0."""
    return check_float(name, value, low=0.0, low_open=True)


def check_nonneg(name: str, value) -> float:
    """A finite float >= 0."""
    return check_float(name, value, low=0.0)


def norm2(v: np.ndarray) -> float:
    """``||v||_2`` without underflow or overflow (scaled by ``max|v_i|``)."""
    m = float(np.max(np.abs(v)))
    if m == 0.0 or not np.isfinite(m):
        return m
    w = v / m
    return m * float(np.sqrt(w @ w))
