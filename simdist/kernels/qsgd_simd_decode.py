"""The QSGD decoder's value writes as one AVX-512 expand, bit-identical to the scalar writes.

The window decoder (:mod:`simdist.kernels.qsgd_decode`) decodes up to four nonzeros per table
lookup. Its scalar way of writing them is a 16-wide store of zeros and then one store per value,
each value's level and offset taken out of the 64-bit table entry by shifts and masks: ~40 of the
~60 instructions of a lookup, and the decoder is bound by instruction throughput, not by its
table walk. :func:`expand_store` writes the same 16 entries (8 for float64) in five instructions:

1. the lookup window's signed levels, four int8 in :func:`expand_table`, are loaded and widened
   (``vpmovsxbd``), converted to float64, multiplied by the bucket's unit ``scale / s`` and
   rounded to the output dtype: the values ``float64(level) * unit`` that the scalar decoder
   stores, rounding for rounding;
2. ``vexpandps`` / ``vexpandpd`` places value k at the k-th set bit of the window's 16-bit
   position mask (the offsets of its nonzeros from the first one) and zeros elsewhere;
3. one unaligned vector store writes them.

The caller uses it when the window's nonzeros lie within the 16 (8) entries from the first one
and those entries lie inside the row; writing zeros past the last nonzero is harmless, as in the
scalar path (the decoder writes the row in order, so later values overwrite them).

``vexpandps`` is an x86 AVX-512 instruction: the decoder calls this only where
:data:`simdist.kernels.qsgd_simd.AVAILABLE`.

Development note: Numba's on-disk cache keys a kernel on its own file only, so after editing this
module touch ``simdist/kernels/qsgd_decode.py`` (or delete its ``__pycache__/*.nb*``) before measuring:
the cached kernel still inlines the old code otherwise.

References:
    Alistarh et al., "QSGD", NeurIPS 2017, Sec. 3.2; Intel SDM, VEXPANDPS / VPMOVSXBD.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .qsgd_simd import AVAILABLE

__all__ = ["expand_table", "expand_store"]


@lru_cache(maxsize=None)
def expand_table(s_cap: int) -> np.ndarray:
    """int64 per window of :func:`simdist.kernels.qsgd_decode.multi_table` (same index): bytes 0-3
    the signed levels of its nonzeros as int8 (slots past the count repeat the last), bits 32-47
    the mask of their offsets from the first nonzero (bit j: a nonzero j entries after it; 0 when
    an offset is >= 16, where the caller never uses the entry)."""
    from .qsgd_decode import SLOTS, multi_table

    m = multi_table(s_cap).astype(np.uint64)
    count = (m & np.uint64(15)) != 0
    out = np.zeros(m.size, np.uint64)
    mask = np.zeros(m.size, np.uint64)
    ok = count.copy()
    for k in range(SLOTS):
        if k == 0:
            lv, off = (m >> np.uint64(10)) & np.uint64(63), np.zeros(m.size, np.uint64)
        else:
            lv = (m >> np.uint64(4 + 12 * k)) & np.uint64(63)
            off = (m >> np.uint64(10 + 12 * k)) & np.uint64(63)
        signed = (lv.astype(np.int64) ^ 32) - 32  # level & 63 -> signed level
        out |= (signed.astype(np.int8).view(np.uint8).astype(np.uint64)) << np.uint64(8 * k)
        ok &= off < 16
        mask |= np.where(off < 16, np.uint64(1) << (off & np.uint64(15)), np.uint64(0))
    out |= np.where(ok, mask, np.uint64(0)) << np.uint64(32)
    return np.where(count, out, np.uint64(0)).view(np.int64)


@intrinsic
def expand_store(typingctx, y, q, etab, widx, unit):
    """Write ``y[q:q + L]`` (L = 16 for float32, 8 for float64): the values of window ``widx``'s
    nonzeros (``float64(level) * unit`` rounded to y's dtype) at their mask positions, zeros
    elsewhere. The caller guarantees q + L <= len(y) and that the mask has no bit >= L."""
    if not (isinstance(y, types.Array) and y.ndim == 1 and y.layout == "C" and y.dtype in (types.float32, types.float64)
            and isinstance(etab, types.Array) and etab.dtype == types.int64 and isinstance(unit, types.Float)):
        return None
    f32 = y.dtype == types.float32
    lanes = 16 if f32 else 8
    sig = types.none(y, q, etab, widx, unit)

    def codegen(context, builder, signature, args):
        if not AVAILABLE:  # no AVX-512: never called here (the decoder's scalar kernel has the
            return context.get_dummy_value()  # branch compiled out); emit no x86 intrinsic
        i8, i16, i32, i64 = (ir.IntType(n) for n in (8, 16, 32, 64))
        dbl = ir.DoubleType()
        ety = ir.FloatType() if f32 else dbl
        yd = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        ed = context.make_array(signature.args[2])(context, builder, value=args[2]).data
        qq = context.cast(builder, args[1], signature.args[1], types.int64)
        wi = context.cast(builder, args[3], signature.args[3], types.int64)
        u = context.cast(builder, args[4], signature.args[4], types.float64)
        entry = builder.bitcast(builder.gep(ed, [wi]), i8.as_pointer())
        lv = builder.load(builder.bitcast(entry, ir.VectorType(i8, 4).as_pointer()), align=1)
        v4 = builder.sitofp(builder.sext(lv, ir.VectorType(i32, 4)), ir.VectorType(dbl, 4))
        us = builder.insert_element(ir.Constant(ir.VectorType(dbl, 4), ir.Undefined), u, ir.Constant(i32, 0))
        us = builder.shuffle_vector(us, ir.Constant(ir.VectorType(dbl, 4), ir.Undefined),
                                    ir.Constant(ir.VectorType(i32, 4), [0] * 4))
        v4 = builder.fmul(v4, us)
        if f32:
            v4 = builder.fptrunc(v4, ir.VectorType(ety, 4))
        vt = ir.VectorType(ety, lanes)
        wide = builder.shuffle_vector(v4, ir.Constant(ir.VectorType(ety, 4), [0.0] * 4),
                                      ir.Constant(ir.VectorType(i32, lanes), list(range(4)) + [4] * (lanes - 4)))
        mptr = builder.bitcast(builder.gep(entry, [ir.Constant(i64, 4)]), i16.as_pointer())
        mask = builder.load(mptr, align=1)
        mty = ir.VectorType(ir.IntType(1), lanes)
        mk = builder.bitcast(mask if f32 else builder.trunc(mask, i8), mty)
        name = f"llvm.x86.avx512.mask.expand.v{lanes}f{32 if f32 else 64}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, mty]), name)
        r = builder.call(fn, [wide, ir.Constant(vt, [0.0] * lanes), mk])
        builder.store(r, builder.bitcast(builder.gep(yd, [qq]), vt.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen
