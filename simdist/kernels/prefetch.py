"""Software prefetch for Numba kernels (an LLVM intrinsic: Numba has no prefetch of its own).

A kernel that streams through several large arrays while doing much work per cache line (the QSGD
encoder: tens of cycles per entry) leaves the hardware prefetchers behind: each new bucket of the
input starts with a miss to main memory. ``prefetch(a, i)`` asks for the cache line holding
``a[i]`` ahead of use; it never faults (an address past the end is only a hint), changes no value,
and costs one instruction.

Example:
    >>> import numpy as np
    >>> from numba import njit
    >>> @njit
    ... def total(a):
    ...     s = 0.0
    ...     for i in range(a.size):
    ...         if i % 16 == 0:
    ...             prefetch(a, i + 256)
    ...         s += a[i]
    ...     return s
    >>> float(total(np.ones(1000)))
    1000.0

References:
    LLVM Language Reference, ``llvm.prefetch`` intrinsic.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch"]

_I8P = ir.IntType(8).as_pointer()
_I32 = ir.IntType(32)


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint: bring the cache line of ``arr[i]`` (a C-contiguous 1-D array, any i) into the cache for reading."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, value=args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.int64)
        ptr = builder.bitcast(builder.gep(a.data, [idx]), _I8P)  # no inbounds: past the end is allowed
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])  # read, keep, data
        return context.get_dummy_value()

    return types.none(arr, i), codegen
