"""Timing helpers shared by the CPU benchmark scripts (``benchmarks/bench_*.py``).

The scripts run as ``python benchmarks/bench_x.py``: this folder is then ``sys.path[0]`` and they
``import _timing`` like any module.

1. :func:`single_thread` pins the thread pools (Numba, OpenMP, OpenBLAS) to one thread, so that a
   number is the speed of one core; it only sets variables the caller's environment leaves unset,
   and must run before NumPy / Numba are imported (they read them once, at import).
2. :func:`best_of` times a call: the minimum of ``repeat`` wall-clock runs (the least disturbed by
   the rest of the machine), after one untimed warm-up run (Numba compilation, page faults).

Example:
    >>> best_of(lambda: sum(range(100)), repeat=3) > 0.0
    True
"""

from __future__ import annotations

import os
import time
from typing import Callable

__all__ = ["single_thread", "best_of"]

_POOLS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def single_thread() -> None:
    """Set each of NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS to 1 unless already set."""
    for name in _POOLS:
        os.environ.setdefault(name, "1")


def best_of(fn: Callable[[], object], repeat: int, warmup: bool = True) -> float:
    """Best (minimum) wall time in seconds of ``repeat`` calls of ``fn``.

    Args:
        fn: the call to time, without arguments.
        repeat: timed runs, >= 1.
        warmup: run ``fn`` once, untimed, first (off where the caller has warmed it up already).

    Returns:
        The smallest of the ``repeat`` times, in seconds.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
