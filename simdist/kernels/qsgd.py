"""Numba kernels of QSGD: quantize, write the bits, read them back.

The wire format is documented in :mod:`simdist.compressors.qsgd`; the plain-Python oracle these
kernels are tested against (bit for bit) is :mod:`simdist.reference.qsgd`.

This module is the entry point; the kernels live in two files:

* :mod:`simdist.kernels.qsgd_encode` (:func:`encode`): one Numba call over the whole (n, d)
  batch; per bucket a SIMD scale, a vectorized rounding loop, then one table lookup per
  nonzero into a 64-bit accumulator stored a word at a time (on AVX-512 hosts the codes are
  formed 16 at a time by :mod:`simdist.kernels.qsgd_simd` and appended in pairs).
* :mod:`simdist.kernels.qsgd_decode` (:func:`decode`): a 64-bit window over the row and a
  table that decodes up to four nonzeros per lookup, with table and checked fallbacks; it
  never reads outside ``buffer[offsets[i]:offsets[i+1]]`` and range-checks every value (on
  AVX-512 hosts a window's values are written by one vector expand,
  :mod:`simdist.kernels.qsgd_simd_decode`).

Measured (d = 2**24 float32, s = 16, bucket = 512, one core, best of 5;
``benchmarks/bench_qsgd_scratch.py``): see that script's docstring.

Scale rule (shared with the reference): the float64 scale of a bucket is ``max|v_i|``
(``norm="max"``) or ``max(sqrt(S), max|v_i|)`` (``norm="l2"``), where S is the sum of
squares accumulated in float64 over 8 lanes (lane k takes the entries k, k+8, ... of the
bucket in order) combined as ``((S0+S1)+(S2+S3))+((S4+S5)+(S6+S7))``; the floor at
``max|v_i|`` guards against rounding and underflow. It is rounded to float32 and bumped up by
one ulp when rounding went down, so ``|v_i| / scale32 <= 1`` exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .qsgd_decode import TABLE_BITS, TRIPLE, _decode_kernel, _decode_kernel_simd, decode, multi_table  # noqa: F401
from .qsgd_encode import (  # noqa: F401
    F32_INF_BITS, _encode_kernel, _encode_kernel_simd, encode, f32_value, row_capacity, scale_bits,
)

__all__ = ["TABLE_BITS", "TRIPLE", "encode", "decode", "bucket_scales", "multi_table"]

_row_capacity = row_capacity  # the proven bound on a row's bits (tested against worst cases)
# _encode_kernel and _decode_kernel are imported so that this module lists every QSGD kernel.


@njit(cache=True)
def _scales_kernel(X, b, use_max, out):
    n, d = X.shape
    nb = (d + b - 1) // b
    for i in range(n):
        for k in range(nb):
            bits = scale_bits(X[i], k * b, min(d, (k + 1) * b), use_max)
            out[i, k] = np.inf if bits >= F32_INF_BITS or bits < 0 else f32_value(bits)  # -1: sum overflow


def bucket_scales(X: np.ndarray, b: int, use_max: bool) -> np.ndarray:
    """The float32 scales (as float64) of every bucket of every row of X, shape (n, nbuckets)."""
    X = np.ascontiguousarray(X)
    out = np.empty((X.shape[0], -(-X.shape[1] // b)), np.float64)
    _scales_kernel(X, b, use_max, out)
    return out
