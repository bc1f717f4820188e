"""Registry of problems by name (no if/elif factory), like the compressors' registry.

Example:
    >>> from simdist import problems
    >>> p = problems.make("mean_estimation", d=4, n=50)
    >>> problems.make(p.get_config()).get_config() == p.get_config()
    True
    >>> "least_squares" in problems.available()
    True
"""

from __future__ import annotations

import importlib
import inspect

__all__ = ["register", "make", "available", "get"]

_REGISTRY: dict[str, type] = {}

#: Built-in problem modules, imported on first use of the registry.
_BUILTIN = ("mean_estimation", "least_squares", "logistic", "mlp_digits", "sign_counterexample")
_loaded = False


def register(cls):
    """Class decorator: add a problem class under ``cls.name``; duplicates are an error."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} must define a non-empty class attribute 'name'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"a problem named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN:
            importlib.import_module(f"simdist.problems.{mod}")


def available() -> list[str]:
    """Sorted names of the registered problems."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> type:
    """The problem class registered under ``name``."""
    _load_builtins()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make(spec, **params):
    """Build a problem from a name and parameters, or from a config dict.

    Args:
        spec: a registered name (``"least_squares"``), a config dict
            (``{"name": "least_squares", "d": 50}``), or a problem (returned as is when no
            params are given).
        **params: the problem's parameters (only with a name).

    Returns:
        The problem (data generated or loaded, constants computed).

    Raises:
        ValueError: unknown name or parameter, or a parameter out of range.
        TypeError: a parameter of the wrong type.
    """
    from .base import Problem

    if isinstance(spec, Problem):
        if params:
            raise TypeError("pass either a problem object or a name with keyword parameters, not both")
        return spec
    if isinstance(spec, dict):
        if params:
            raise TypeError("pass either a config dict or a name with keyword parameters, not both")
        params = dict(spec)
        spec = params.pop("name", None)
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a problem name or a config dict, got {type(spec).__name__}")
    cls = get(spec)
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = set(params) - set(names)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for problem {spec!r}; allowed: {sorted(names)}")
    return cls(**params)
