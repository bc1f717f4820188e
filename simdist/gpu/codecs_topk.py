"""Host wrappers of the top-k CUDA kernels: the CPU path's exact bytes, made on the device.

    buffer, offsets, nbits = compress_topk(X, k=100)          # or ratio=0.01
    Y = decompress_topk(buffer, offsets, d, np.float32, k=100)

The bytes equal those of ``TopK(k=..., ratio=...).compress_batch(X)`` (same selection, ties to
the lowest index, same index coding); the conventions (device buffer, host ``offsets``/``nbits``,
CuPy in, CuPy out) are those of :mod:`simdist.gpu.codecs`. The n row lengths are computed on the
device and copied to the host to size the buffer. Decoding is one thread per row (see
:mod:`simdist.gpu.kernels_topk`), with the CPU decoder's checks and the trailing-data check.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``; otherwise the CPU path):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.topk import TopK
    >>> x = np.array([[0.5, -3.0, 1.0, 2.0]], np.float32)
    >>> ref = TopK(k=2).compress_batch(x).buffer
    >>> if cuda.is_available():
    ...     from simdist.gpu.backend import to_host
    ...     data = to_host(compress_topk(x, k=2)[0])
    ... else:
    ...     data = ref
    >>> bytes(data) == bytes(ref)
    True

References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory", NeurIPS 2018, Definition 2.1.
"""

from __future__ import annotations

import numpy as np

from .._validate import NonFiniteInput, check_int
from ..compressors.topk import check_k_dim, check_k_ratio, effective_k, f32_overflow_error
from . import bitstream as BS
from . import kernels_topk as KT
from .codecs import _as_kernel_array, _cuda, _grid, _like_input, _rows, _to_np
from .codecs_qsgd_elias import decode_by_rows
from .kernels import TPB
from .scan import inclusive_scan

__all__ = ["compress_topk", "decompress_topk"]


def _k_for(d: int, k, ratio) -> int:
    k, ratio = check_k_ratio("topk", k, ratio)
    check_k_dim(k, d)
    return effective_k(k, ratio, d)


def _fixed_width(d: int) -> int:
    return (d - 1).bit_length()


def _select(X, k: int):
    """Steps 1-2: the kept indices (n, k) in index order and their float32 values, on the device."""
    cuda = _cuda()
    n, d = X.shape
    keybits = 8 * X.dtype.itemsize
    Xb = _as_kernel_array(X).view(np.uint32 if keybits == 32 else np.uint64)
    prefix = cuda.to_device(np.zeros(n, np.uint64))
    krem = cuda.to_device(np.full(n, k, np.int64))
    hist = cuda.to_device(np.zeros((n, 256), np.int32))
    flag = cuda.to_device(np.zeros(1, np.int32))
    blocks = n * -(-d // (KT.HIST_TPB * KT.ITEMS))
    for shift in range(keybits - 8, -1, -8):  # 1. one pass per digit, most significant first
        KT.radix_hist[blocks, KT.HIST_TPB](Xb, keybits, shift, prefix, hist, flag)
        if shift == keybits - 8 and int(_to_np(flag)[0]):
            raise NonFiniteInput("X holds NaN or Inf")
        KT.radix_pick[_grid(n), TPB](hist, shift, prefix, krem)
    K = cuda.device_array(n * d, np.int64)
    KT.keep_marks[_grid(n * d), TPB](Xb, keybits, prefix, K)  # 2. compaction
    inclusive_scan(K)
    idx = cuda.device_array((n, k), np.int64)
    vals = cuda.device_array((n, k), np.float32)
    KT.gather_kept[_grid(n * d), TPB](_as_kernel_array(X), K, krem, idx, vals, flag)
    if int(_to_np(flag)[0]):
        bad = np.flatnonzero(np.isinf(_to_np(vals).astype(np.float32)).any(axis=1))
        raise f32_overflow_error("topk", int(bad[0]))
    return idx, vals


def compress_topk(X, *, k: int | None = None, ratio: float | None = None):
    """Top-k of every row of X (``TopK(k=k, ratio=ratio)``), on the device.

    Args:
        X: (n, d) or (d,) float32/float64 device array (see :mod:`simdist.gpu.codecs`), n d < 2**31.
        k: entries kept per row (1 <= k <= d), or
        ratio: fraction kept, in (0, 1] (k = max(1, ceil(ratio d))). Exactly one of the two.

    Returns:
        ``(buffer, offsets, nbits)``: the messages (uint8, on the device), n+1 byte offsets, n bit counts.

    Raises:
        NonFiniteInput: X holds NaN/Inf. ValueError: bad k/ratio, or a kept value beyond float32.
    """
    cuda = _cuda()
    X = _rows(X)
    n, d = X.shape
    k = _k_for(d, k, ratio)
    if n * d >= 2**31:
        raise ValueError(f"X: the GPU top-k needs n * d < 2**31 entries (32-bit counts), got {n} x {d}")
    idx, vals = _select(X, k)
    w = _fixed_width(d)
    G = cuda.device_array(n * k, np.int64)
    KT.gap_lengths[_grid(n * k), TPB](idx, G)  # 3. lengths and modes
    inclusive_scan(G)
    modes = cuda.device_array(n, np.int64)
    blen = cuda.device_array(n, np.int64)
    rows = cuda.device_array(n, np.int64)
    KT.row_layout[_grid(n), TPB](idx, G, d, w, modes, blen, rows)
    nbits = _to_np(rows).astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum((nbits + 7) >> 3, out=offsets[1:])
    total = int(offsets[-1])
    words = cuda.device_array(-(-total // 4), np.uint32)
    BS.zero_words[_grid(words.shape[0]), TPB](words)
    doff = cuda.to_device(offsets)
    KT.write_items[_grid(n * k), TPB](idx, vals.view(np.uint32), G, modes, blen, doff, w, words)  # 4.
    KT.write_headers[_grid(n), TPB](idx, d, modes, blen, doff, words)
    buf = cuda.device_array(total, np.uint8)
    BS.words_to_bytes[_grid(total), TPB](words, buf)
    return _like_input(buf, X), offsets, nbits


def decompress_topk(buffer, offsets, d: int, dtype=np.float32, *, k: int | None = None,
                    ratio: float | None = None, return_nbits: bool = False):
    """Decode top-k messages (n rows of dimension d) on the device.

    Args:
        buffer: uint8 messages back to back (device or host); offsets: n+1 byte offsets (host).
        d: dimension; k / ratio: as for the encoder; dtype: float32 or float64.
        return_nbits: also return the n row lengths in bits (NumPy).

    Returns:
        The (n, d) values on the device (CuPy for CuPy input), or ``(values, nbits)``.

    Raises:
        DecodeError: truncation, malformed codes, an index >= d or not increasing, a count other
            than k, an end gap that does not reach d, a NaN/Inf value, or trailing data.
    """
    d = check_int("d", d, low=1)
    k = _k_for(d, k, ratio)
    return decode_by_rows(KT.decode_rows, buffer, offsets, d, dtype, (d, k, _fixed_width(d)), "topk",
                          return_nbits, scratch=k)
