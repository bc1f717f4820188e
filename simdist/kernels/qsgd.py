"""Numba kernels of QSGD: quantize, write the bits, read them back.

The wire format is documented in :mod:`simdist.compressors.qsgd`; the plain-Python oracle these
kernels are tested against (bit for bit) is :mod:`simdist.reference.qsgd`.

Encoding (:func:`encode`) is one Numba call over the whole (n, d) batch; per bucket it
(1) computes the float32 scale, (2) rounds every entry to a level, compacting the nonzeros
branch-free into a small reused array (no per-bucket allocation), and (3) writes the codes
with a 64-bit accumulator, 32 bits at a time. Rows go to a scratch buffer sized for the
longest possible message (a proven bound; untouched pages cost nothing), and a second small
kernel copies them back to back into the exact buffer.

Decoding (:func:`decode`) keeps a bit reservoir refilled byte by byte inside the row, so it
never reads outside ``buffer[offsets[i]:offsets[i+1]]``. A nonzero whose sign, omega(level)
and omega(distance) fit in ``TABLE_BITS`` bits is decoded with one lookup (``TRIPLE``);
otherwise each omega code is looked up alone (``DEC_VAL``/``DEC_LEN``) and codes longer than
the table, or running past the row, go to the bounds-checked
:func:`simdist.coding.elias.get_omega`. Every decoded level, position and scale is
range-checked; errors are returned as status codes and raised as DecodeError by the wrapper.

Scale rule (shared with the reference): the float64 scale of a bucket is ``max|v_i|``
(``norm="max"``) or ``max(sqrt(S), max|v_i|)`` (``norm="l2"``), where S is the sum of
squares accumulated in float64 over 8 lanes (lane k takes the entries k, k+8, ... of the
bucket in order) combined as ``((S0+S1)+(S2+S3))+((S4+S5)+(S6+S7))``; the floor at
``max|v_i|`` guards against rounding and underflow. It is rounded to float32 and bumped up by
one ulp when rounding went down, so ``|v_i| / scale32 <= 1`` exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..coding.elias import get_omega, omega_str
from ..errors import raise_decode_status
from ..rng import uniform_word

__all__ = ["TABLE_BITS", "encode", "decode", "bucket_scales"]

#: Width of the omega decode lookup table (codes of values up to 63 fit in 12 bits).
TABLE_BITS = 12
_ENC_MAX = 4096  # omega codes of 1..4095 are tabulated for the encoder
_F32_INF_BITS = 0x7F800000
_UNIFORM = 2.0**-32


def _build_tables():
    enc_code = np.zeros(_ENC_MAX, np.int64)
    enc_len = np.zeros(_ENC_MAX, np.int64)
    dec_val = np.zeros(1 << TABLE_BITS, np.int32)
    dec_len = np.zeros(1 << TABLE_BITS, np.int32)  # 0: the code does not fit in TABLE_BITS bits
    for k in range(1, _ENC_MAX):
        code = omega_str(k)
        enc_code[k], enc_len[k] = int(code, 2), len(code)
        if len(code) <= TABLE_BITS:
            lo = int(code, 2) << (TABLE_BITS - len(code))
            hi = (int(code, 2) + 1) << (TABLE_BITS - len(code))
            dec_val[lo:hi], dec_len[lo:hi] = k, len(code)
    return enc_code, enc_len, dec_val, dec_len


ENC_CODE, ENC_LEN, DEC_VAL, DEC_LEN = _build_tables()


def _build_triple_table():
    """One lookup for a whole nonzero: TABLE_BITS-bit window -> sign, level, distance, length.

    Entry = length | level << 5 | distance << 17 | sign << 29 when the sign bit, omega(level)
    and omega(distance) all lie inside the window; 0 when they do not (then the decoder reads
    them one by one).
    """
    mask = (1 << TABLE_BITS) - 1
    w = np.arange(1 << TABLE_BITS, dtype=np.int64)
    l1 = DEC_LEN[(w << 1) & mask].astype(np.int64)
    ok1 = (l1 > 0) & (l1 <= TABLE_BITS - 1)  # the level code ends inside the window
    l2 = DEC_LEN[(w << (1 + l1)) & mask].astype(np.int64)
    ok = ok1 & (l2 > 0) & (1 + l1 + l2 <= TABLE_BITS)
    entry = (1 + l1 + l2) | (DEC_VAL[(w << 1) & mask].astype(np.int64) << 5)
    entry |= DEC_VAL[(w << (1 + l1)) & mask].astype(np.int64) << 17
    entry |= (w >> (TABLE_BITS - 1)) << 29
    return np.where(ok, entry, 0).astype(np.int32)


TRIPLE = _build_triple_table()


# --- float32 bit patterns without views ---------------------------------------------------------


@njit(cache=True, inline="always")
def _f32_bits(v):
    """IEEE binary32 bit pattern of a non-negative float64 ``v`` that is exactly a float32."""
    if v == 0.0:
        return np.int64(0)
    if v > 3.4028234663852886e38:
        return np.int64(_F32_INF_BITS)
    m, e = math.frexp(v)
    if e >= -125:
        return np.int64(((e + 126) << 23) | (np.int64(m * 16777216.0) - 8388608))
    return np.int64(v * 2.0**149)


@njit(cache=True, inline="always")
def _f32_value(bits):
    """float64 value of a finite non-negative binary32 pattern."""
    e = (bits >> 23) & 0xFF
    m = bits & 0x7FFFFF
    if e == 0:
        return math.ldexp(np.float64(m), -149)
    return math.ldexp(np.float64(m | 0x800000), np.int64(e - 150))


@njit(cache=True, inline="always")
def _scale_bits(x, lo, hi, use_max):
    """float32 bit pattern of one bucket's scale (see the module docstring)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = 0.0
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    xs = x[lo:hi]  # indices from range() below are provably >= 0: no wraparound code
    full = (hi - lo) >> 3
    for q in range(full):
        a0 = abs(np.float64(xs[8 * q])); a1 = abs(np.float64(xs[8 * q + 1]))  # noqa: E702
        a2 = abs(np.float64(xs[8 * q + 2])); a3 = abs(np.float64(xs[8 * q + 3]))  # noqa: E702
        a4 = abs(np.float64(xs[8 * q + 4])); a5 = abs(np.float64(xs[8 * q + 5]))  # noqa: E702
        a6 = abs(np.float64(xs[8 * q + 6])); a7 = abs(np.float64(xs[8 * q + 7]))  # noqa: E702
        m0 = max(m0, a0); m1 = max(m1, a1); m2 = max(m2, a2); m3 = max(m3, a3)  # noqa: E702
        m4 = max(m4, a4); m5 = max(m5, a5); m6 = max(m6, a6); m7 = max(m7, a7)  # noqa: E702
        s0 += a0 * a0; s1 += a1 * a1; s2 += a2 * a2; s3 += a3 * a3  # noqa: E702
        s4 += a4 * a4; s5 += a5 * a5; s6 += a6 * a6; s7 += a7 * a7  # noqa: E702
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
    if use_max:
        sc = mx
    else:
        sc = math.sqrt(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))
        if sc < mx:
            sc = mx
    r = np.float64(np.float32(sc))
    bits = _f32_bits(r)
    if r < sc:
        bits += 1
    return bits


