"""Numba hot loops (CPU kernels). Each is tested against its reference in simdist.reference."""
