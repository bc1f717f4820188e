"""Host wrappers of the 1BitSGD CUDA kernels: the CPU path's exact bytes, made on the device.

    buffer, offsets, nbits = compress_onebit(X, bucket=512)
    Y = decompress_onebit(buffer, offsets, d, np.float32, bucket=512)

The bytes equal those of ``OneBit(bucket=...).compress_batch(X)``; the conventions (device buffer,
host ``offsets``/``nbits``, CuPy in, CuPy out) are those of :mod:`simdist.gpu.codecs`. The format
is fixed-width (``64 nb + d`` bits a row), so ``offsets`` and ``nbits`` follow from (n, d). The
decoder checks the framing on the host (every row exactly ``ceil(nbits / 8)`` bytes) and the
averages and the zero padding on the device, raising :class:`simdist.DecodeError` where the CPU
path does (its decoder plus the base class's trailing-data check).

Also here, shared with :mod:`simdist.gpu.codecs_terngrad`: :func:`raise_flags` (the encoders'
NaN/Inf and float32-overflow flags) and :func:`fixed_decode` (framing check, status, output).

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; otherwise the CPU path):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.onebit import OneBit
    >>> x = np.array([[0.1, -0.3, 0.5, -0.1, 0.0]], np.float32)
    >>> ref = OneBit().compress_batch(x).buffer
    >>> if cuda.is_available():
    ...     from simdist.gpu.backend import to_host
    ...     data = to_host(compress_onebit(x)[0])
    ... else:
    ...     data = ref
    >>> bytes(data) == bytes(ref)
    True

References:
    Seide et al., "1-Bit Stochastic Gradient Descent ...", Interspeech 2014, Section 3.
"""

from __future__ import annotations

import numpy as np

from .._validate import NonFiniteInput, check_int
from ..errors import raise_decode_status
from . import bitstream as BS
from . import kernels as K
from . import kernels_onebit as KO
from .codecs import _as_kernel_array, _check_rows, _cuda, _grid, _like_input, _rows, _to_np
from .kernels import TPB

__all__ = ["compress_onebit", "decompress_onebit", "raise_flags", "fixed_decode"]


def _bucket(d: int, bucket) -> int:
    return d if bucket is None else min(check_int("bucket", bucket, low=1), d)


def raise_flags(flag, what: str) -> None:
    """Raise for an encoder's 2-slot flag: ``flag[0]`` NaN/Inf input (NonFiniteInput), ``flag[1]`` a
    bucket scale beyond float32 (ValueError, the CPU compressors' message)."""
    f = _to_np(flag)
    if f[0]:
        raise NonFiniteInput("X holds NaN or Inf")
    if f[1]:
        raise ValueError(f"x is too large for {what}: a bucket scale exceeds the float32 range "
                         f"(max {float(np.finfo(np.float32).max):.4g}) and cannot be sent")


def compress_onebit(X, *, bucket: int | None = None):
    """1BitSGD (``OneBit(bucket)``) of every row of X, on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array (see :mod:`simdist.gpu.codecs`).
        bucket: bucket length (int >= 1; None: the whole row).

    Returns:
        ``(buffer, offsets, nbits)``: the messages (uint8, on the device), n+1 byte offsets, n bit counts.

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: an average beyond the float32 range.
    """
    cuda = _cuda()
    X = _rows(X)
    n, d = X.shape
    b = _bucket(d, bucket)
    nb = -(-d // b)
    nbits = 64 * nb + d
    rowbytes = (nbits + 7) >> 3
    Xk = _as_kernel_array(X)
    bits = cuda.device_array((n, 2 * nb), np.int64)
    flag = cuda.to_device(np.zeros(2, np.int32))
    KO.onebit_averages[_grid(n * nb), TPB](Xk, b, bits, flag)  # 1. (avg+, avg-) per bucket
    raise_flags(flag, "onebit")
    buf = cuda.device_array(n * rowbytes, np.uint8)
    K.sign_pack[_grid(n * rowbytes), TPB](Xk, bits, True, buf, rowbytes)  # 2. header and sign bits
    offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
    return _like_input(buf, X), offsets, np.full(n, nbits, np.int64)


def fixed_decode(buffer, offsets, d: int, dtype, nbits: int, what: str, launch, return_nbits: bool):
    """Decode a fixed-width format: host framing check, then ``launch(buf, offsets_dev, Y, status)``
    (the kernels), then DecodeError for a negative ``status[0]``.

    Returns:
        Y (n, d) on the device (CuPy for CuPy input), or ``(Y, nbits)`` when ``return_nbits``.
    """
    cuda = _cuda()
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    offsets = _check_rows(buffer, offsets, nbits, what)
    n = offsets.shape[0] - 1
    Y = cuda.device_array((n, d), dtype)
    status = cuda.to_device(np.zeros(1, np.int32))
    launch(_as_kernel_array(buffer), cuda.to_device(offsets), Y, status)
    raise_decode_status(int(_to_np(status)[0]), what)
    Y = _like_input(Y, buffer)
    return (Y, np.full(n, nbits, np.int64)) if return_nbits else Y


def decompress_onebit(buffer, offsets, d: int, dtype=np.float32, *, bucket: int | None = None,
                      return_nbits: bool = False):
    """Decode 1BitSGD messages (n rows of dimension d) on the device.

    Args:
        buffer: uint8 messages back to back (device or host); offsets: n+1 byte offsets (host).
        d: dimension (>= 1); bucket: as for the encoder; dtype: float32 or float64.
        return_nbits: also return the n row lengths in bits (NumPy).

    Returns:
        The (n, d) values on the device (CuPy for CuPy input), or ``(values, nbits)``.

    Raises:
        DecodeError: a row of the wrong length, a NaN/Inf average, avg+ with its sign bit set,
            avg- > 0, a nonzero average for an empty side, or nonzero padding bits.
    """
    cuda = _cuda()
    d = check_int("d", d, low=1)
    b = _bucket(d, bucket)
    nb = -(-d // b)
    cpb = -(-b // KO.CHUNK)

    def launch(buf, offs, Y, status):
        n = Y.shape[0]
        cnt = cuda.device_array(n * nb, np.int64)
        vals = cuda.device_array((n, nb, 2), np.float64)
        BS.zero_words[_grid(n * nb), TPB](cnt)
        KO.onebit_counts[_grid(n * nb * cpb), TPB](buf, offs, b, d, cpb, cnt)  # 1. negatives per bucket
        KO.onebit_check[_grid(n * nb), TPB](buf, offs, b, d, cnt, vals, status)  # 2. the CPU checks
        KO.onebit_expand[_grid(n * d), TPB](buf, offs, b, vals, Y)  # 3. values

    return fixed_decode(buffer, offsets, d, dtype, 64 * nb + d, "onebit", launch, return_nbits)
