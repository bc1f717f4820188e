"""Host wrappers of the CUDA kernels: device arrays in, the CPU path's exact bytes out (on the device).

Each function takes the (n, d) matrix (or a 1-D vector, one row) where it lives: a CuPy array,
a torch CUDA tensor, a Numba device array, or (under Numba's CUDA simulator, and accepted but
slow on a real GPU) a NumPy array. It launches the kernels of :mod:`simdist.gpu.kernels` and
returns what a compressor's ``_encode_batch`` returns, with the message buffer left on the
device:

    buffer, offsets, nbits = compress_sign(X, scaled=True, bucket=512)
    buffer, offsets, nbits = compress_qsgd_fixed(X, keys, s=4, bucket=512)

``buffer`` is a uint8 device array (a CuPy array when the input is one; otherwise a Numba
device array) holding the row messages back to back; ``offsets`` (n+1) and ``nbits`` (n) are
small NumPy arrays (both formats are fixed-width, so they follow from (n, d)). The bytes are
identical to those of ``Sign(...).compress_batch`` and ``QSGD(encoding="fixed", ...)`` for the
same input and keys (``keys = simdist.rng.draw_keys(rng, n)``); :func:`simdist.gpu.backend.to_host`
brings them to the host. The decoders take the buffer (device or host) and return the values
on the device, raising :class:`simdist.DecodeError` like the CPU decoders.

``Compressor.compress`` / ``decompress`` reach these functions through :mod:`simdist.gpu.dispatch`
when given a device array (the other codecs live in ``codecs_<name>.py`` modules beside this one).

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; otherwise the CPU path):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.sign import Sign
    >>> x = np.array([[1.0, -3.0, 0.0, 2.0]], np.float32)
    >>> if cuda.is_available():
    ...     from simdist.gpu.backend import to_host
    ...     buf, offsets, nbits = compress_sign(x)
    ...     data = to_host(buf).tobytes()
    ... else:
    ...     data = Sign().compress(x[0]).to_bytes()
    >>> data == Sign().compress(x[0]).to_bytes()
    True

References:
    Wire formats: :mod:`simdist.compressors.sign` (Karimireddy et al., ICML 2019, Section 3) and
    :mod:`simdist.compressors.qsgd` (Alistarh et al., NeurIPS 2017, Sec. 3.1, fixed-width variant).
"""

from __future__ import annotations

import numpy as np

from .._validate import NonFiniteInput, check_int
from ..errors import DecodeError, raise_decode_status
from . import kernels as K
from .backend import is_device_array

__all__ = ["compress_sign", "decompress_sign", "compress_qsgd_fixed", "decompress_qsgd_fixed"]


def _cuda():
    from numba import cuda

    return cuda


