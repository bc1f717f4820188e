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

from ..registry import Registry

__all__ = ["register", "make", "available", "get"]

#: Built-in problem modules, imported on first use of the registry.
_BUILTIN = ("mean_estimation", "least_squares", "logistic", "mlp_digits", "sign_counterexample")

REGISTRY = Registry("problem", "simdist.problems", _BUILTIN)
register = REGISTRY.register
available = REGISTRY.available
get = REGISTRY.get


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
    cls, params = REGISTRY.resolve(spec, params)
    return cls(**params)
