"""Device arrays of any producer, as the compressor API sees them: shape, dtype, kind, conversions.

The GPU path accepts CuPy arrays, torch CUDA tensors, Numba device arrays (and, under Numba's CUDA
simulator, the simulator's device arrays). The kernels of :mod:`simdist.gpu.codecs` return Numba
device arrays (CuPy arrays for CuPy input); this module hands results back in the caller's kind:

* :func:`kind`: ``"cupy"``, ``"torch"`` or ``"numba"`` (any other ``__cuda_array_interface__``
  producer counts as ``"numba"``: results come back as Numba device arrays);
* :func:`shape_dtype`: shape and NumPy dtype, read from the CUDA array interface (no host copy);
* :func:`check_device_array`: the compressor API's input check (ndim, dtype, non-empty);
* :func:`as_kind`: a Numba or CuPy device result as an array of the caller's kind, zero-copy
  (torch via the CUDA array interface, on the caller's tensor's device);
* :func:`last_bytes`: the last byte of every row of a device message buffer, on the host (one
  small kernel and an n-byte copy), for the zero-padding check of the decoders;
* :func:`check_device_out` / :func:`copy_into`: the ``out=`` argument of the decoders.

Example (on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; else on a host array):
    >>> import numpy as np
    >>> from numba import cuda
    >>> x = np.ones((2, 3), np.float32)
    >>> x = cuda.to_device(x) if cuda.is_available() else x
    >>> kind(x), shape_dtype(x)
    ('numba', ((2, 3), dtype('float32')))
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._validate import FLOAT_DTYPES
from .codecs import _as_kernel_array

__all__ = ["kind", "shape_dtype", "check_device_array", "as_kind", "last_bytes", "check_device_out", "copy_into"]


def _module(x) -> str:
    return (type(x).__module__ or "").split(".", 1)[0]


def kind(x) -> str:
    """``"cupy"``, ``"torch"`` or ``"numba"``: the kind of array results are returned as."""
    mod = _module(x)
    return mod if mod in ("cupy", "torch") else "numba"


def shape_dtype(x) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and NumPy dtype of a device array (from ``__cuda_array_interface__`` where it has one).

    Raises:
        TypeError: the array cannot export its CUDA interface (e.g. a torch tensor that requires grad).
    """
    try:
        cai = x.__cuda_array_interface__
    except AttributeError:  # the simulator's arrays have no interface (and torch raises it for CPU tensors)
        return tuple(x.shape), np.dtype(x.dtype)
    except RuntimeError as exc:  # torch: "Can't get __cuda_array_interface__ on Variable that requires grad"
        raise TypeError(f"cannot read the device array ({exc}); pass tensor.detach()") from None
    return tuple(int(s) for s in cai["shape"]), np.dtype(cai["typestr"])


def check_device_array(name: str, x, ndim: int) -> tuple[tuple[int, ...], np.dtype]:
    """Check a device input as ``check_vector``/``check_matrix`` check host input, without copying it.

    NaN/Inf are left to the kernels (they raise :class:`simdist._validate.NonFiniteInput`).

    Returns:
        ``(shape, dtype)``.

    Raises:
        TypeError: dtype not float32/float64. ValueError: wrong ndim, or empty.
    """
    shape, dtype = shape_dtype(x)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}")
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} must be non-empty (dimension >= 1), got shape {shape}")
    return shape, dtype


def as_kind(y, like):
    """``y`` (a Numba or CuPy device array) as an array of the kind of ``like``, sharing its memory."""
    want = kind(like)
    if kind(y) == want or want == "numba":
        return y
    if want == "cupy":
        import cupy

        return cupy.asarray(y)
    import torch

    return torch.as_tensor(y, device=like.device)  # zero-copy through the CUDA array interface


@cuda.jit
def _gather_last(buf, offsets, out):
    """out[i] = the last byte of row i (offsets[i] < offsets[i+1]), else 0."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        lo, hi = offsets[i], offsets[i + 1]
        out[i] = buf[hi - 1] if hi > lo else 0


def last_bytes(buffer, offsets: np.ndarray) -> np.ndarray:
    """The last byte of each row of a device buffer, as a host int64 array (0 for an empty row).

    ``offsets`` must already be checked (0 <= offsets[i] <= offsets[i+1] <= buffer size).
    """
    n = offsets.shape[0] - 1
    if n == 0 or int(offsets[-1]) == 0:
        return np.zeros(n, np.int64)
    out = cuda.device_array(n, np.int64)
    _gather_last[max(1, -(-n // 128)), 128](_as_kernel_array(buffer), cuda.to_device(offsets), out)
    return out.copy_to_host()


def check_device_out(name: str, out, shape: tuple, dtype) -> None:
    """``out=`` for a device result: a device array of ``shape`` and ``dtype`` (TypeError/ValueError)."""
    from .backend import is_device_array

    if not is_device_array(out):
        raise TypeError(f"{name} must be a device array for a payload held on the device, got {type(out).__name__}")
    got_shape, got_dtype = shape_dtype(out)
    if got_dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {got_dtype}")
    if got_shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {got_shape}")


def copy_into(out, y) -> None:
    """Copy the device array ``y`` into the device array ``out`` of the same shape (device to device)."""
    if hasattr(out, "copy_to_device"):  # Numba (and the simulator's) device arrays
        out.copy_to_device(_as_kernel_array(y))
        return
    out[...] = as_kind(y, out)
