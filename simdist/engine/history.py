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

``comm_profile`` keeps, per step, the cost profile of the step's collective
(:func:`simdist.network.profile.cost_profile`: per round the ranks' Pareto-maximal (messages, bytes,
reduced bytes)), which is all its alpha-beta price depends on: :meth:`History.reprice` prices the
same run on another network (or with another compute model) exactly as a run there would have been,
without running it again.

Files: JSON with top-level keys ``config``, ``seed``, the per-step lists, ``comm_profile``
(``{"profiles": [...], "step": [...]}``: the distinct profiles, each a list of ``[round, messages,
bytes, reduced bytes]`` rows, and each step's index into them; a full-precision run stores one) and
``stop_reason``/``stopped_at``/``summary``; CSV with one row per step (pandas-friendly: ``pandas.read_csv``; no profiles). Both are
written atomically. No pickle.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_write_csv, atomic_write_json
from ..network.profile import check_profile

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
    #: per step, the (k, 4) int64 cost profile of its collective (None: not recorded)
    comm_profile: list | None = None

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
        if self.comm_profile is not None:  # distinct profiles once, and each step's index into them
            unique, index, seen = [], [], {}
            for p in self.comm_profile:
                rows = np.asarray(p, np.int64).tolist()
                key = repr(rows)
                if key not in seen:
                    seen[key] = len(unique)
                    unique.append(rows)
                index.append(seen[key])
            out["comm_profile"] = {"profiles": unique, "step": index}
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
        profiles = data.get("comm_profile")
        if isinstance(profiles, dict):  # {"profiles": distinct ones, "step": each step's index}
            try:
                profiles = [profiles["profiles"][int(i)] for i in profiles["step"]]
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ValueError(f"malformed comm_profile: {exc!r}") from None
        if profiles is not None:
            if len(profiles) != len(arrays["loss"]):
                raise ValueError(f"comm_profile has {len(profiles)} steps, the history {len(arrays['loss'])}")
            profiles = [check_profile(p) for p in profiles]
        return cls(config=data["config"], seed=int(data["seed"]), stop_reason=data.get("stop_reason"),
                   stopped_at=data.get("stopped_at"), extra=data.get("extra", {}), comm_profile=profiles, **arrays)

    def reprice(self, network, compute="config") -> "History":
        """The same run priced on another network (and/or compute model), without running it again.

        Every step's ``sim_time`` becomes ``compute seconds + price of its cost profile`` on
        ``network``: exactly (bit for bit) what a run of this config with that network would have
        recorded, since the network changes no computed value, only the price. Everything else is kept.

        Args:
            network: a network preset name, config dict or :class:`~simdist.network.AlphaBeta`.
            compute: ``"config"`` (the run's own compute model), None (no compute time) or a
                compute preset name / config (:mod:`simdist.network.compute`).

        Returns:
            A new :class:`History` whose config names the new network (and compute model).

        Raises:
            ValueError: the history has no cost profiles (written before they were recorded).

        Example:
            >>> import simdist
            >>> h = simdist.train("mean_estimation", "sign", nodes=8, steps=5, lr=0.1, network="10gbe")
            >>> a = h.reprice("aries")
            >>> b = simdist.train("mean_estimation", "sign", nodes=8, steps=5, lr=0.1, network="aries")
            >>> bool((a.sim_time == b.sim_time).all()), bool((a.loss == h.loss).all())
            (True, True)
        """
        from ..network import AlphaBeta
        from ..network import make as make_network
        from ..network.profile import price_profile
        from .loop import compute_seconds

        if self.comm_profile is None:
            raise ValueError("this history has no per-step cost profiles (comm_profile); run it again to reprice it")
        net = network if isinstance(network, AlphaBeta) else make_network(network)
        cfg = dict(self.config)
        cfg["network"] = net.get_config() if isinstance(network, AlphaBeta) else network  # as a run stores it
        if compute != "config":
            cfg["compute"] = compute
        compute_s = compute_seconds(cfg)
        sim = np.array([compute_s + price_profile(p, net) for p in self.comm_profile], dtype=np.float64)
        return History(config=cfg, seed=self.seed, loss=self.loss.copy(), grad_norm=self.grad_norm.copy(),
                       bits=self.bits.copy(), wire_bits=self.wire_bits.copy(), sim_time=sim,
                       wall_time=self.wall_time.copy(), stop_reason=self.stop_reason, stopped_at=self.stopped_at,
                       extra={**self.extra, "repriced_from": {"network": self.config.get("network"),
                                                              "compute": self.config.get("compute")}},
                       comm_profile=list(self.comm_profile))

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
