"""The configuration of a training run: a frozen, JSON/TOML-round-trippable dataclass.

Example TOML (see examples/):

    seed = 0
    nodes = 8
    steps = 200
    batch_size = 4
    lr = 0.05
    network = "10gbe"
    collective = "auto"
    error_feedback = false

    [problem]
    name = "least_squares"
    d = 50

    [compressor]
    name = "qsgd"
    s = 4

Deep Gradient Compression instead of a compressor (no [compressor] table, momentum = 0):

    [dgc]
    momentum = 0.9
    sparsity = 0.999
    warmup_steps = 100
"""

from __future__ import annotations

import dataclasses
import numbers
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .._validate import check_choice, check_float, check_int

__all__ = ["TrainConfig", "PARTITIONS", "DEVICES", "DELAYS", "dgc_config", "check_dgc"]

PARTITIONS = ("iid", "skewed")
#: Where a simulated run's arrays live (see :mod:`simdist.engine.device`).
DEVICES = ("cpu", "cuda")
#: How bounded-staleness delays are drawn (see :mod:`simdist.engine.staleness`).
DELAYS = ("uniform", "fixed")


def _spec(name: str, value, *, allow_none: bool = False):
    """Normalise a registry spec (a name or a config dict) to a dict with a 'name'."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return {"name": value}
    if hasattr(value, "get_config"):
        return value.get_config()
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise TypeError(f"{name} must be a registered name or a config dict with a 'name', got {value!r}")


def dgc_config(value) -> dict | None:
    """Normalise a DGC spec (None, "dgc", a config dict with or without its "name", or a
    :class:`~simdist.compressors.dgc.DGC`) to ``DGC.get_config()``'s dict (every parameter, JSON-ready)."""
    if value is None:
        return None
    from ..compressors.dgc import DGC

    if isinstance(value, DGC):
        return value.get_config()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise TypeError(f"dgc must be None, a DGC config dict or a DGC object, got {value!r}")
    return DGC.from_config({"name": "dgc", **value}).get_config()