def _grid(count: int) -> int:
    return max(1, -(-count // K.TPB))


def _as_kernel_array(x):
    """What a kernel accepts: Numba device arrays and NumPy as they are, other CUDA arrays via the interface."""
    if isinstance(x, np.ndarray) or hasattr(x, "copy_to_host"):
        return x
    return _cuda().as_cuda_array(x)  # CuPy, torch CUDA: zero-copy


def _like_input(dev, x):
    """Return ``dev`` (a Numba device array) as a CuPy array when the input ``x`` was one (zero-copy)."""
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy.asarray(dev)
    return dev


def _rows(X):
    if len(X.shape) == 1:
        X = X.reshape(1, X.shape[0])
    if len(X.shape) != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 1-D vector or (n, d) matrix, got shape {tuple(X.shape)}")
    if np.dtype(X.dtype) not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got {X.dtype}")
    return X


def _flag_error(flag, X, what: str, norm: str) -> None:
    f = int(_to_np(flag)[0])
    if f == 0:
        return
    if f == 1 and not np.all(np.isfinite(_to_np(X))):  # the exact check, on the error path only
        raise NonFiniteInput("X holds NaN or Inf")
    raise ValueError(f"x is too large for {what}: a bucket's {norm} exceeds the float32 range (3.4e38); "
                     f"the scale is sent as float32")


def _to_np(a):
    from .backend import to_host

    return to_host(a)


def compress_sign(X, *, scaled: bool = True, bucket: int | None = None):
    """Scaled sign (or plain signSGD) of every row of X, on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array (see the module docstring).
        scaled: send one float32 ``||x_B||_1 / |B|`` per bucket (as :class:`~simdist.compressors.sign.Sign`).
        bucket: bucket length (None: the whole row).

    Returns:
        ``(buffer, offsets, nbits)``: the messages (uint8, on the device), n+1 byte offsets, n bit counts.

    Raises:
        NonFiniteInput: X holds NaN/Inf (scaled only; found by the scale kernel).
        ValueError: a float64 bucket scale exceeds the float32 range.
    """
    cuda = _cuda()
    X = _rows(X)
    n, d = X.shape
    b = d if (bucket is None or not scaled) else min(check_int("bucket", bucket, low=1), d)
    nb = -(-d // b)
    nbits = (32 * nb if scaled else 0) + d
    rowbytes = (nbits + 7) >> 3
    Xk = _as_kernel_array(X)
    buf = cuda.device_array(n * rowbytes, np.uint8)
    bits = cuda.device_array((n, nb), np.int64)
    if scaled:
        lanes = cuda.device_array((n, nb, 8), np.float64)
        flag = cuda.to_device(np.zeros(1, np.int32))
        K.abs_lanes[_grid(n * nb * 8), K.TPB](Xk, b, lanes)
        K.sign_scales[_grid(n * nb), K.TPB](lanes, b, d, bits, flag)
        _flag_error(flag, X, "sign", "mean |x|")
    K.sign_pack[_grid(n * rowbytes), K.TPB](Xk, bits, scaled, buf, rowbytes)
    offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
    return _like_input(buf, X), offsets, np.full(n, nbits, np.int64)


def compress_qsgd_fixed(X, keys, *, s: int, bucket: int | None = None, norm: str = "l2"):
    """QSGD with fixed-width level codes (``QSGD(s, norm, bucket, encoding="fixed")``), on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array.
        keys: n uint64 stream keys (``simdist.rng.draw_keys(rng, n)``), host or device.
        s: number of levels, 1 <= s <= 2**20.
        bucket: bucket length (None: the whole row).
        norm: ``"l2"`` or ``"max"``.

    Returns:
        ``(buffer, offsets, nbits)`` as :func:`compress_sign`.

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: a bucket norm exceeds the float32 range.
    """
    cuda = _cuda()
    X, s, b, bits, lev = qsgd_levels(X, keys, s=s, bucket=bucket, norm=norm)
    n, d = X.shape
    nb = bits.shape[1]
    width = (2 * s).bit_length()
    nbits = 32 * nb + d * width
    rowbytes = (nbits + 7) >> 3
    buf = cuda.device_array(n * rowbytes, np.uint8)
    K.qsgd_pack[_grid(n * rowbytes), K.TPB](lev, bits, s, b, width, nbits, buf, rowbytes)
    offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
    return _like_input(buf, X), offsets, np.full(n, nbits, np.int64)


def qsgd_levels(X, keys, *, s: int, bucket: int | None, norm: str):
    """The QSGD quantization shared by every QSGD encoding: validate, then per bucket the float32
    scale (lane sums, as the CPU) and per entry the signed level (word j of the row's stream).

    Returns:
        ``(X, s, b, bits, lev)``: X as (n, d), s and the bucket length checked, the (n, nb) int64
        scale bit patterns and the (n, d) int32 signed levels (device arrays).

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: a bad parameter or a bucket norm beyond float32.
    """
    cuda = _cuda()
    X = _rows(X)
    n, d = X.shape
    s = check_int("s", s, low=1, high=2**20)
    if norm not in ("l2", "max"):
        raise ValueError(f"norm must be one of 'l2', 'max', got {norm!r}")
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    nb = -(-d // b)
    if not is_device_array(keys):
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if keys.shape != (n,):
            raise ValueError(f"keys must hold one uint64 key per row ({n}), got shape {keys.shape}")
        keys = cuda.to_device(keys)
    Xk = _as_kernel_array(X)
    S = cuda.device_array((n, nb, 8), np.float64)
    M = cuda.device_array((n, nb, 8), np.float64)
    bits = cuda.device_array((n, nb), np.int64)
    scale = cuda.device_array((n, nb), np.float64)
    lev = cuda.device_array((n, d), np.int32)
    flag = cuda.to_device(np.zeros(1, np.int32))
    K.sq_lanes[_grid(n * nb * 8), K.TPB](Xk, b, S, M)
    K.qsgd_scales[_grid(n * nb), K.TPB](S, M, norm == "max", bits, scale, flag)
    _flag_error(flag, X, "qsgd", f"{norm} norm")
    K.qsgd_levels[_grid(n * d), K.TPB](Xk, _as_kernel_array(keys), s, b, scale, lev)
    return X, s, b, bits, lev


def _check_rows(buffer, offsets, rowbits: int, what: str) -> np.ndarray:
    """Host check of the fixed-width framing: every row inside the buffer, exactly ceil(rowbits/8) bytes.

    (Zero padding of the last byte is checked by the Compressor base class, as for the CPU decoders.)
    """
    offsets = check_offsets(buffer, offsets, what)
    lengths = np.diff(offsets)
    if np.any(lengths * 8 < rowbits):
        raise_decode_status(-1, what)
    if np.any(lengths != (rowbits + 7) >> 3):
        raise_decode_status(-4, what)
    return offsets


def check_offsets(buffer, offsets, what: str) -> np.ndarray:
    """Host check of the framing: n+1 non-decreasing int64 byte offsets inside the buffer (else DecodeError)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 2:
        raise DecodeError(f"{what}: offsets must be a 1-D array of n+1 byte offsets")
    lengths = np.diff(offsets)
    if offsets[0] < 0 or offsets[-1] > int(buffer.shape[0]) or np.any(lengths < 0):
        raise_decode_status(-5, what)
    return offsets


def _decode(kernel, buffer, offsets, d, dtype, args, what):
    cuda = _cuda()
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    n = offsets.shape[0] - 1
    Y = cuda.device_array((n, d), dtype)
    status = cuda.to_device(np.zeros(1, np.int32))
    kernel[_grid(n * d), K.TPB](_as_kernel_array(buffer), cuda.to_device(offsets), *args, Y, status)
    raise_decode_status(int(_to_np(status)[0]), what)
    return _like_input(Y, buffer)


def decompress_sign(buffer, offsets, d: int, dtype=np.float32, *, scaled: bool = True, bucket: int | None = None):
    """Decode sign messages (n rows of dimension d) on the device; returns the (n, d) values.

    Raises:
        DecodeError: a row of the wrong length, a NaN/Inf or negative scale.
    """
    d = check_int("d", d, low=1)
    b = d if (bucket is None or not scaled) else min(check_int("bucket", bucket, low=1), d)
    nb = -(-d // b)
    offsets = _check_rows(buffer, offsets, (32 * nb if scaled else 0) + d, "sign")
    return _decode(K.sign_unpack, buffer, offsets, d, dtype, (b, scaled), "sign")


def decompress_qsgd_fixed(buffer, offsets, d: int, dtype=np.float32, *, s: int, bucket: int | None = None):
    """Decode fixed-width QSGD messages on the device; returns the (n, d) values.

    Raises:
        DecodeError: a row of the wrong length, a NaN/Inf or negative scale, a code > 2s, or a zero
            scale with nonzero levels.
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1, high=2**20)
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    nb = -(-d // b)
    width = (2 * s).bit_length()
    offsets = _check_rows(buffer, offsets, 32 * nb + d * width, "qsgd")
    return _decode(K.qsgd_unpack, buffer, offsets, d, dtype, (s, b, width), "qsgd")
