"""Host wrappers of the Elias-coded QSGD kernels: the CPU path's exact bytes, made on the device.

    buffer, offsets, nbits = compress_qsgd_elias(X, keys, s=4, bucket=512)
    Y = decompress_qsgd_elias(buffer, offsets, d, np.float32, s=4, bucket=512)

The bytes equal those of ``QSGD(s, norm, bucket)`` (``encoding="elias"``, the default) for the
same input and keys (``keys = simdist.rng.draw_keys(rng, n)``); the conventions (device
buffer, host ``offsets``/``nbits``, CuPy in, CuPy out) are those of :mod:`simdist.gpu.codecs`.
Unlike the fixed-width formats, the row lengths depend on the levels: the encoder computes
them on the device (a prefix sum of the code lengths) and copies the n row lengths to the host
to size the buffer; the decoder finds them by decoding.

Decoding is one thread per row (see :mod:`simdist.gpu.kernels_qsgd_elias`: the format has no
bucket index, so buckets cannot be decoded independently), with all of the CPU decoder's checks
and the base class's trailing-data check; the first bad row's status is raised as DecodeError.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; otherwise the CPU path):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.qsgd import QSGD
    >>> from simdist.rng import draw_keys
    >>> x = np.array([[0.5, -0.25, 0.0, 1.0, -2.0]], np.float32)
    >>> ref = QSGD(s=2, bucket=3).compress_batch(x, [np.random.default_rng(7)]).buffer
    >>> if cuda.is_available():
    ...     from simdist.gpu.backend import to_host
    ...     keys = draw_keys([np.random.default_rng(7)], 1)
    ...     data = to_host(compress_qsgd_elias(x, keys, s=2, bucket=3)[0])
    ... else:
    ...     data = ref
    >>> bytes(data) == bytes(ref)
    True

References:
    Alistarh et al., "QSGD", NeurIPS 2017, Sec. 3.1 (quantizer), Sec. 3.2 (Elias encoding).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_int
from ..errors import raise_decode_status
from . import bitstream as BS
from . import kernels_qsgd_elias as KE
from .codecs import _as_kernel_array, _cuda, _grid, _like_input, _to_np, check_offsets, qsgd_levels
from .kernels import TPB
from .scan import inclusive_scan

__all__ = ["compress_qsgd_elias", "decompress_qsgd_elias", "raise_row_status", "decode_by_rows"]


def compress_qsgd_elias(X, keys, *, s: int, bucket: int | None = None, norm: str = "l2"):
    """QSGD with the Elias omega code (``QSGD(s, norm, bucket)``), on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array (see :mod:`simdist.gpu.codecs`).
        keys: n uint64 stream keys (``simdist.rng.draw_keys(rng, n)``), host or device.
        s: number of levels, 1 <= s <= 2**20.
        bucket: bucket length (None: the whole row).
        norm: ``"l2"`` or ``"max"``.

    Returns:
        ``(buffer, offsets, nbits)``: the messages back to back (uint8, on the device), n+1 byte
        offsets and n bit counts (NumPy).

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: a bad parameter or a bucket norm beyond float32.
    """
    cuda = _cuda()
    X, s, b, bits, lev = qsgd_levels(X, keys, s=s, bucket=bucket, norm=norm)  # scales and levels
    n, d = X.shape
    nd = n * d
    P = cuda.device_array(nd, np.int64)
    L = cuda.device_array(nd, np.int64)
    KE.nonzero_marks[_grid(nd), TPB](lev, P)  # 1. marks, then their prefix max
    inclusive_scan(P, use_max=True)
    C = cuda.device_array(nd, np.int64)
    KE.code_lengths[_grid(nd), TPB](lev, P, b, L, C)  # 2. bits written at each entry (in L and C)
    inclusive_scan(C)  # 3. their prefix sum, and the row lengths
    rows = cuda.device_array(n, np.int64)
    KE.row_bits[_grid(n), TPB](C, d, rows)
    nbits = _to_np(rows).astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum((nbits + 7) >> 3, out=offsets[1:])
    total = int(offsets[-1])
    words = cuda.device_array(max(1, -(-total // 4)), np.uint32)
    BS.zero_words[_grid(words.shape[0]), TPB](words)
    KE.write_codes[_grid(nd), TPB](lev, P, C, L, bits, cuda.to_device(offsets), s, b, words)  # 4.
    buf = cuda.device_array(total, np.uint8)
    BS.words_to_bytes[_grid(total), TPB](words, buf)  # 5.
    return _like_input(buf, X), offsets, nbits


def raise_row_status(status, what: str) -> None:
    """Raise DecodeError for the first row whose decode status (a device or host int32 array) is < 0."""
    st = _to_np(status)
    bad = np.flatnonzero(st < 0)
    if bad.size:
        raise_decode_status(int(st[bad[0]]), f"{what} (row {int(bad[0])})")


def decompress_qsgd_elias(buffer, offsets, d: int, dtype=np.float32, *, s: int, bucket: int | None = None,
                          return_nbits: bool = False):
    """Decode Elias-coded QSGD messages (n rows of dimension d) on the device.

    Args:
        buffer: uint8 messages back to back (device or host).
        offsets: n+1 byte offsets (host).
        d: dimension (>= 1); s, bucket: as for the encoder.
        dtype: float32 or float64.
        return_nbits: also return the n row lengths in bits (NumPy), as ``_decode_batch`` does.

    Returns:
        The (n, d) values on the device (CuPy for CuPy input), or ``(values, nbits)``.

    Raises:
        DecodeError: truncation, a malformed omega code, a level > s, a position past b + 1,
            a negative/NaN/Inf scale, a zero scale with nonzeros, or trailing data (nonzero
            padding bits or extra bytes).
    """
    d = check_int("d", d, low=1)
    s = check_int("s", s, low=1, high=2**20)
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    return decode_by_rows(KE.decode_rows, buffer, offsets, d, dtype, (s, b), "qsgd", return_nbits)


def decode_by_rows(kernel, buffer, offsets, d: int, dtype, args, what: str, return_nbits: bool, scratch=0):
    """Launch a one-thread-per-row decoder ``kernel(buf, offsets, *args, [scratch,] Y, nbits, status)``
    on a zeroed (n, d) output; raise the first bad row's status; return Y (and the row lengths).

    ``scratch`` > 0 passes an (n, scratch) int64 work array before Y.
    """
    cuda = _cuda()
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    offsets = check_offsets(buffer, offsets, what)
    n = offsets.shape[0] - 1
    Y = cuda.device_array((n, d), dtype)
    nbits = cuda.device_array(n, np.int64)
    status = cuda.device_array(n, np.int32)
    extra = (cuda.device_array((n, scratch), np.int64),) if scratch else ()
    BS.zero_matrix[_grid(n * d), TPB](Y)
    kernel[_grid(n), TPB](_as_kernel_array(buffer), cuda.to_device(offsets), *args, *extra, Y, nbits, status)
    raise_row_status(status, what)
    Y = _like_input(Y, buffer)
    return (Y, _to_np(nbits).astype(np.int64)) if return_nbits else Y