@njit(cache=True)
def _scales_kernel(X, b, use_max, out):
    n, d = X.shape
    nb = (d + b - 1) // b
    for i in range(n):
        for k in range(nb):
            bits = _scale_bits(X[i], k * b, min(d, (k + 1) * b), use_max)
            out[i, k] = np.inf if bits >= _F32_INF_BITS else _f32_value(bits)


def bucket_scales(X: np.ndarray, b: int, use_max: bool) -> np.ndarray:
    """The float32 scales (as float64) of every bucket of every row of X, shape (n, nbuckets)."""
    X = np.ascontiguousarray(X)
    out = np.empty((X.shape[0], -(-X.shape[1] // b)), np.float64)
    _scales_kernel(X, b, use_max, out)
    return out


# --- encoding -----------------------------------------------------------------------------------
# Performance notes (measured with Numba 0.68): an inline="always" helper that stores into an
# array argument ran ~20x slower than the same stores written in place, so the inlined helpers
# below only compute and the kernels store; and loops index with range() variables
# (provably >= 0) so Numba's negative-index wraparound does not block vectorization.


@njit(cache=True, inline="always")
def _omega_code(k, enc_code, enc_len):
    """(code, length) of omega(k), k >= 1."""
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
def _push(acc, nacc, code, ln):
    """Append ``ln`` (<= 31) bits to the accumulator (nacc < 32 before and after).

    Returns ``(acc, nacc, word)``: ``word`` >= 0 is a full 32-bit group for the caller to store.
    """
    acc = (acc << ln) | code
    nacc += ln
    w = np.int64(-1)
    if nacc >= 32:
        nacc -= 32
        w = acc >> nacc
        acc &= (np.int64(1) << nacc) - 1
    return acc, nacc, w


def _row_capacity(d: int, b: int, s: int, elias: bool, width: int) -> int:
    """Bits a row can need at most: per bucket 32 + 2(b+1) + b (1 + |omega(s)|) (Elias: the
    distance codes of a bucket sum to at most 2(b+1) bits since |omega(g)| <= 2g), or exactly
    32 + b * width (fixed)."""
    nb = -(-d // b)
    if not elias:
        return 32 * nb + d * width
    return 32 * nb + 2 * (d + nb) + d * (1 + len(omega_str(s)))


@njit(cache=True)
def _round_levels(x, lo, hi, key, sc, s, lev):
    """lev[j - lo] = signed level of x[j] for lo <= j < hi."""
    fs = np.float64(s)
    xs = x[lo:hi]
    for jj in range(hi - lo):  # range indices (provably >= 0) let LLVM vectorize the loop
        j = lo + jj
        v = np.float64(xs[jj])
        ts = fs * (abs(v) / sc)
        lv = np.int64(ts)
        p = ts - lv
        if lv >= s:
            lv = s
            p = 0.0
        u = np.float64(np.int64(uniform_word(key, j))) * _UNIFORM
        lv += np.int64(u < p)
        lev[jj] = -lv if v < 0 else lv


@njit(cache=True)
def _encode_kernel(X, keys, s, b, use_max, elias, width, enc_code, enc_len, region, scratch, nbits):
    n, d = X.shape
    nb = (d + b - 1) // b
    lev = np.empty(min(b, d), np.int32)  # one bucket's signed levels
    pos = np.empty(min(b, d) + 1, np.int32)  # elias: positions of the nonzeros, then hi
    for i in range(n):
        key = keys[i]
        o = region[i]
        acc = np.int64(0)
        nacc = np.int64(0)
        for k in range(nb):
            lo = k * b
            hi = min(d, lo + b)
            # 1. the float32 scale
            bits = _scale_bits(X[i], lo, hi, use_max)
            if bits >= _F32_INF_BITS:
                return i
            sc = _f32_value(bits)
            # 2. stochastic rounding of s |v_j| / scale32, compacting the nonzeros branch-free
            if sc == 0.0:
                lev[: hi - lo] = 0
            else:
                _round_levels(X[i], lo, hi, key, sc, s, lev)
            m = hi - lo
            if elias:
                m = 0
                for jj in range(hi - lo):
                    pos[m] = lo + jj
                    m += np.int64(lev[jj] != 0)
            pos[m] = hi
            # 3. the bits: scale, then (distance, sign + level) per nonzero and the last distance
            #    (elias), or one fixed-width code per entry. Items 0 (scale), m + 1 (last distance)
            #    and codes longer than 31 bits take the general path; the rest one 31-bit push.
            prev = lo - 1
            for t in range(m + 2 if elias else m + 1):
                if t == 0:
                    c1, l1, c2, l2 = np.int64(bits), np.int64(32), np.int64(0), np.int64(0)
                elif not elias:
                    c1, l1, c2, l2 = np.int64(lev[t - 1]) + s, width, np.int64(0), np.int64(0)
                else:
                    j = np.int64(pos[t - 1])
                    c1, l1 = _omega_code(j - prev, enc_code, enc_len)  # first position / distance
                    prev = j
                    c2, l2 = np.int64(0), np.int64(0)
                    if t <= m:
                        lv = np.int64(lev[j - lo])
                        c2, l2 = _omega_code(abs(lv), enc_code, enc_len)
                        c2 |= np.int64(lv < 0) << l2
                        l2 += 1
                if l1 + l2 <= 31:  # the usual case: one push
                    acc, nacc, w = _push(acc, nacc, (c1 << l2) | c2, l1 + l2)
                    if w >= 0:
                        scratch[o] = (w >> 24) & 0xFF
                        scratch[o + 1] = (w >> 16) & 0xFF
                        scratch[o + 2] = (w >> 8) & 0xFF
                        scratch[o + 3] = w & 0xFF
                        o += 4
                    continue
                for q in range(2):
                    c = c1 if q == 0 else c2
                    ln = l1 if q == 0 else l2
                    while ln > 0:
                        take = min(ln, 31)
                        ln -= take
                        acc, nacc, w = _push(acc, nacc, (c >> ln) & ((np.int64(1) << take) - 1), take)
                        if w >= 0:
                            scratch[o] = (w >> 24) & 0xFF
                            scratch[o + 1] = (w >> 16) & 0xFF
                            scratch[o + 2] = (w >> 8) & 0xFF
                            scratch[o + 3] = w & 0xFF
                            o += 4
        nbits[i] = (o - region[i]) * 8 + nacc
        while nacc >= 8:
            nacc -= 8
            scratch[o] = (acc >> nacc) & 0xFF
            o += 1
        if nacc > 0:
            scratch[o] = (acc << (8 - nacc)) & 0xFF
            o += 1
    return -1


@njit(cache=True)
def _compact_rows(scratch, region, offsets, buf):
    for i in range(offsets.shape[0] - 1):
        src = region[i]
        for j in range(offsets[i], offsets[i + 1]):
            buf[j] = scratch[src]
            src += 1


def encode(X, keys, s, b, use_max, elias, width):
    """Quantize and encode every row in one pass; returns ``(buffer, offsets, nbits)``.

    Entry j of row i uses the random word ``uniform_word(keys[i], j)`` (the SplitMix64 stream
    of the row's key, :mod:`simdist.rng`): ``batch_uniform_bits`` computed inline. Rows are
    written into a scratch buffer with room for the longest possible message (only the bytes
    written are touched), then copied back to back into the exact buffer.

    Raises:
        ValueError: a bucket's scale does not fit in float32 (|x| too large).
    """
    n, d = X.shape
    cap = (_row_capacity(d, b, s, elias, width) + 7) >> 3
    region = np.arange(n + 1, dtype=np.int64) * cap
    scratch = np.empty(n * cap, np.uint8)
    nbits = np.empty(n, np.int64)
    bad = _encode_kernel(X, np.asarray(keys, np.uint64), np.int64(s), np.int64(b), use_max, elias,
                         np.int64(width), ENC_CODE, ENC_LEN, region, scratch, nbits)
    if bad >= 0:
        raise ValueError(
            f"x: row {bad} has a bucket whose {'max' if use_max else 'l2'} norm exceeds the float32 "
            f"range (3.4e38); QSGD sends the scale as float32"
        )
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum((nbits + 7) >> 3, out=offsets[1:])
    if n == 1:
        return scratch[: offsets[1]].copy(), offsets, nbits
    buf = np.empty(int(offsets[-1]), np.uint8)
    _compact_rows(scratch, region, offsets, buf)
    return buf, offsets, nbits


# --- decoding -----------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _peek_omega(acc, nacc, dec_val, dec_len):
    """Table decode of the omega code at the reservoir's head: ``(value, length)``, length 0 if
    the code is longer than TABLE_BITS or runs past the bits available."""
    if nacc >= TABLE_BITS:
        w = (acc >> (nacc - TABLE_BITS)) & ((1 << TABLE_BITS) - 1)
    else:
        w = (acc << (TABLE_BITS - nacc)) & ((1 << TABLE_BITS) - 1)
    ln = np.int64(dec_len[w])
    if ln > nacc:
        ln = 0
    return np.int64(dec_val[w]), ln


@njit(cache=True)
def _slow_omega(buf, limit, pos):
    """Omega code at absolute bit ``pos`` via the checked reader, and the reservoir after it.

    Returns ``(value, acc, nacc, nxt, status)``; status < 0 is a decode error.
    """
    v, pos = get_omega(buf, limit, pos)
    if pos < 0:
        return np.int64(0), np.int64(0), np.int64(0), np.int64(0), np.int64(pos)
    nxt = pos >> 3
    r = pos & 7
    if r == 0:
        return v, np.int64(0), np.int64(0), nxt, np.int64(0)
    return v, np.int64(buf[nxt]) & ((1 << (8 - r)) - 1), np.int64(8 - r), nxt + 1, np.int64(0)


@njit(cache=True)
def _decode_kernel(buf, offsets, s, b, elias, width, dec_val, dec_len, triple, Y, nbits):
    n, d = Y.shape
    nb = (d + b - 1) // b
    fs = np.float64(s)
    for i in range(n):
        end = offsets[i + 1]
        limit = end * 8
        y = Y[i]
        # the reservoir: the low `nacc` bits of `acc` are the bits at absolute positions
        # [8 nxt - nacc, 8 nxt) (higher bits of acc are stale: every read masks); it only ever
        # loads bytes offsets[i] <= nxt < end
        acc = np.int64(0)
        nacc = np.int64(0)
        nxt = offsets[i]
        for k in range(nb):
            lo = k * b
            hi = min(d, lo + b)
            # 1. the scale
            while nacc <= 54 and nxt < end:
                acc = (acc << 8) | np.int64(buf[nxt])
                nacc += 8
                nxt += 1
            if nacc < 32:
                return i, np.int64(-1)
            nacc -= 32
            bits = (acc >> nacc) & 0xFFFFFFFF
            if bits >= 0x80000000:
                return i, np.int64(-3)  # negative scale (sign bit set)
            if bits >= _F32_INF_BITS:
                return i, np.int64(-6)  # Inf or NaN scale
            sc = _f32_value(bits)
            unit = sc / fs
            if not elias:  # 2f. one fixed-width code per entry
                for jj in range(hi - lo):
                    if nacc < width:
                        while nacc <= 54 and nxt < end:
                            acc = (acc << 8) | np.int64(buf[nxt])
                            nacc += 8
                            nxt += 1
                        if nacc < width:
                            return i, np.int64(-1)
                    nacc -= width
                    c = (acc >> nacc) & ((np.int64(1) << width) - 1)
                    if c > 2 * s:
                        return i, np.int64(-3)
                    if c != s and sc == 0.0:
                        return i, np.int64(-5)
                    y[lo + jj] = np.float64(c - s) * unit
                continue
            # 2e. omega(first position), then per nonzero: sign, omega(level), omega(distance)
            stop = hi - lo + 1  # position b + 1
            v, ln = _peek_omega(acc, nacc, dec_val, dec_len)
            if ln != 0:
                nacc -= ln
            else:
                v, acc, nacc, nxt, st = _slow_omega(buf, limit, nxt * 8 - nacc)
                if st < 0:
                    return i, st
            if v > stop:
                return i, np.int64(-3)
            if v != stop and sc == 0.0:
                return i, np.int64(-5)
            p = v
            while p != stop:
                if nacc <= 2 * TABLE_BITS:  # the slow path below needs <= 1 + 2 * TABLE_BITS bits
                    while nacc <= 54 and nxt < end:
                        acc = (acc << 8) | np.int64(buf[nxt])
                        nacc += 8
                        nxt += 1
                    if nacc < 1:
                        return i, np.int64(-1)
                e = np.int64(0)
                if nacc >= TABLE_BITS:
                    e = np.int64(triple[(acc >> (nacc - TABLE_BITS)) & ((1 << TABLE_BITS) - 1)])
                if e != 0:  # fast path: the whole nonzero in one lookup
                    nacc -= e & 31
                    sign = e >> 29
                    lv = (e >> 5) & 4095
                    g = (e >> 17) & 4095
                else:
                    sign = (acc >> (nacc - 1)) & 1
                    lv, ln = _peek_omega(acc, nacc - 1, dec_val, dec_len)
                    nacc -= 1
                    if ln != 0:
                        nacc -= ln
                    else:
                        lv, acc, nacc, nxt, st = _slow_omega(buf, limit, nxt * 8 - nacc)
                        if st < 0:
                            return i, st
                    g, ln = _peek_omega(acc, nacc, dec_val, dec_len)
                    if ln != 0:
                        nacc -= ln
                    else:
                        g, acc, nacc, nxt, st = _slow_omega(buf, limit, nxt * 8 - nacc)
                        if st < 0:
                            return i, st
                if lv > s:
                    return i, np.int64(-3)
                val = np.float64(lv) * unit
                y[lo + p - 1] = -val if sign else val
                if g > stop - p:
                    return i, np.int64(-3)
                p += g
        nbits[i] = nxt * 8 - nacc - offsets[i] * 8
    return -1, np.int64(0)


def decode(buffer, offsets, d, s, b, elias, width, dtype):
    """Decode every row; returns ``(Y, nbits)``; raises DecodeError on malformed rows."""
    n = offsets.shape[0] - 1
    Y = np.zeros((n, d), dtype)
    nbits = np.zeros(n, np.int64)
    row, st = _decode_kernel(
        buffer, offsets, np.int64(s), np.int64(b), elias, np.int64(width), DEC_VAL, DEC_LEN, TRIPLE, Y, nbits
    )
    if row >= 0:
        raise_decode_status(int(st), f"qsgd (row {row})")
    return Y, nbits
