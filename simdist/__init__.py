"""simdist: simulate and validate communication-efficient distributed SGD.

Compressors (quantizers, sparsifiers, error feedback) with bit-exact encodings,
checked against their theorems; see :mod:`simdist.compressors` and :mod:`analysis`.
"""

from .errors import DecodeError

__version__ = "0.1.0"

__all__ = ["DecodeError", "__version__", "train", "TrainConfig", "History"]


def __getattr__(name):
    # the engine (and the problems, network and collectives it imports) loads on first use
    if name in ("train", "TrainConfig", "History"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'simdist' has no attribute {name!r}")
