"""The GPU path: CUDA kernels (Numba's CUDA target) for the hot compressors, and array dispatch.

* :mod:`simdist.gpu.backend`: which backend an array belongs to (``is_device_array``,
  ``array_namespace``, ``to_host``); importing it needs neither a GPU nor CuPy.
* :mod:`simdist.gpu.kernels`: the ``cuda.jit`` kernels (scaled sign, fixed-width QSGD).
* :mod:`simdist.gpu.codecs`: host wrappers that launch them and return the CPU path's exact bytes;
  ``codecs_qsgd_elias``, ``codecs_topk``, ``codecs_terngrad`` and ``codecs_onebit`` (kernels in the
  matching ``kernels_*`` modules) the same for Elias-coded QSGD, top-k, TernGrad and 1BitSGD, built
  on :mod:`simdist.gpu.scan` (parallel prefix sums) and :mod:`simdist.gpu.bitstream` (device bit I/O).
* :mod:`simdist.gpu.dispatch`: the registry of device codecs by compressor (and config), used by
  ``Compressor.compress``/``decompress`` for device arrays; :mod:`simdist.gpu.arrays`: device
  arrays of any producer (shape, dtype, kind, conversions back to the caller's kind).

The kernels run on a real GPU (CuPy / Numba device arrays) and, for testing on any machine,
under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before ``numba.cuda`` is imported).
This package imports ``numba.cuda`` only when ``kernels`` or ``codecs`` is imported.

Example:
    >>> from simdist.gpu import is_device_array
    >>> import numpy as np
    >>> is_device_array(np.ones(2))
    False
"""

from .backend import array_namespace, is_device_array, to_host

__all__ = ["is_device_array", "array_namespace", "to_host"]
