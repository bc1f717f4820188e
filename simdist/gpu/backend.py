"""Array-namespace dispatch for the GPU path: which backend does this array live on?

The backend is read off the array passed in (the ``array_namespace(x)`` idiom of DESIGN.md),
never from a global flag:

* :func:`is_device_array`: True for CuPy arrays, torch CUDA tensors, Numba device arrays and any
  object exposing ``__cuda_array_interface__``; False for NumPy arrays, CPU tensors, lists.
* :func:`array_namespace`: ``cupy`` for a CuPy (or other CUDA) array when CuPy is installed,
  else ``numpy``.
* :func:`to_host`: a NumPy copy of a device array (a no-op view for NumPy input).

Nothing here imports CuPy or ``numba.cuda`` unless the array in hand already belongs to them,
so importing this module is free on a machine without a GPU.

Example:
    >>> import numpy as np
    >>> is_device_array(np.zeros(3)), array_namespace(np.zeros(3)).__name__
    (False, 'numpy')
    >>> to_host(np.arange(3)).tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["is_device_array", "array_namespace", "to_host"]


def _numba_device_array(x) -> bool:
    """True for a ``numba.cuda`` device array (real or the simulator's), without importing numba.cuda."""
    mod = type(x).__module__ or ""
    return mod.startswith("numba.cuda") and hasattr(x, "copy_to_host")


def is_device_array(x) -> bool:
    """True when ``x`` lives in CUDA device memory (CuPy, torch CUDA, Numba device arrays).

    Args:
        x: any object.

    Returns:
        True for objects that expose ``__cuda_array_interface__`` (CuPy arrays, torch CUDA
        tensors, Numba device arrays) and for the CUDA simulator's device arrays.
    """
    if isinstance(x, np.ndarray):
        return False
    try:
        if hasattr(x, "__cuda_array_interface__"):  # torch CPU tensors raise AttributeError: False
            return True
    except Exception:  # noqa: BLE001 (an interface property that fails means: not usable as CUDA)
        return False
    return _numba_device_array(x)


def array_namespace(x):
    """The array module matching ``x``: ``cupy`` for CUDA arrays when CuPy is installed, else ``numpy``."""
    if is_device_array(x) and "cupy" in sys.modules or type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_host(x) -> np.ndarray:
    """A NumPy array with the contents of ``x`` (device -> host copy; NumPy input is returned as is)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "__cuda_array_interface__"):  # torch CUDA and other producers: go through Numba
        from numba import cuda

        return cuda.as_cuda_array(x).copy_to_host()
    return np.asarray(x)
