"""The QSGD encoder's code stage as explicit SIMD (AVX-512), bit-identical to the scalar path.

Per bucket the scalar encoder walks the nonzero levels one at a time (a 64-bit mask per 64 entries,
tzcnt, one table lookup, an append to the bit accumulator): ~23 instructions per nonzero, most of
the encode. :func:`bucket_codes` does the per-nonzero work sixteen lanes at a time instead, in one
LLVM-IR loop (Numba does not vectorize it: the compaction and the table lookups have no NumPy-level
form):

1. **compaction**: for each 16 levels, ``llvm.experimental.vector.compress`` packs the nonzero
   levels and their 1-based positions to the front of a register (``vpcompressd``; the memory form
   is microcoded on AMD Zen, so the whole register is stored), and ``ctpop`` of the mask advances;
2. **codes**: per 16 nonzeros, the distance ``g = pos[k] - pos[k - 1]``, the sign and
   ``a = |level|``; omega(g) (g < 64) and omega(a) (a < 32) come from two in-register tables
   (``vpermi2d``: 32 dword entries each, ``code | length << 16``), and the nonzero's code
   ``omega(g) . sign . omega(a)`` (<= 24 bits) and its length are formed with variable shifts;
3. **units**: codes 2k and 2k + 1 are joined into one top-aligned 64-bit word (<= 48 bits), and
   pairs 2i and 2i + 1 again when the four codes fit in 56 bits (the common case: ~38 bits on
   average at s = 16, bucket 512); the units and their lengths are compressed back to back
   (``vpcompressq``), so the caller's scalar loop appends one unit (two to four codes) per 64-bit
   store: its latency chain (length -> shift -> next length) runs once per unit, not per code.

A bucket with a distance >= 64 or a level >= 32 (rare at s = 16, bucket 512; common for small s or
large s) is reported (``bad != 0``) and the caller encodes it with the scalar path: the bits are
the same either way (tested byte for byte against the scalar kernel).

The tables' ``vpermi2d`` is an x86 AVX-512 instruction. :data:`AVAILABLE` says whether Numba's
target has it (the host's CPU features, or ``NUMBA_CPU_FEATURES``); elsewhere the encoder never
calls this kernel.

Development note: Numba's on-disk cache keys a kernel on its own file only, so after editing this
module touch ``simdist/kernels/qsgd_encode.py`` (or delete its ``__pycache__/*.nb*``) before measuring:
the cached kernel still inlines the old code otherwise.

References:
    Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding",
    NeurIPS 2017, Sec. 3.2 (the Elias-coded message); Intel 64 and IA-32 Architectures Software
    Developer's Manual, VPCOMPRESSD and VPERMI2D; LLVM Language Reference,
    ``llvm.experimental.vector.compress``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from ..coding.elias import omega_str

__all__ = ["AVAILABLE", "TAB_G", "TAB_A", "PAD", "bucket_codes"]

def _target_features() -> set:
    """CPU features Numba compiles for: ``NUMBA_CPU_FEATURES`` when set, else the host's (as Numba
    itself decides; e.g. ``NUMBA_CPU_FEATURES=""`` for portable caches turns AVX-512 off)."""
    feats = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return {f[1:] for f in feats.split(",") if f.startswith("+")}


#: Numba's target has the AVX-512 F/BW instructions :func:`bucket_codes` (and the decoder's
#: :func:`simdist.kernels.qsgd_simd_decode.expand_store`) compile to.
AVAILABLE = {"avx512f", "avx512bw"} <= _target_features()

#: Room past a bucket's nonzeros that :func:`bucket_codes` writes (padding lanes).
PAD = 32


def _table(n: int) -> np.ndarray:
    """int32[n]: omega(k) | len(omega(k)) << 16 for 1 <= k < n; entry 0 is 0 (no code)."""
    t = np.zeros(n, np.int32)
    for k in range(1, n):
        c = omega_str(k)
        t[k] = int(c, 2) | (len(c) << 16)
    return t


TAB_G = _table(64)  # distances 1..63 (omega(63) has 12 bits)
TAB_A = _table(32)  # levels 1..31 (omega(31) has 11 bits)

_I1, _I16, _I32, _I64 = ir.IntType(1), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)
_V8 = ir.VectorType(_I32, 8)
_V8Q = ir.VectorType(_I64, 8)
_M16 = ir.VectorType(_I1, 16)
_M8 = ir.VectorType(_I1, 8)
_V4 = ir.VectorType(_I32, 4)
_V4Q = ir.VectorType(_I64, 4)


def _splat(builder, v, vt):
    u = builder.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(_I32, 0))
    zeros = ir.Constant(ir.VectorType(_I32, vt.count), [0] * vt.count)
    return builder.shuffle_vector(u, ir.Constant(vt, ir.Undefined), zeros)


def _c16(v):
    return ir.Constant(_V16, [v] * 16)


@intrinsic
def bucket_codes(typingctx, lev, nchunks, pos, lvo, ptop, pln, tab_g, tab_a):
    """(c, bad, units): the bucket's c nonzeros coded into ``units`` top-aligned 64-bit words
    ``ptop[:units]`` of ``pln[:units]`` bits each (in order, each <= 56 bits); ``bad != 0`` when a
    distance >= 64 or a level >= 32 occurs (then ``ptop``/``pln`` are meaningless and the caller
    takes the scalar path).

    Args:
        lev: int32[>= 16 nchunks], the bucket's signed levels, zero beyond the bucket.
        nchunks: number of 16-level chunks to scan.
        pos: int32[>= 16 nchunks + PAD + 1], scratch; on return pos[0] = 0 and pos[1:c + 1] are
            the nonzeros' 1-based positions.
        lvo: int32[>= 16 nchunks + PAD], scratch (the nonzero levels).
        ptop: uint64[>= 8 nchunks + PAD], pln: int32[>= 8 nchunks + PAD]: the units.
        tab_g, tab_a: :data:`TAB_G`, :data:`TAB_A`.
    """
    arrs = (lev, pos, lvo, tab_g, tab_a)
    if not all(isinstance(a, types.Array) and a.dtype == types.int32 and a.layout == "C" for a in arrs):
        return None
    if not (isinstance(ptop, types.Array) and ptop.dtype == types.uint64 and isinstance(pln, types.Array)
            and pln.dtype == types.int32):
        return None
    sig = types.UniTuple(types.int64, 3)(lev, nchunks, pos, lvo, ptop, pln, tab_g, tab_a)

    def codegen(context, builder, signature, args):
        if not AVAILABLE:  # no AVX-512 here: "cannot code" (the caller's scalar path does every bucket)
            one, zero = ir.Constant(_I64, 1), ir.Constant(_I64, 0)
            return context.make_tuple(builder, signature.return_type, [zero, one, zero])

        def data(k):
            return context.make_array(signature.args[k])(context, builder, value=args[k]).data

        la, pa, oa, ta, tla, tga, taa = (data(k) for k in (0, 2, 3, 4, 5, 6, 7))
        n = context.cast(builder, args[1], signature.args[1], types.int64)
        mod = builder.module

        def cst(v, ptr, m):  # the lanes of v where m, to ptr[0], ptr[1], ...; the whole vector is stored
            # (register-form compress + one store: the memory form of vpcompress is microcoded on Zen)
            fn = cgutils.get_or_insert_function(mod, ir.FunctionType(v.type, [v.type, m.type, v.type]),
                                                f"llvm.experimental.vector.compress.v{v.type.count}{v.type.element}")
            r = builder.call(fn, [v, m, ir.Constant(v.type, [0] * v.type.count)])
            builder.store(r, builder.bitcast(ptr, v.type.as_pointer()), align=4)

        pop = cgutils.get_or_insert_function(mod, ir.FunctionType(_I16, [_I16]), "llvm.ctpop.i16")
        perm = cgutils.get_or_insert_function(mod, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                              "llvm.x86.avx512.vpermi2var.d.512")
        vabs = cgutils.get_or_insert_function(mod, ir.FunctionType(_V16, [_V16, _I1]), "llvm.abs.v16i32")

        def vload(ptr, idx, vt=_V16):
            return builder.load(builder.bitcast(builder.gep(ptr, [idx]), vt.as_pointer()), align=4)

        def vstore(v, ptr, idx):
            builder.store(v, builder.bitcast(builder.gep(ptr, [idx]), v.type.as_pointer()), align=4)

        # 1. compaction: pos[1 + c ...] = 1-based positions, lvo[c ...] = levels of the nonzeros
        cnt = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
        iota1 = ir.Constant(_V16, list(range(1, 17)))
        builder.store(ir.Constant(_I32, 0), pa)
        pa1 = builder.gep(pa, [ir.Constant(_I64, 1)])
        with cgutils.for_range(builder, n) as loop:
            off = builder.mul(loop.index, ir.Constant(_I64, 16))
            v = vload(la, off)
            m = builder.icmp_signed("!=", v, _c16(0))
            c = builder.load(cnt)
            idx = builder.add(iota1, _splat(builder, builder.trunc(off, _I32), _V16))
            cst(idx, builder.gep(pa1, [c]), m)
            cst(v, builder.gep(oa, [c]), m)
            k = builder.zext(builder.call(pop, [builder.bitcast(m, _I16)]), _I64)
            builder.store(builder.add(c, k), cnt)
        c = builder.load(cnt)
        # padding lanes: distance 0 and level 0 (table entry 0: no bits), two chunks' worth
        last = builder.load(builder.gep(pa, [c]))
        for j in (1, 17):
            vstore(_splat(builder, last, _V16), pa, builder.add(c, ir.Constant(_I64, j)))
        for j in (0, 16):
            vstore(_c16(0), oa, builder.add(c, ir.Constant(_I64, j)))
        # 2.-4. codes, 16 nonzeros at a time, joined in pairs, then in units
        tg0, tg1, tg2, tg3 = (vload(tga, ir.Constant(_I64, 16 * j)) for j in range(4))
        ta0, ta1 = (vload(taa, ir.Constant(_I64, 16 * j)) for j in range(2))
        bad = cgutils.alloca_once_value(builder, _c16(0))
        ucnt = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
        pop8 = cgutils.get_or_insert_function(mod, ir.FunctionType(ir.IntType(8), [ir.IntType(8)]), "llvm.ctpop.i8")
        nq = builder.lshr(builder.add(c, ir.Constant(_I64, 15)), ir.Constant(_I64, 4))
        mask16 = _c16(0xFFFF)
        with cgutils.for_range(builder, nq) as loop:
            off = builder.mul(loop.index, ir.Constant(_I64, 16))
            g = builder.sub(vload(pa1, off), vload(pa, off))
            lv = vload(oa, off)
            a = builder.call(vabs, [lv, ir.Constant(_I1, 0)])
            sgn = builder.lshr(lv, _c16(31))
            out_of_table = builder.or_(builder.lshr(g, _c16(6)), builder.lshr(a, _c16(5)))
            builder.store(builder.or_(builder.load(bad), out_of_table), bad)
            lo = builder.call(perm, [tg0, g, tg1])  # entries g & 31 of 0..31
            hi = builder.call(perm, [tg2, g, tg3])  # and of 32..63
            eg = builder.select(builder.icmp_unsigned("!=", builder.and_(g, _c16(32)), _c16(0)), hi, lo)
            ea = builder.call(perm, [ta0, a, ta1])
            cg, lg = builder.and_(eg, mask16), builder.lshr(eg, _c16(16))
            ca, lna = builder.and_(ea, mask16), builder.lshr(ea, _c16(16))
            nz = builder.zext(builder.icmp_unsigned("!=", a, _c16(0)), _V16)
            code = builder.or_(builder.or_(builder.shl(cg, builder.add(lna, nz)), builder.shl(sgn, lna)), ca)
            ln = builder.add(builder.add(lg, lna), nz)
            # 3. pairs, in place: 64-bit lane k holds codes 2k (low half) and 2k + 1 (high half), so
            # no lane crosses: top-aligned (code_e << (64 - L_e)) | (code_o << (64 - L_e - L_o))
            def q8(v):
                return builder.bitcast(v, _V8Q)

            def cq(v):
                return ir.Constant(_V8Q, [v] * 8)

            cw, lw = q8(code), q8(ln)
            ce, co = builder.and_(cw, cq(0xFFFFFFFF)), builder.lshr(cw, cq(32))
            le, lo_ = builder.and_(lw, cq(0xFFFFFFFF)), builder.lshr(lw, cq(32))
            se = builder.sub(cq(64), le)
            so = builder.sub(se, lo_)
            # shift counts < 64 on used lanes; masked to 6 bits (a zero code stays zero) on padding lanes
            top = builder.or_(builder.shl(ce, builder.and_(se, cq(63))), builder.shl(co, builder.and_(so, cq(63))))
            lp = builder.add(le, lo_)  # pair lengths (0 on padding)
            # 4. units: pairs 2i and 2i + 1 (the two qwords of a 128-bit lane) joined when their codes
            # fit in 56 bits (<= 7 bits stay pending after a word store), else both kept; lane 2i holds
            # unit "a" (the joined word, or pair 2i), lane 2i + 1 unit "b" (pair 2i + 1, or nothing)
            swap = ir.Constant(_V8, [1, 0, 3, 2, 5, 4, 7, 6])  # in-lane qword swap (vpshufd)
            tsw = builder.shuffle_vector(top, top, swap)
            lsw = builder.shuffle_vector(lp, lp, swap)
            lq = builder.add(lp, lsw)  # the same in both qwords of a pair-pair
            fits = builder.icmp_unsigned("<=", lq, cq(56))
            even = ir.Constant(ir.VectorType(_I1, 8), [1, 0] * 4)
            joined = builder.or_(top, builder.lshr(tsw, builder.and_(lp, cq(63))))  # lp <= 48
            units = builder.select(builder.and_(fits, even), joined, top)
            ulen = builder.select(builder.and_(fits, even), lq, lp)
            keep = builder.and_(builder.icmp_unsigned("!=", ulen, cq(0)),
                                builder.or_(even, builder.xor(fits, ir.Constant(ir.VectorType(_I1, 8), [1] * 8))))
            u = builder.load(ucnt)
            cst(units, builder.gep(ta, [u]), keep)
            cst(builder.trunc(ulen, _V8), builder.gep(tla, [u]), keep)
            k = builder.zext(builder.call(pop8, [builder.bitcast(keep, ir.IntType(8))]), _I64)
            builder.store(builder.add(u, k), ucnt)
        bv = builder.load(bad)
        red = cgutils.get_or_insert_function(mod, ir.FunctionType(_I32, [_V16]), "llvm.vector.reduce.or.v16i32")
        b64 = builder.zext(builder.call(red, [bv]), _I64)
        return context.make_tuple(builder, signature.return_type, [c, b64, builder.load(ucnt)])

    return sig, codegen