def check_dgc(*, compressor, error_feedback, momentum, collective, device, aggregator) -> None:
    """Refuse what a run with DGC (``TrainConfig.dgc``) cannot combine with, naming the parameter and why."""
    if compressor is not None:
        raise ValueError(f"compressor must be None with dgc: DGC sends its own top-k payloads, got {compressor!r}")
    if error_feedback:
        raise ValueError("error_feedback must be false with dgc: DGC keeps its own accumulation of what was not sent")
    if momentum != 0:
        raise ValueError(f"momentum must be 0 with dgc: DGC's momentum correction (dgc's 'momentum') replaces the "
                         f"engine's momentum, got momentum={momentum!r}")
    if collective not in ("auto", "allgather"):
        raise ValueError(f"collective must be 'auto' or 'allgather' with dgc: the nodes allgather DGC's top-k "
                         f"payloads, got {collective!r}")
    if device != "cpu":
        raise ValueError(f"device={device!r} does not run dgc: DGC's state and codec are on the host (use device='cpu')")
    if aggregator is not None:
        raise ValueError(f"aggregator must be None with dgc: a DGC run averages the decoded payloads, "
                         f"got {aggregator!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (the seed included); immutable.

    Attributes:
        problem: problem name or config (``simdist.problems``).
        compressor: compressor name or config (``simdist.compressors``), or None for full precision.
        nodes: number of nodes P (>= 1).
        steps: number of steps T (>= 1).
        lr: a positive number, or a schedule config (``simdist.engine.schedules``).
        batch_size: samples per node per step (>= 1).
        seed: root seed (>= 0); everything random is derived from it per node and step.
        network: network preset name or alpha-beta config (``simdist.network``).
        compute: compute-model preset name or config, or None (no compute time).
        collective: "auto" (allreduce for full precision, allgather of payloads otherwise) or an algorithm name:
            "ring", "recursive_doubling", "rabenseifner" (full precision); "allgather" or a SparCML
            sparse allreduce of the decoded vectors, "sparse_recursive_doubling",
            "sparse_split_allgather", "sparse_dynamic" (compressed; see ``simdist.collectives.sparse``).
        error_feedback: keep an error-feedback memory per node (``ErrorFeedback``).
        momentum: heavy-ball momentum in [0, 1).
        partition: "iid" or "skewed" (label-sorted) split of the data across nodes.
        eval_every: evaluate the loss every this many steps and at the last step; the steps between
            repeat the last evaluated value (default 1: every step).
        device: ``"cpu"`` (NumPy) or ``"cuda"``: the iterate and the (P, d) matrices on the GPU as
            CuPy arrays, compressed with the GPU codecs (:mod:`simdist.engine.device`).
        aggregator: None (the mean, summed by the collective) or a robust aggregation rule's name or
            config (``simdist.robust.aggregators``: median, trimmed_mean, krum, geometric_median, mean):
            every node receives every vector (allgather) and applies the rule.
        byzantine: the number f of Byzantine nodes, in [0, nodes - 1]: the last f nodes send the
            ``attack``'s vectors instead of their gradients.
        attack: the attack's name or config (``simdist.robust.attacks``); required when byzantine > 0.
        staleness: the largest gradient delay tau >= 0 (bounded-staleness SGD,
            :mod:`simdist.engine.staleness`): node i's gradient at step t is taken at x_{t - delay}.
        delays: how the delays are drawn: "uniform" (each node and step, uniform in [0, tau]) or
            "fixed" (every gradient exactly tau steps old); delays never reach before x_0.
        dgc: None, or a Deep Gradient Compression config (:class:`simdist.compressors.dgc.DGC`: a dict
            such as ``{"momentum": 0.9, "sparsity": 0.999, "warmup_steps": 100, "clip_norm": None,
            "momentum_masking": True}``, normalised to ``DGC.get_config()``): every node runs DGC on its
            gradient (momentum correction, clipping, masking, sparsity warm-up, its own accumulation)
            and the nodes allgather its top-k payloads (in the simulator only, on the host). DGC
            replaces the compressor, error feedback and momentum, so it needs ``compressor=None``,
            ``error_feedback=False`` and ``momentum=0``; also collective "auto" or "allgather",
            ``device="cpu"`` and no ``aggregator`` (each refused with a ValueError saying why).
    """

    problem: dict
    compressor: dict | None = None
    nodes: int = 4
    steps: int = 100
    lr: object = 0.1
    batch_size: int = 1
    seed: int = 0
    network: object = "10gbe"
    compute: object = None
    collective: str = "auto"
    error_feedback: bool = False
    momentum: float = 0.0
    partition: str = "iid"
    eval_every: int = 1
    device: str = "cpu"
    aggregator: dict | None = None
    byzantine: int = 0
    attack: dict | None = None
    staleness: int = 0
    delays: str = "uniform"
    dgc: dict | None = None

    def __post_init__(self):
        s = object.__setattr__
        s(self, "problem", _spec("problem", self.problem))
        s(self, "compressor", _spec("compressor", self.compressor, allow_none=True))
        s(self, "nodes", check_int("nodes", self.nodes, low=1))
        s(self, "steps", check_int("steps", self.steps, low=1))
        s(self, "batch_size", check_int("batch_size", self.batch_size, low=1))
        s(self, "seed", check_int("seed", self.seed, low=0))
        s(self, "eval_every", check_int("eval_every", self.eval_every, low=1))
        if isinstance(self.lr, numbers.Real) and not isinstance(self.lr, bool):
            s(self, "lr", check_float("lr", self.lr, low=0.0, low_open=True))
        elif isinstance(self.lr, dict) or isinstance(self.lr, str):
            s(self, "lr", _spec("lr", self.lr))
        elif hasattr(self.lr, "get_config"):
            s(self, "lr", self.lr.get_config())
        else:
            raise TypeError(f"lr must be a positive number or a schedule config, got {self.lr!r}")
        s(self, "network", self._plain(self.network, "network"))
        if self.compute is not None:
            s(self, "compute", self._plain(self.compute, "compute"))
        if not isinstance(self.collective, str):
            raise TypeError(f"collective must be a string, got {self.collective!r}")
        if not isinstance(self.error_feedback, bool):
            raise TypeError(f"error_feedback must be true or false, got {self.error_feedback!r}")
        s(self, "momentum", check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True))
        check_choice("partition", self.partition, PARTITIONS)
        check_choice("device", self.device, DEVICES)
        s(self, "aggregator", _spec("aggregator", self.aggregator, allow_none=True))
        s(self, "byzantine", check_int("byzantine", self.byzantine, low=0, high=self.nodes - 1))
        s(self, "attack", _spec("attack", self.attack, allow_none=True))
        if (self.byzantine > 0) != (self.attack is not None):
            raise ValueError("byzantine > 0 needs an attack and an attack needs byzantine > 0 "
                             f"(got byzantine={self.byzantine}, attack={self.attack!r})")
        s(self, "staleness", check_int("staleness", self.staleness, low=0))
        check_choice("delays", self.delays, DELAYS)
        s(self, "dgc", dgc_config(self.dgc))
        if self.dgc is not None:
            check_dgc(compressor=self.compressor, error_feedback=self.error_feedback, momentum=self.momentum,
                      collective=self.collective, device=self.device, aggregator=self.aggregator)

    @staticmethod
    def _plain(value, name):
        """A preset name stays a string; a model object or dict becomes a plain dict."""
        if isinstance(value, str):
            return value
        if hasattr(value, "get_config"):
            return value.get_config()
        if isinstance(value, dict):
            return dict(value)
        raise TypeError(f"{name} must be a preset name or a config dict, got {value!r}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a dict; unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise TypeError(f"config must be a dict, got {type(data).__name__}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "problem" not in data:
            raise ValueError("config needs a 'problem' (a name or a [problem] table with a name)")
        return cls(**data)

    @classmethod
    def from_toml(cls, path) -> "TrainConfig":
        """Read a TOML file (see the module docstring for the layout)."""
        with open(Path(path), "rb") as f:
            return cls.from_dict(tomllib.load(f))
