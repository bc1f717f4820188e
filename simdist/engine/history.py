"""The record of a training run: per-step measurements, the config and the seed.

Per step t (arrays of length ``steps_run``):

* ``loss``: f(x_t) after the update of step t (the full objective, or the evaluation set);
* ``grad_norm``: ||average of the nodes' stochastic gradients||;
* ``bits``: bits sent per node in step t, measured from the encoded payloads (mean over nodes);
* ``wire_bits``: bits that crossed the simulated network in step t, per node (from the collective's trace:
  forwarding in an allgather counts here, not in ``bits``);
* ``sim_time``: simulated seconds of step t (compute model + the network model's price of the trace);
* ``wall_time``: real seconds the simulator spent on step t.

A run that diverges stops: ``stop_reason`` says why and ``stopped_at`` at which step (the arrays then
hold the steps before it), never a silent history of NaNs.

Files: JSON with top-level keys ``config``, ``seed``, the per-step lists and ``stop_reason``/
``stopped_at``/``summary``; CSV with one row per step (pandas-friendly: ``pandas.read_csv``). Both
are written atomically. No pickle.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_write_csv, atomic_write_json

__all__ = ["History", "FIELDS"]

#: Per-step fields, in file order.
FIELDS = ("loss", "grad_norm", "bits", "wire_bits", "sim_time", "wall_time")


@dataclass
class History:
    """Per-step arrays plus the run's config and seed (see the module docstring)."""

    config: dict
    seed: int
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    grad_norm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wire_bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sim_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop_reason: str | None = None
    stopped_at: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def steps_run(self) -> int:
        """Number of recorded steps."""
        return int(len(self.loss))

    @property
    def diverged(self) -> bool:
        """True when the run stopped because a loss or gradient was not finite."""
        return self.stop_reason is not None

    def summary(self) -> dict:
        """Final loss, total bits per node, total simulated and wall seconds."""
        n = self.steps_run
        return {
            "steps": n,
            "final_loss": float(self.loss[-1]) if n else None,
            "min_loss": float(np.min(self.loss)) if n else None,
            "total_bits_per_node": float(np.sum(self.bits)),
            "total_wire_bits_per_node": float(np.sum(self.wire_bits)),
            "sim_time": float(np.sum(self.sim_time)),
            "wall_time": float(np.sum(self.wall_time)),
            "stop_reason": self.stop_reason,
            "stopped_at": self.stopped_at,
        }

    def to_dict(self) -> dict:
        """JSON-ready dict (top-level keys ``config``, ``seed``, the per-step lists, ...)."""
        out = {"config": self.config, "seed": int(self.seed)}
        for f in FIELDS:
            out[f] = np.asarray(getattr(self, f), dtype=np.float64).tolist()
        out.update({"stop_reason": self.stop_reason, "stopped_at": self.stopped_at,
                    "summary": self.summary(), "extra": self.extra})
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """Inverse of :meth:`to_dict` (the summary is recomputed, not trusted)."""
        missing = {"config", "seed", *FIELDS} - set(data)
        if missing:
            raise ValueError(f"not a simdist history: missing keys {sorted(missing)}")
        arrays = {f: np.asarray([np.nan if v is None else v for v in data[f]], dtype=np.float64) for f in FIELDS}
        return cls(config=data["config"], seed=int(data["seed"]), stop_reason=data.get("stop_reason"),
                   stopped_at=data.get("stopped_at"), extra=data.get("extra", {}), **arrays)

    def save_json(self, path) -> Path:
        """Write the history as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path) -> "History":
        """Read a history written by :meth:`save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save_csv(self, path) -> Path:
        """Write one row per step (columns ``step`` and the per-step fields), atomically."""
        cols = {f: np.asarray(getattr(self, f), dtype=np.float64) for f in FIELDS}
        rows = [{"step": t, **{f: float(cols[f][t]) for f in FIELDS}} for t in range(self.steps_run)]
        return atomic_write_csv(path, rows)

    @classmethod
    def load_csv(cls, path, config: dict | None = None, seed: int = 0) -> "History":
        """Read the per-step columns of a CSV history (config and seed are not in the CSV)."""
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        arrays = {fld: np.array([float(r[fld]) for r in rows]) for fld in FIELDS}
        return cls(config=config or {}, seed=seed, **arrays)
