"""simdist: simulate and validate communication-efficient distributed SGD.

Compressors (quantizers, sparsifiers, error feedback) with bit-exact encodings,
checked against their theorems; see :mod:`simdist.compressors` and :mod:`analysis`.
"""

from .errors import DecodeError

__version__ = "0.1.0"

__all__ = ["DecodeError", "__version__"]
