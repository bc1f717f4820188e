"""Plain NumPy/Python reference implementations: the oracles the Numba kernels are tested against."""
