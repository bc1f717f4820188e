"""The GPU path: CUDA kernels (Numba's CUDA target) for the hot compressors, and array dispatch.

* :mod:`simdist.gpu.backend`: which backend an array belongs to (``is_device_array``,
  ``array_namespace``, ``to_host``); importing it needs neither a GPU nor CuPy.
* :mod:`simdist.gpu.kernels`: the ``cuda.jit`` kernels (scaled sign, fixed-width QSGD).
* :mod:`simdist.gpu.codecs`: host wrappers that launch them and return the CPU path's exact bytes.

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
