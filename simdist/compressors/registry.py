"""Registry of compressors by name (see :class:`simdist.registry.Registry`).

Example:
    >>> from simdist import compressors
    >>> c = compressors.make("qsgd", s=4)
    >>> compressors.make(c.get_config()) == c
    True
"""

from __future__ import annotations

from ..registry import Registry

__all__ = ["register", "make", "available", "get"]

#: Built-in compressor modules, imported on first use of the registry.
_BUILTIN = (
    "identity",
    "fp16",
    "qsgd",
    "nuqsgd",
    "terngrad",
    "onebit",
    "sign",
    "topk",
    "randk",
    "threshold",
    "chain",
)

REGISTRY = Registry("compressor", "simdist.compressors", _BUILTIN)
register = REGISTRY.register
available = REGISTRY.available
get = REGISTRY.get


def make(spec, **params):
    """Build a compressor from a name and parameters, or from a config dict.

    Args:
        spec: a registered name (``"qsgd"``) or a config dict (``{"name": "qsgd", "s": 4}``),
            or a compressor (returned as is when no params are given).
        **params: parameters (only with a name).

    Returns:
        The compressor (an immutable, hashable config).

    Raises:
        ValueError: unknown name or parameter, or a parameter out of range.
        TypeError: a parameter of the wrong type.
    """
    from .base import Compressor

    if isinstance(spec, Compressor) and not params:
        return spec
    cls, params = REGISTRY.resolve(spec, params)
    return cls(**params)
