"""simdist's coding layer: bit I/O, Elias codes, fixed-width packing, index coding.

Everything here produces real bytes; ``nbits`` is always measured from the written
buffer, and every decoder raises :class:`simdist.DecodeError` on malformed input.
"""

from .bitio import BitReader, BitWriter, nbytes_for
from .elias import code_lengths, decode, delta_str, encode, gamma_str, omega_str

__all__ = [
    "BitReader",
    "BitWriter",
    "nbytes_for",
    "code_lengths",
    "encode",
    "decode",
    "gamma_str",
    "delta_str",
    "omega_str",
]
