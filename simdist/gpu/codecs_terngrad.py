"""Host wrappers of the TernGrad CUDA kernels: the CPU path's exact bytes, made on the device.

    buffer, offsets, nbits = compress_terngrad(X, keys, clip=2.5, bucket=512)
    Y = decompress_terngrad(buffer, offsets, d, np.float32, bucket=512)

The bytes equal those of ``TernGrad(clip=..., bucket=...).compress_batch(X, rng)`` for the same
input and keys (``keys = simdist.rng.draw_keys(rng, n)``: entry k of row i uses word k of the
SplitMix64 stream of ``keys[i]``); the conventions (device buffer, host ``offsets``/``nbits``,
CuPy in, CuPy out) are those of :mod:`simdist.gpu.codecs`. The format is fixed-width
(:func:`simdist.kernels.terngrad.terngrad_nbits`), so ``offsets`` and ``nbits`` follow from (n, d).
The decoder checks the framing on the host and the scales, group values and zero padding on the
device, raising :class:`simdist.DecodeError` where the CPU path does.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; otherwise the CPU path):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.terngrad import TernGrad
    >>> from simdist.rng import draw_keys
    >>> x = np.array([[0.5, -1.0, 0.0, 2.0, -0.25, 1.0]], np.float32)
    >>> ref = TernGrad(bucket=4).compress_batch(x, [np.random.default_rng(3)]).buffer
    >>> if cuda.is_available():
    ...     from simdist.gpu.backend import to_host
    ...     keys = draw_keys([np.random.default_rng(3)], 1)
    ...     data = to_host(compress_terngrad(x, keys, bucket=4)[0])
    ... else:
    ...     data = ref
    >>> bytes(data) == bytes(ref)
    True

References:
    Wen et al., "TernGrad", NeurIPS 2017, Sections 3 and 3.2.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_float, check_int
from ..kernels.terngrad import terngrad_nbits
from . import bitstream as BS
from . import kernels_terngrad as KT
from .backend import is_device_array
from .codecs import _as_kernel_array, _cuda, _grid, _like_input, _rows
from .codecs_onebit import fixed_decode, raise_flags
from .kernels import TPB

__all__ = ["compress_terngrad", "decompress_terngrad"]


def _device_keys(keys, n: int):
    """The n uint64 row keys as a kernel array (copied to the device when given on the host)."""
    if not is_device_array(keys):
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if keys.shape != (n,):
            raise ValueError(f"keys must hold one uint64 key per row ({n}), got shape {keys.shape}")
        return _cuda().to_device(keys)
    if tuple(keys.shape) != (n,) or np.dtype(keys.dtype) != np.uint64:
        raise ValueError(f"keys must hold one uint64 key per row ({n}), got {keys.dtype} of shape {tuple(keys.shape)}")
    return _as_kernel_array(keys)


def compress_terngrad(X, keys, *, clip: float | None = None, bucket: int | None = None):
    """TernGrad (``TernGrad(clip, bucket)``) of every row of X, on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array (see :mod:`simdist.gpu.codecs`).
        keys: n uint64 stream keys (``simdist.rng.draw_keys(rng, n)``), host or device.
        clip: None (no clipping) or a finite float > 0: clip ``|g|`` at ``clip * std`` of its bucket.
        bucket: bucket length (int >= 1; None: the whole row).

    Returns:
        ``(buffer, offsets, nbits)``: the messages (uint8, on the device), n+1 byte offsets, n bit counts.

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: a bad parameter, or a bucket max beyond float32.
    """
    cuda = _cuda()
    X = _rows(X)
    n, d = X.shape
    clip = check_float("clip", clip, low=0.0, low_open=True, allow_none=True)
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    keys = _device_keys(keys, n)
    nb = -(-d // b)
    cpb = -(-b // KT.CHUNK)
    nbits = terngrad_nbits(d, b)
    rowbytes = (nbits + 7) >> 3
    Xk = _as_kernel_array(X)
    thr = cuda.device_array(n * nb, np.float64)
    mx = cuda.device_array(n * nb, np.float64)
    bits = cuda.device_array((n, nb), np.int64)
    scale = cuda.device_array(n * nb, np.float64)
    flag = cuda.to_device(np.zeros(2, np.int32))
    KT.tern_clip[_grid(n * nb), TPB](Xk, b, 0.0 if clip is None else clip, thr)  # 1. clipping threshold
    BS.zero_words[_grid(n * nb), TPB](mx)
    KT.tern_max[_grid(n * nb * cpb), TPB](Xk, b, cpb, thr, mx, flag)  # 2. scales
    KT.tern_scales[_grid(n * nb), TPB](mx, bits, scale, flag)
    raise_flags(flag, "terngrad")
    buf = cuda.device_array(n * rowbytes, np.uint8)
    KT.tern_pack[_grid(n * rowbytes), TPB](Xk, keys, b, thr, bits, scale, buf, rowbytes)  # 3. symbols
    offsets = np.arange(n + 1, dtype=np.int64) * rowbytes
    return _like_input(buf, X), offsets, np.full(n, nbits, np.int64)


def decompress_terngrad(buffer, offsets, d: int, dtype=np.float32, *, bucket: int | None = None,
                        return_nbits: bool = False):
    """Decode TernGrad messages (n rows of dimension d) on the device.

    Args:
        buffer: uint8 messages back to back (device or host); offsets: n+1 byte offsets (host).
        d: dimension (>= 1); bucket: as for the encoder (clipping does not change the format);
        dtype: float32 or float64.
        return_nbits: also return the n row lengths in bits (NumPy).

    Returns:
        The (n, d) values on the device (CuPy for CuPy input), or ``(values, nbits)``.

    Raises:
        DecodeError: a row of the wrong length, a NaN/Inf or negative scale, a group value >= 3^m,
            or nonzero padding bits.
    """
    cuda = _cuda()
    d = check_int("d", d, low=1)
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    nb = -(-d // b)

    def launch(buf, offs, Y, status):
        n = Y.shape[0]
        sc = cuda.device_array(n * nb, np.float64)
        KT.tern_scales_check[_grid(n * nb), TPB](buf, offs, nb, sc, status)
        KT.tern_unpack[_grid(n * ((d + 4) // 5)), TPB](buf, offs, b, sc, Y, status)

    return fixed_decode(buffer, offsets, d, dtype, terngrad_nbits(d, b), "terngrad", launch, return_nbits)
