"""Numba encode kernel of QSGD (see :mod:`simdist.kernels.qsgd` for the layout and the scale rule).

Per bucket, in one pass over the batch (the bucket stays in L1 between steps 1 and 3):

1. the float32 scale: 8-lane sums of squares and maxima in one explicit SIMD loop
   (:func:`_lanes8`, an LLVM intrinsic: Numba leaves its SLP vectorizer off, and the lane
   order is part of the format, so no fastmath);
2. stochastic rounding of every entry into a small level array (an auto-vectorized loop;
   word j of the row's SplitMix64 stream is computed inline, its state a running sum);
3. a 64-bit mask per 64 entries marks the nonzeros; the code walks the set bits (tzcnt),
   and each nonzero with distance < 64 and |level| <= 32 is one lookup in ``ENC_TOP`` /
   ``ENC_LEN`` (omega(distance), sign, omega(level) as one code) OR-ed into a top-aligned
   64-bit accumulator; every two codes the accumulator is stored as one big-endian word
   (:func:`simdist.coding.bitbuf.store_be64`). Other nonzeros take the general path. For s < 32
   no level can leave the table, so a second compiled copy of the kernel (same body, inlined with a
   constant) checks the distance only.

   On AVX-512 hosts a third copy replaces step 3 by :func:`simdist.kernels.qsgd_simd.bucket_codes`
   (compaction, codes, and units of two to four codes, 16 nonzeros at a time) and appends one unit
   per word store; a bucket with a distance >= 64 or a level >= 32 falls back to the scalar step 3.
   The bytes are the same (tested), and step 3 takes ~40% of its scalar time at s = 16, b = 512.

With error feedback (``encode(..., E=E)``) each bucket is first summed, p = x + e, into a small
buffer, and after step 2 the sender's new memory e = p - c is written from the levels (c computed
as the decoder computes it): the memory is read and written in the same pass as x. The bucket
after the next is prefetched (:func:`simdist.kernels.prefetch.prefetch`) while one is encoded.

Rows are written back to back (each from the byte after the previous row's last) into a fresh
buffer with room for the longest possible messages plus 8 bytes of slack for the word stores;
only the pages written become resident, and the buffer is then shrunk in place to the exact
length (realloc, no copy).

The scale step doubles as the input's finite check: a non-finite float64 sum of squares makes
the kernel stop and :func:`encode` raise ``NonFiniteInput`` (after an exact ``np.isfinite`` on
that error path only, since huge finite float64 entries can overflow the sum too; those are
refused for their float32-range scale as before).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from ..coding.bitbuf import store_be64
from .._validate import NonFiniteInput
from .prefetch import prefetch
from . import qsgd_simd
from .qsgd_simd import bucket_codes
from ..coding.elias import omega_str
from ..rng import GOLDEN, mix_word

__all__ = ["encode", "row_capacity", "scale_bits", "f32_value", "F32_INF_BITS"]

F32_INF_BITS = 0x7F800000
_UNIFORM = 2.0**-32
_ENC_MAX = 4096  # omega codes of 1..4095 are tabulated


def _build_tables():
    enc_code = np.zeros(_ENC_MAX, np.int64)
    enc_len = np.zeros(_ENC_MAX, np.int64)
    for k in range(1, _ENC_MAX):
        code = omega_str(k)
        enc_code[k], enc_len[k] = int(code, 2), len(code)
    top = np.zeros(64 * 64, np.uint64)  # [g << 6 | (level & 63)]: the code, top-aligned
    ln = np.zeros(64 * 64, np.int64)
    for g in range(1, 64):
        for lv in range(-32, 32):
            if lv != 0:
                code = omega_str(g) + ("1" if lv < 0 else "0") + omega_str(abs(lv))  # <= 25 bits
                top[(g << 6) | (lv & 63)] = int(code, 2) << (64 - len(code))
                ln[(g << 6) | (lv & 63)] = len(code)
    return enc_code, enc_len, top, ln


ENC_CODE, ENC_LEN, ENC_TOP, ENC_LEN2 = _build_tables()


# --- the float32 scale ------------------------------------------------------------------------


@intrinsic
def _lanes8(typingctx, arr, lo, n8):
    """(S0..S7, M0..M7): lane k sums |a|^2 and takes max |a| over a = arr[lo + 8q + k], q < n8,
    in order, in float64 (IEEE, no reassociation: each lane is the scalar loop)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and arr.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        data = context.make_array(arrty)(context, builder, value=args[0]).data
        lo = context.cast(builder, args[1], signature.args[1], types.int64)
        n8 = context.cast(builder, args[2], signature.args[2], types.int64)
        vin = ir.VectorType(context.get_value_type(arrty.dtype), 8)
        vd = ir.VectorType(ir.DoubleType(), 8)
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vd, [vd]), "llvm.fabs.v8f64")
        base = builder.gep(data, [lo])
        acc_s = cgutils.alloca_once_value(builder, ir.Constant(vd, [0.0] * 8))
        acc_m = cgutils.alloca_once_value(builder, ir.Constant(vd, [0.0] * 8))
        with cgutils.for_range(builder, n8) as loop:
            ptr = builder.gep(base, [builder.mul(loop.index, ir.Constant(ir.IntType(64), 8))])
            v = builder.load(builder.bitcast(ptr, vin.as_pointer()), align=arrty.dtype.bitwidth // 8)
            if arrty.dtype == types.float32:
                v = builder.fpext(v, vd)
            a = builder.call(fabs, [v])
            builder.store(builder.fadd(builder.load(acc_s), builder.fmul(a, a)), acc_s)
            m = builder.load(acc_m)
            builder.store(builder.select(builder.fcmp_ordered(">", a, m), a, m), acc_m)
        s, m = builder.load(acc_s), builder.load(acc_m)
        vals = [builder.extract_element(v, ir.Constant(ir.IntType(32), k)) for v in (s, m) for k in range(8)]
        return context.make_tuple(builder, signature.return_type, vals)

    return types.UniTuple(types.float64, 16)(arr, lo, n8), codegen


@njit(cache=True, inline="always")
def _f32_bits(v):
    """IEEE binary32 bit pattern of a non-negative float64 ``v`` that is exactly a float32."""
    if v == 0.0:
        return np.int64(0)
    if v > 3.4028234663852886e38:
        return np.int64(F32_INF_BITS)
    m, e = math.frexp(v)
    if e >= -125:
        return np.int64(((e + 126) << 23) | (np.int64(m * 16777216.0) - 8388608))
    return np.int64(v * 2.0**149)


@njit(cache=True, inline="always")
def f32_value(bits):
    """float64 value of a finite non-negative binary32 pattern."""
    e = (bits >> 23) & 0xFF
    m = bits & 0x7FFFFF
    if e == 0:
        return math.ldexp(np.float64(m), -149)
    return math.ldexp(np.float64(m | 0x800000), np.int64(e - 150))


@njit(cache=True, inline="always")
def scale_bits(x, lo, hi, use_max):
    """float32 bit pattern of the scale of the bucket ``x[lo:hi]`` (x: a C-contiguous row);
    -1 when the float64 sum of squares is not finite (a NaN/Inf entry, or float64 overflow on
    huge finite float64 entries, whose scale would not fit in float32 anyway)."""
    full = (hi - lo) >> 3
    s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7 = _lanes8(x, lo, full)
    xs = x[lo:hi]
    for k in range(hi - lo - 8 * full):  # the tail goes to lanes 0, 1, ... in order
        a = abs(np.float64(xs[8 * full + k]))
        if k == 0:
            m0 = max(m0, a); s0 += a * a  # noqa: E702
        elif k == 1:
            m1 = max(m1, a); s1 += a * a  # noqa: E702
        elif k == 2:
            m2 = max(m2, a); s2 += a * a  # noqa: E702
        elif k == 3:
            m3 = max(m3, a); s3 += a * a  # noqa: E702
        elif k == 4:
            m4 = max(m4, a); s4 += a * a  # noqa: E702
        elif k == 5:
            m5 = max(m5, a); s5 += a * a  # noqa: E702
        else:
            m6 = max(m6, a); s6 += a * a  # noqa: E702
    mx = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    ss = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    if not math.isfinite(ss):  # the finite check of the input, fused (NaN is ignored by max)
        return np.int64(-1)
    if use_max:
        sc = mx
    else:
        sc = math.sqrt(ss)
        if sc < mx:
            sc = mx
    r = np.float64(np.float32(sc))
    bits = _f32_bits(r)
    if r < sc:
        bits += 1
    return bits


# --- encoding ---------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _omega_code(k, enc_code, enc_len):
    """(code, length) of omega(k), 1 <= k < 2**31 (at most 42 bits)."""
    if k < _ENC_MAX:
        return enc_code[k], enc_len[k]
    code = np.int64(0)
    ln = np.int64(1)
    while k > 1:
        b = 0
        t = k
        while t > 0:
            t >>= 1
            b += 1
        code |= np.int64(k) << ln
        ln += b
        k = b - 1
    return code, ln


@njit(cache=True, inline="always")
def _put(acc, nacc, code, ln):
    """Append the ``ln`` low bits of ``code`` to the top-aligned accumulator (nacc + ln <= 63)."""
    return acc | (np.uint64(code) << np.uint64(64 - nacc - ln)), nacc + ln


def row_capacity(d: int, b: int, s: int, elias: bool, width: int) -> int:
    """Bits a row can need at most: per bucket 32 + 2(b+1) + b (1 + |omega(s)|) (Elias: the
    distance codes of a bucket sum to at most 2(b+1) bits since |omega(g)| <= 2g), or exactly
    32 + b * width (fixed)."""
    nb = -(-d // b)
    if not elias:
        return 32 * nb + d * width
    return 32 * nb + 2 * (d + nb) + d * (1 + len(omega_str(s)))


@njit(cache=True)
def _encode_kernel(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region, scratch,
                   nbits, E):
    """Any s: each nonzero's level is checked against the table's range."""
    return _encode_body(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region,
                        scratch, nbits, E, False, False)


@njit(cache=True)
def _encode_kernel_small(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region,
                         scratch, nbits, E):
    """s < 32: every level fits the table (|level| <= s < 32), so only the distance is checked
    (the body is inlined with the constant, and the level check compiled away: ~6% of the encode)."""
    return _encode_body(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region,
                        scratch, nbits, E, True, False)


@njit(cache=True)
def _encode_kernel_simd(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region,
                        scratch, nbits, E):
    """AVX-512 hosts (:data:`simdist.kernels.qsgd_simd.AVAILABLE`), any s: the code stage of each
    bucket is :func:`~simdist.kernels.qsgd_simd.bucket_codes` (16 nonzeros per step, appended a
    pair per word store); buckets it cannot code (a distance >= 64, a level >= 32) take the scalar
    path. Same bits as the other kernels."""
    return _encode_body(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2, region,
                        scratch, nbits, E, False, True)


@njit(cache=True, inline="always")
def _encode_body(X, keys, s, b, use_max, elias, width, enc_code, enc_len, enc_top, enc_len2,
                 region, scratch, nbits, E, small, simd):
    n, d = X.shape
    nb = (d + b - 1) // b
    nw = (min(b, d) + 63) >> 6
    lev = np.zeros(nw * 64, np.int32)  # one bucket's signed levels, zero beyond the bucket
    masks = np.empty(nw, np.uint64)
    fs = np.float64(s)
    ef = E.shape[0] == n  # error feedback: encode p = x + e (a bucket at a time), then e <- p - c
    line = 64 // X.itemsize  # entries per cache line
    pbuf = np.empty(min(b, d), X.dtype)  # the bucket of p
    cbuf = np.empty(min(b, d), X.dtype)  # its dequantized values c, in X's dtype (as decoded)
    pad = qsgd_simd.PAD  # the SIMD code stage's scratch: nonzero positions and levels, coded pairs
    pos = np.empty(64 * nw + pad + 1 if simd else 0, np.int32)
    lvo = np.empty(64 * nw + pad if simd else 0, np.int32)
    ptop = np.empty(32 * nw + pad if simd else 0, np.uint64)
    pln = np.empty(32 * nw + pad if simd else 0, np.int32)
    tab_g, tab_a = qsgd_simd.TAB_G, qsgd_simd.TAB_A
    for i in range(n):
        x = X[i]
        key = keys[i]
        o = region[i]
        acc = np.uint64(0)  # pending bits, top-aligned; nacc <= 7 between codes
        nacc = np.int64(0)
        for k in range(nb):
            lo = k * b
            hi = min(d, lo + b)
            m = hi - lo
            ahead = min(d, hi + b)  # prefetch the bucket after the next while this one is encoded
            for t in range(ahead, min(d, ahead + b), line):  # (the work per entry leaves the hardware
                prefetch(x, t)  # prefetchers behind)
                if ef:
                    prefetch(E[i], t)
            if ef:  # 0. p = x + e in X's dtype (the same rounding as numpy's add)
                xb = x[lo:hi]
                eb = E[i, lo:hi]
                for jj in range(m):
                    pbuf[jj] = xb[jj] + eb[jj]
                src, slo, shi = pbuf, 0, m
            else:
                src, slo, shi = x, lo, hi
            # 1. the float32 scale
            bits = scale_bits(src, slo, shi, use_max)
            if bits >= F32_INF_BITS or bits < 0:
                return i
            sc = f32_value(bits)
            acc, nacc = _put(acc, nacc, bits, 32)
            # 2. stochastic rounding of s |v_j| / scale32 (word j of the row's stream)
            xs = src[slo:shi]
            if sc == 0.0:
                lev[:m] = 0
            else:
                # word lo + jj of the row's stream: its SplitMix64 state kept as a running sum
                z = np.uint64(key) + np.uint64(lo + 1) * GOLDEN
                for jj in range(m):  # range() indices: no wraparound code, the loop vectorizes
                    v = np.float64(xs[jj])
                    ts = fs * (abs(v) / sc)  # <= s: |v| <= sc (the scale rule) and rounding is monotone
                    lv = np.int64(ts)  # so lv <= s, and lv == s only with p == 0: no clamp needed
                    p = ts - lv
                    u = np.float64(np.int64(mix_word(z))) * _UNIFORM
                    z += GOLDEN
                    lv += np.int64(u < p)
                    lev[jj] = -lv if v < 0 else lv
            if m < nw * 64:
                lev[m:] = 0
            if ef:  # 2b. the sender's new memory e = p - c, c exactly as the decoder computes it
                unit = sc / fs
                eb = E[i, lo:hi]
                for jj in range(m):
                    cbuf[jj] = np.float64(lev[jj]) * unit  # rounded to X's dtype on the store
                for jj in range(m):
                    eb[jj] = pbuf[jj] - cbuf[jj]
            store_be64(scratch, o, acc)
            o += nacc >> 3
            acc <<= np.uint64(nacc & 56)
            nacc &= 7
            if not elias:  # 3f. one fixed-width code per entry, a word store every two
                for jj in range(m):
                    acc, nacc = _put(acc, nacc, np.int64(lev[jj]) + s, width)
                    if jj & 1 or jj == m - 1:
                        store_be64(scratch, o, acc)
                        o += nacc >> 3
                        acc <<= np.uint64(nacc & 56)
                        nacc &= 7
                continue
            prev = np.int64(0)  # 1-based position of the previous nonzero
            bad = np.int64(1)
            if simd:  # 3s. every code, 16 nonzeros a step, in units of 2-4: one word store per unit
                cnt, bad, units = bucket_codes(lev, 4 * nw, pos, lvo, ptop, pln, tab_g, tab_a)
                if bad == 0:
                    for q in range(units):  # a unit has <= 56 bits, <= 7 are pending (nacc < 64)
                        acc |= ptop[q] >> np.uint64(nacc)
                        nacc += pln[q]
                        store_be64(scratch, o, acc)
                        o += nacc >> 3
                        acc <<= np.uint64(nacc & 56)
                        nacc &= 7
                    prev = np.int64(pos[cnt])
            if bad != 0:  # 3e. nonzero masks, then one code (distance, sign, level) per set bit
                for w in range(nw):
                    mm = np.uint64(0)
                    lw = lev[64 * w : 64 * w + 64]
                    for t in range(64):
                        mm |= np.uint64(lw[t] != 0) << np.uint64(t)
                    masks[w] = mm
                for w in range(nw):
                    mm = masks[w]
                    while mm != 0:
                        for _ in range(2):  # two codes (<= 25 bits each) between word stores
                            if mm == 0:
                                break
                            j = 64 * w + np.int64(trailing_zeros(mm))
                            mm &= mm - np.uint64(1)
                            g = j + 1 - prev
                            prev = j + 1
                            lv = np.int64(lev[np.uint64(j)])
                            if np.uint64(g) < np.uint64(64) and (small or np.uint64(lv + 32) < np.uint64(64)):
                                t = np.uint64((g << 6) | (lv & 63))
                                acc |= enc_top[t] >> np.uint64(nacc)
                                nacc += enc_len2[t]
                                continue
                            # general path: flush, omega(distance), flush, sign + omega(level)
                            store_be64(scratch, o, acc)
                            o += nacc >> 3
                            acc <<= np.uint64(nacc & 56)
                            nacc &= 7
                            c1, l1 = _omega_code(g, enc_code, enc_len)
                            acc, nacc = _put(acc, nacc, c1, l1)
                            store_be64(scratch, o, acc)
                            o += nacc >> 3
                            acc <<= np.uint64(nacc & 56)
                            nacc &= 7
                            c2, l2 = _omega_code(abs(lv), enc_code, enc_len)
                            acc, nacc = _put(acc, nacc, c2 | (np.int64(lv < 0) << l2), l2 + 1)
                            break
                        store_be64(scratch, o, acc)
                        o += nacc >> 3
                        acc <<= np.uint64(nacc & 56)
                        nacc &= 7
            c1, l1 = _omega_code(m + 1 - prev, enc_code, enc_len)  # distance to position b + 1
            acc, nacc = _put(acc, nacc, c1, l1)
            store_be64(scratch, o, acc)
            o += nacc >> 3
            acc <<= np.uint64(nacc & 56)
            nacc &= 7
        nbits[i] = (o - region[i]) * 8 + nacc  # the last store wrote the zero-padded last byte
        region[i + 1] = region[i] + ((nbits[i] + 7) >> 3)  # the next row starts at the next byte
    return -1


def _kernel(s: int, elias: bool):
    """The compiled encoder for this host and code: the SIMD code stage on AVX-512 hosts (Elias
    code), else the scalar one (its s < 32 copy when no level can leave the code table)."""
    if elias and qsgd_simd.AVAILABLE and _SIMD[0]:
        return _encode_kernel_simd
    return _encode_kernel_small if s < 32 else _encode_kernel


_SIMD = [True]  # tests switch the SIMD stage off to compare both paths byte for byte


_NO_EF = {np.dtype(np.float64): np.zeros((0, 1), np.float64), np.dtype(np.float32): np.zeros((0, 1), np.float32)}


def encode(X, keys, s, b, use_max, elias, width, E=None):
    """Quantize and encode every row in one pass; returns ``(buffer, offsets, nbits)``.

    With ``E`` (an (n, d) array of X's dtype: error feedback's memory), the rows encoded are
    p = X + E (added in X's dtype, as ``numpy.add``), a bucket at a time, and E is overwritten with
    p - c, where c is what the decoder returns for the message, value for value (the sender's
    side of error feedback: no second pass over memory, no decode). X is not modified. A NaN/Inf
    found then concerns p: E is left partly updated.

    Entry j of row i uses the random word ``uniform_word(keys[i], j)`` (the SplitMix64 stream
    of the row's key, :mod:`simdist.rng`): ``batch_uniform_bits`` computed inline.

    Raises:
        NonFiniteInput: X holds NaN or Inf (found by the kernel's sums of squares; the caller
            reports the index).
        ValueError: a bucket's scale does not fit in float32 (|x| too large).
    """
    n, d = X.shape
    cap = ((row_capacity(d, b, s, elias, width) + 7) >> 3) + 8  # + 8: slack for word stores
    # rows are written back to back (row i + 1 from the byte after row i's last): room for the
    # longest possible rows, of which only the pages actually written become resident; then the
    # buffer is shrunk in place (realloc: no copy), so no compaction pass and no fresh buffer
    region = np.zeros(n + 1, np.int64)  # the kernel fills in the row offsets
    scratch = np.empty(n * cap, np.uint8)
    nbits = np.empty(n, np.int64)
    with_ef = E is not None
    if not with_ef:
        E = _NO_EF[X.dtype]  # (0, 1): no error feedback
    kernel = _kernel(s, elias)
    bad = kernel(X, np.asarray(keys, np.uint64), np.int64(s), np.int64(b), use_max, elias,
                 np.int64(width), ENC_CODE, ENC_LEN, ENC_TOP, ENC_LEN2, region, scratch, nbits, E)
    if bad >= 0:
        if not np.all(np.isfinite(X)):  # the exact check, on the error path only
            raise NonFiniteInput("X holds NaN or Inf")
        if with_ef:
            with np.errstate(over="ignore", invalid="ignore"):
                if not np.all(np.isfinite(X[bad] + E[bad])):
                    raise NonFiniteInput("X + E holds NaN or Inf")
        raise ValueError(
            f"x: row {bad} has a bucket whose {'max' if use_max else 'l2'} norm exceeds the float32 "
            f"range (3.4e38); QSGD sends the scale as float32"
        )
    scratch.resize(int(region[n]), refcheck=False)  # nothing else refers to scratch
    return scratch, region, nbits
