"""Parameter and data validation shared by every public entry point.

Each check raises ``ValueError``/``TypeError`` whose message names the parameter
and the allowed range, so a user knows what to change.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_int",
    "check_float",
    "check_choice",
    "check_vector",
    "check_matrix",
    "check_like",
    "check_finite",
    "check_generator",
    "check_out",
    "NonFiniteInput",
    "FLOAT_DTYPES",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_int(name: str, value, *, low: int | None = None, high: int | None = None, allow_none: bool = False):
    """Return ``value`` as an int after checking ``low <= value <= high``.

    Raises:
        TypeError: ``value`` is not an integer (bools are refused too).
        ValueError: ``value`` is outside ``[low, high]``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{_fmt(low, '-inf')}, {_fmt(high, 'inf')}], got {value}")
    return value


def check_float(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
):
    """Return ``value`` as a finite float inside the given (optionally open) interval."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{_fmt(low, '-inf')}, {_fmt(high, 'inf')}{hi}, got {value!r}")
    return value


def check_choice(name: str, value, choices):
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(map(str, choices))}, got {value!r}")
    return value


class NonFiniteInput(ValueError):
    """Raised by an encode kernel that found NaN or Inf in its input (a compressor with
    ``checks_finite = True``); the caller re-raises it as :func:`check_finite`'s error, which
    names the parameter, the first bad flat index and the count."""


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise ValueError naming ``name``, the first bad flat index and the count of NaN/Inf in x."""
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x.ravel()))
        raise ValueError(
            f"{name} must be finite; found NaN or Inf at flat index {int(bad[0])} ({bad.size} bad entries)"
        )


def _check_array(name: str, x, ndim: int, finite: bool) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must be non-empty (dimension >= 1), got shape {x.shape}")
    if finite:
        check_finite(name, x)
    return np.ascontiguousarray(x)


def check_vector(name: str, x, *, finite: bool = True) -> np.ndarray:
    """Validate a 1-D, non-empty, finite float32/float64 array; return it C-contiguous.

    ``finite=False`` skips the NaN/Inf pass (for callers whose kernel detects them itself and
    raises :class:`NonFiniteInput`; see ``Compressor.checks_finite``).
    """
    return _check_array(name, x, 1, finite)


def check_matrix(name: str, x, *, finite: bool = True) -> np.ndarray:
    """Validate a 2-D (nodes, dim) finite float32/float64 array; return it C-contiguous
    (``finite`` as in :func:`check_vector`)."""
    return _check_array(name, x, 2, finite)


def check_like(name: str, a, shape: tuple, dtype) -> np.ndarray:
    """Validate an input array that must match another exactly: an ndarray of ``dtype`` and
    ``shape``, C-contiguous (no copy is made: the caller reads or updates it in place).

    Raises:
        ValueError: naming ``name``, the required dtype and shape, and what was given.
    """
    if (not isinstance(a, np.ndarray) or a.dtype != np.dtype(dtype) or a.shape != tuple(shape)
            or not a.flags.c_contiguous):
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, got "
                         f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    return a


def check_out(name: str, out, shape: tuple, dtype, source=None) -> np.ndarray:
    """Validate a caller's output array: an ndarray of ``dtype`` and ``shape``, C-contiguous,
    writable, and sharing no memory with ``source`` (the input it is computed from).

    Raises:
        TypeError: ``out`` is not an ndarray or has the wrong dtype.
        ValueError: wrong shape, not C-contiguous, read-only, or overlapping ``source``.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (e.g. numpy.empty{tuple(shape)}), got strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable, got a read-only array")
    if source is not None and np.may_share_memory(out, source):
        raise ValueError(f"{name} must not share memory with the message it is decoded from")
    return out


def check_generator(name: str, rng) -> np.random.Generator:
    """Check that ``rng`` is a ``numpy.random.Generator`` (no global RNG is ever used)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def _fmt(v, missing: str) -> str:
    return missing if v is None else str(v)
