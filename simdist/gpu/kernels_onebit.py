"""CUDA kernels (Numba's CUDA target) for 1BitSGD, bit-identical to :mod:`simdist.kernels.onebit`.

Wire format (:mod:`simdist.compressors.onebit`): per bucket of ``b`` entries the float32 pair
(avg+, avg-), then ``d`` sign bits (1 = negative), MSB first. The host side is
:mod:`simdist.gpu.codecs_onebit`.

Encoding:

1. ``onebit_averages``: one thread per (row, bucket) sums the entries ``>= 0`` and those ``< 0``
   in float64, **sequentially in index order**. That order is part of the format (it fixes the
   averages' float32 bits: a parallel tree sum rounds differently), so a bucket is one thread's
   loop; buckets give the parallelism, and a whole-vector bucket (``bucket=None``) is the slow
   case (one thread reads the row). It writes the two float32 bit patterns (avg- with its sign
   bit; an empty side is +0.0) and flags NaN/Inf input (``flag[0]``) and an average beyond the
   float32 range (``flag[1]``).
2. the header bytes and sign bits: :func:`simdist.gpu.kernels.sign_pack` (one thread per byte),
   whose scale header of ``4 * bits.shape[1]`` bytes is exactly the (avg+, avg-) pairs here.

Decoding (three launches; ``status[0]`` is lowered by ``cuda.atomic.min`` to a code of
:data:`simdist.errors.DECODE_ERRORS`):

1. ``onebit_counts``: one thread per chunk of :data:`CHUNK` entries of a bucket counts its set
   sign bits and adds them to the bucket's count (``cuda.atomic.add``);
2. ``onebit_check``: one thread per (row, bucket) checks the pair as the CPU decoder does (-6 a
   NaN/Inf average; -3 avg+ with its sign bit, avg- > 0, or a nonzero average for an empty
   side), and the row's zero padding (-4, thread of the last bucket), and stores the two values;
3. ``onebit_expand``: one thread per entry, ``Y[i, k] = (avg+, avg-)[bit]``.

:data:`CHUNK` and :func:`bucket_chunk` (the (row, bucket, chunk) split of a thread index, shared
with :mod:`simdist.gpu.kernels_terngrad`) come from :mod:`simdist.gpu.device_util`.

Example (runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     bits, flag = np.zeros((1, 2), np.int64), np.zeros(2, np.int32)
    ...     onebit_averages[1, 1](np.array([[0.1, -0.3, 0.5, -0.1, 0.0]]), 5, bits, flag)
    ...     hexes = [hex(int(v)) for v in bits[0]]
    ... else:
    ...     hexes = ['0x3e4ccccd', '0xbe4ccccd']
    >>> hexes  # float32(0.2), float32(-0.2)
    ['0x3e4ccccd', '0xbe4ccccd']

References:
    F. Seide, H. Fu, J. Droppo, G. Li, D. Yu, "1-Bit Stochastic Gradient Descent and its
    Application to Data-Parallel Distributed Training of Speech DNNs", Interspeech 2014, Sec. 3.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .device_util import CHUNK, F32_MAX, bucket_chunk, f32_bits, f32_value, get_u32, vmin

__all__ = ["CHUNK", "bucket_chunk", "onebit_averages", "onebit_counts", "onebit_check", "onebit_expand"]

_SIGN = 0x80000000


@cuda.jit
def onebit_averages(X, b, bits, flag):
    """bits[i, 2j], bits[i, 2j+1] = the float32 bits of avg+ and avg- of bucket j of row i."""
    t = cuda.grid(1)
    n, d = X.shape
    nb = bits.shape[1] // 2
    if t >= n * nb:
        return
    i = t // nb
    j = t - i * nb
    lo = j * b
    hi = vmin(d, lo + b)
    sp = 0.0
    sn = 0.0
    cp = 0
    finite = True
    for k in range(lo, hi):  # index order: the CPU's sums, bit for bit
        v = np.float64(X[i, k])
        finite = finite and math.isfinite(v)
        if v < 0:
            sn += v
        else:
            sp += v
            cp += 1
    if not finite:
        cuda.atomic.max(flag, 0, 1)
        return
    cn = hi - lo - cp
    ap = 0.0
    an = 0.0
    if cp > 0:
        ap = np.float64(np.float32(sp / cp))
    if cn > 0:  # a sum of negatives is < 0: the sign bit is set (also when float32 flushes it to -0.0)
        an = -np.float64(np.float32(sn / cn))
    bits[i, 2 * j] = f32_bits(ap)
    bits[i, 2 * j + 1] = f32_bits(an) | (_SIGN if cn > 0 else 0)
    if ap > F32_MAX or an > F32_MAX:
        cuda.atomic.max(flag, 1, 1)


@cuda.jit(device=True)
def _sign_bit(buf, byte0, k):
    return (np.int64(buf[byte0 + (k >> 3)]) >> (7 - (k & 7))) & 1


@cuda.jit
def onebit_counts(buf, offsets, b, d, cpb, cnt):
    """cnt[i * nb + j] += the number of set sign bits (negatives) in chunk t of bucket j of row i."""
    t = cuda.grid(1)
    n = offsets.shape[0] - 1
    nb = (d + b - 1) // b
    if t >= n * nb * cpb:
        return
    i, j, lo, hi = bucket_chunk(t, nb, cpb, b, d)
    byte0 = offsets[i] + 8 * nb
    c = 0
    for k in range(lo, hi):
        c += _sign_bit(buf, byte0, k)
    if c > 0:
        cuda.atomic.add(cnt, i * nb + j, c)


@cuda.jit
def onebit_check(buf, offsets, b, d, cnt, vals, status):
    """Check bucket j's pair against the CPU decoder's rules; vals[i, j] = (avg+, avg-) as float64."""
    t = cuda.grid(1)
    n = offsets.shape[0] - 1
    nb = (d + b - 1) // b
    if t >= n * nb:
        return
    i = t // nb
    j = t - i * nb
    h = offsets[i] + 8 * j
    bp = get_u32(buf, h)
    bn = get_u32(buf, h + 4)
    if (bp >> 23) & 0xFF == 0xFF or (bn >> 23) & 0xFF == 0xFF:
        cuda.atomic.min(status, 0, -6)
        return
    neg = cnt[t]
    m = vmin(d, (j + 1) * b) - j * b
    pos_an = (bn >> 31) == 0 and bn != 0  # avg- > 0
    if (bp >> 31) or pos_an or (neg == 0 and bn != 0) or (neg == m and bp != 0):
        cuda.atomic.min(status, 0, -3)
        return
    vals[i, j, 0] = f32_value(bp)
    an = f32_value(bn & 0x7FFFFFFF)
    vals[i, j, 1] = -an if bn >> 31 else an
    r = d & 7
    if j == nb - 1 and r and np.int64(buf[offsets[i] + 8 * nb + (d >> 3)]) & ((1 << (8 - r)) - 1):
        cuda.atomic.min(status, 0, -4)  # nonzero padding bits


@cuda.jit
def onebit_expand(buf, offsets, b, vals, Y):
    """Y[i, k] = vals[i, k // b, sign bit k of row i]."""
    t = cuda.grid(1)
    n, d = Y.shape
    if t >= n * d:
        return
    i = t // d
    k = t - i * d
    nb = vals.shape[1]
    Y[i, k] = vals[i, k // b, _sign_bit(buf, offsets[i] + 8 * nb, k)]
