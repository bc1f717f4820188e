"""Device helpers shared by the CUDA kernels of :mod:`simdist.gpu` (inlined into each kernel).

They cost nothing at run time: NVVM inlines the ``cuda.jit(device=True)`` functions into the
kernels, and the ``register_jitable(inline="always")`` ones (``f32_bits_up``, ``scale_error``,
``lane_span``) are inlined by Numba itself, before LLVM sees the kernel, so that the kernel's
integer arithmetic is optimised exactly as with the code written in place (a device function's
separately compiled floor division, for one, keeps a sign fix-up). They hold the pieces that
several kernels need bit for bit alike:

1. arithmetic: ``vmin`` / ``vmax`` (Numba 0.68's CUDA target fails to type the builtin min/max:
   "Signature mismatch: 2 argument types given, but function takes 1 arguments"), ``dmul_rn``
   (an uncontractable, correctly rounded float64 multiply: NVVM would otherwise fuse ``a * b + c``
   into an FMA and change the sums' bits; the simulator runs Python floats, which never fuse);
2. the random stream: ``uniform_word``, compiled from the very source of
   :func:`simdist.rng.uniform_word` (one SplitMix64 for the CPU and the GPU);
3. float32 bit patterns: ``f32_bits`` (exact), ``f32_bits_up`` (rounded up, the QSGD and
   TernGrad scales), ``f32_value``, and ``scale_error`` (the decoders' check of a scale field);
4. reading bytes: ``get_bits`` (an unaligned field of up to 32 bits) and ``get_u32`` (a
   byte-aligned big-endian word);
5. splitting a flat thread index into work: ``lane_span`` (row, bucket, lane of the 8-lane
   reductions) and ``bucket_chunk`` (row, bucket, chunk of :data:`CHUNK` entries).

Example (runs anywhere: under the simulator a device function is a Python function):
    >>> from numba import cuda
    >>> if cuda.is_available():
    ...     out = (int(f32_bits(0.5)), int(f32_bits_up(0.1)), float(f32_value(0x3F000000)))
    ... else:
    ...     out = (0x3F000000, 0x3DCCCCCD, 0.5)
    >>> out
    (1056964608, 1036831949, 0.5)

References:
    NVIDIA libdevice user's guide, ``__nv_dmul_rn``; S. Vigna, "SplitMix64" (Java's SplittableRandom).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda
from numba.extending import register_jitable

from .. import rng as _rng

__all__ = [
    "CHUNK", "F32_MAX", "F32_INF_BITS", "UNIFORM", "dmul_rn", "vmin", "vmax", "uniform_word",
    "f32_bits", "f32_bits_up", "f32_value", "scale_error", "get_bits", "get_u32", "lane_span",
    "bucket_chunk",
]

#: Entries per thread of the chunked bucket kernels (1BitSGD and TernGrad).
CHUNK = 256
#: Largest finite float32, as a float64.
F32_MAX = 3.4028234663852886e38
#: Bit pattern of float32 +inf: a scale's bits at or above it are out of range.
F32_INF_BITS = 0x7F800000
#: 2**-32: a stream word times this is a uniform in [0, 1).
UNIFORM = 2.0**-32

if config.ENABLE_CUDASIM:  # the simulator evaluates Python floats: no contraction to undo
    def dmul_rn(a, b):
        return a * b
else:  # pragma: no cover - real GPU only
    from numba.cuda.libdevice import dmul_rn


@cuda.jit(device=True)
def vmin(a, b):
    """``min(a, b)`` (Python's semantics: a unless b < a)."""
    return b if b < a else a


@cuda.jit(device=True)
def vmax(a, b):
    """``max(a, b)`` (Python's semantics: a unless b > a)."""
    return b if b > a else a


#: Word j (in [0, 2**32)) of the SplitMix64 stream of ``key``: the source of :func:`simdist.rng.uniform_word`.
uniform_word = cuda.jit(device=True)(_rng.uniform_word.py_func)


@cuda.jit(device=True)
def f32_bits(r):
    """IEEE binary32 bits of a non-negative float64 ``r`` that is exactly a float32 (inf bits past the range)."""
    if r == 0.0:
        return np.int64(0)
    if r > F32_MAX:
        return np.int64(F32_INF_BITS)
    m, e = math.frexp(r)
    if e >= -125:
        return np.int64(((e + 126) << 23) | (np.int64(m * 16777216.0) - 8388608))
    return np.int64(r * 2.0**149)


@register_jitable(inline="always")
def f32_bits_up(x):
    """Bits of the smallest float32 >= the non-negative float64 ``x`` (>= inf bits past the range)."""
    r = np.float64(np.float32(x))
    bb = f32_bits(r)
    if r < x:
        bb += 1
    return bb


@cuda.jit(device=True)
def f32_value(bits):
    """float64 value of a finite non-negative binary32 bit pattern."""
    e = (bits >> 23) & 0xFF
    m = bits & 0x7FFFFF
    if e == 0:
        return math.ldexp(np.float64(m), -149)  # int exponents: Python's ldexp (simulator) wants an int
    return math.ldexp(np.float64(m | 0x800000), int(e - 150))


@register_jitable(inline="always")
def scale_error(bits):
    """Decode status of a scale's binary32 bits: -6 NaN/Inf, -3 negative (sign bit), 0 fine."""
    if (bits >> 23) & 0xFF == 0xFF:
        return -6
    if bits >> 31:
        return -3
    return 0


@cuda.jit(device=True)
def get_bits(buf, base, pos, nbits):
    """``nbits`` (<= 32) bits at bit ``pos`` of the row starting at byte ``base``, MSB first."""
    v = np.int64(0)
    got = 0
    while got < nbits:
        byte = np.int64(buf[base + (pos >> 3)])
        off = pos & 7
        take = vmin(8 - off, nbits - got)
        v = (v << take) | ((byte >> (8 - off - take)) & ((1 << take) - 1))
        got += take
        pos += take
    return v


@cuda.jit(device=True)
def get_u32(buf, h):
    """The big-endian 32-bit word at byte ``h`` of ``buf``, as an int64."""
    v = np.int64(0)
    for q in range(4):
        v = (v << 8) | np.int64(buf[h + q])
    return v


@register_jitable(inline="always")
def lane_span(t, nb, b, d):
    """(row i, bucket k, lane l, lo, hi) of work item ``t`` of the 8-lane bucket reductions: lane l
    of bucket k of row i reads entries ``lo + l, lo + l + 8, ... < hi``."""
    i = t // (nb * 8)
    r = t - i * nb * 8
    k = r >> 3
    lo = k * b
    return i, k, r & 7, lo, vmin(d, lo + b)


@cuda.jit(device=True)
def bucket_chunk(t, nb, cpb, b, d):
    """(row i, bucket j, lo, hi) of work item ``t`` of the split into ``cpb`` chunks of :data:`CHUNK`
    entries per bucket (``lo >= hi`` for the empty chunks past a short last bucket)."""
    per_row = nb * cpb
    i = t // per_row
    r = t - i * per_row
    j = r // cpb
    lo = j * b + (r - j * cpb) * CHUNK
    hi = vmin(vmin(d, (j + 1) * b), lo + CHUNK)
    return i, j, lo, hi
