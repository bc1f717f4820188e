"""What the aggregation rules and the attacks share: a registry name and a JSON config."""

from __future__ import annotations

import dataclasses

__all__ = ["Named"]


class Named:
    """Base of a frozen dataclass with a class attribute ``name``: its config and its short form."""

    name = ""

    def get_config(self) -> dict:
        """JSON-ready config (the module's ``make(x.get_config())`` rebuilds it)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name}({args})"
