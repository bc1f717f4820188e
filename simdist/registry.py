"""A named registry of classes built from a name or a config dict (no if/elif factories).

Used by the compressors and the problems: each kind has one :class:`Registry` whose built-in
modules are imported on first use, that refuses duplicate names, and whose :meth:`Registry.resolve`
turns ``"name"`` + parameters, or ``{"name": ..., **parameters}``, into the class and checked
keyword arguments (unknown parameters are a ValueError listing the allowed ones).

Example:
    >>> reg = Registry("widget", package="nowhere", builtins=())
    >>> @reg.register
    ... class Knob:
    ...     name = "knob"
    ...     def __init__(self, turns=1):
    ...         self.turns = turns
    >>> cls, params = reg.resolve({"name": "knob", "turns": 3}, {})
    >>> cls(**params).turns
    3
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

__all__ = ["Registry", "parameter_names"]


def parameter_names(cls) -> list[str]:
    """The constructor parameters of ``cls``: its dataclass fields, or its ``__init__`` arguments."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


class Registry:
    """Classes of one kind by their ``name`` class attribute.

    Args:
        kind: what is registered, for messages ("compressor", "problem").
        package: the package holding the built-in modules.
        builtins: module names (in ``package``) imported on first use.
    """

    def __init__(self, kind: str, package: str, builtins: tuple[str, ...]) -> None:
        self.kind = kind
        self.package = package
        self.builtins = tuple(builtins)
        self._classes: dict[str, type] = {}
        self._loaded = False

    def register(self, cls):
        """Class decorator: add ``cls`` under ``cls.name``; a duplicate name is a ValueError."""
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} must define a non-empty class attribute 'name'")
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"a {self.kind} named {name!r} is already registered ({self._classes[name].__name__})")
        self._classes[name] = cls
        return cls

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self.builtins:
                importlib.import_module(f"{self.package}.{mod}")

    def available(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        """The class registered under ``name`` (ValueError listing the names otherwise)."""
        self._load()
        if not isinstance(name, str) or name not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._classes))}")
        return self._classes[name]

    def resolve(self, spec, params: dict) -> tuple[type, dict]:
        """``(cls, params)`` from a name plus ``params``, or from a config dict (then ``params`` must be empty)."""
        if isinstance(spec, dict):
            if params:
                raise TypeError("pass either a config dict or a name with keyword parameters, not both")
            params = dict(spec)
            spec = params.pop("name", None)
        if not isinstance(spec, str):
            raise TypeError(f"spec must be a {self.kind} name or a config dict, got {type(spec).__name__}")
        cls = self.get(spec)
        allowed = parameter_names(cls)
        unknown = set(params) - set(allowed)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for {self.kind} {spec!r}; allowed: {sorted(allowed)}"
            )
        return cls, dict(params)

    def build(self, spec, params: dict, base: type):
        """An instance from a name plus ``params`` or a config dict; an instance of ``base`` is returned
        as is (then ``params`` must be empty)."""
        if isinstance(spec, base):
            if params:
                raise TypeError(f"pass either a {self.kind} object or a name with keyword parameters, not both")
            return spec
        cls, params = self.resolve(spec, params)
        return cls(**params)
