"""Registry of compressors by name (no if/elif factory).

Example:
    >>> from simdist import compressors
    >>> c = compressors.make("qsgd", s=4)
    >>> compressors.make(c.get_config()) == c
    True
"""

from __future__ import annotations

import dataclasses
import importlib

__all__ = ["register", "make", "available", "get"]

_REGISTRY: dict[str, type] = {}

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
_loaded = False


def register(cls):
    """Class decorator: add a compressor class under ``cls.name``; duplicates are an error."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} must define a non-empty class attribute 'name'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"a compressor named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN:
            importlib.import_module(f"simdist.compressors.{mod}")


def available() -> list[str]:
    """Sorted names of the registered compressors."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> type:
    """The compressor class registered under ``name``."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown compressor {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


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
    if isinstance(spec, dict):
        if params:
            raise TypeError("pass either a config dict or a name with keyword parameters, not both")
        params = dict(spec)
        spec = params.pop("name", None)
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a compressor name or a config dict, got {type(spec).__name__}")
    cls = get(spec)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {spec!r}; allowed: {sorted(names)}")
    return cls(**params)
