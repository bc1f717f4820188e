"""Test-session setup shared by the whole suite.

Numba's CUDA simulator: where no real CUDA GPU is present and the user has not chosen
(``NUMBA_ENABLE_CUDASIM`` unset), turn the simulator on so that the ``cuda.jit`` kernels of
:mod:`simdist.gpu` run as Python on NumPy arrays and ``tests/test_gpu_sim.py`` checks their logic
on every machine. The variable must be set before ``numba.cuda`` is first imported; it only
affects ``numba.cuda`` (which nothing else in simdist imports), so the other tests are neither
slowed nor changed. A GPU is detected cheaply, without importing numba.cuda or CuPy, by its
device nodes (/dev/nvidia0, ... on Linux, /dev/dxg under WSL).
"""

import glob
import os


def _gpu_device_nodes() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg"))


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _gpu_device_nodes():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    import sys

    if "numba.core.config" in sys.modules:  # numba imported already: re-read its environment
        sys.modules["numba.core.config"].reload_config()
