"""Gradient compressors with bit-exact encodings.

Example:
    >>> import numpy as np
    >>> from simdist import compressors
    >>> c = compressors.make("qsgd", s=4)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(1000).astype(np.float32)
    >>> p = c.compress(x, rng)
    >>> y = c.decompress(p)
    >>> y.shape == x.shape and p.nbits < 32 * x.size
    True
"""

from .base import Compressor
from .dgc import DGC, DGCState
from .error_feedback import ErrorFeedback
from .payload import Payload, PayloadBatch
from .registry import available, get, make, register

__all__ = [
    "Compressor", "DGC", "DGCState", "ErrorFeedback", "Payload", "PayloadBatch", "available", "get", "make", "register",
]
