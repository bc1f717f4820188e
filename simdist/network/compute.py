"""The compute-time model: simulated seconds one node spends computing its gradient in a step.

Two forms, both linear in the batch size B:

* time-based: ``seconds_per_step + B * seconds_per_sample``;
* FLOP-based: ``seconds_per_step + B * flops_per_sample / flops_per_second``.

A device preset (``"cpu-core"``, ``"v100"``, ...) fixes ``flops_per_second`` (and a fixed per-step
overhead); the FLOPs of one sample's gradient belong to the problem, so they are given either
when building the model (``make("v100", flops_per_sample=6e6)``) or per call
(``model.step_time(32, flops_per_sample=6e6)``). A rule of thumb for dense layers: a forward and
backward pass cost about 6 FLOPs per parameter per sample (2 forward, 4 backward); a linear
model's gradient about 4 per coordinate.

Presets (``available()``), all assumptions of order of magnitude, stated so that results can be
rescaled:

==========  ==================  ===============  ===========================================
name        flops_per_second    seconds_per_step  where from
==========  ==================  ===============  ===========================================
zero        -- (0 s/sample)     0                no compute time: communication only.
cpu-core    3e10                0                one x86 core with AVX2 FMA peaks at 2 FMA
                                                 units x 8 float32 lanes x 2 FLOPs x ~3 GHz
                                                 = 96 GFLOP/s; ~30% of peak is assumed for
                                                 small-batch gradient code.
v100        7.8e12              1e-5             NVIDIA V100 SXM2: 15.7 TFLOP/s float32 peak
                                                 (V100 datasheet); 50% utilisation assumed;
                                                 10 us kernel-launch overhead per step assumed.
a100        9.75e12             1e-5             NVIDIA A100 SXM4: 19.5 TFLOP/s float32 peak
                                                 (A100 datasheet; no tensor cores); 50% assumed.
==========  ==================  ===============  ===========================================

Example:
    >>> m = ComputeModel(seconds_per_sample=1e-3, seconds_per_step=2e-3)
    >>> m.step_time(8)
    0.01
    >>> make("cpu-core", flops_per_sample=3e6).step_time(10)    # 10 * 3e6 / 3e10
    0.001
    >>> ComputeModel.from_config(m.get_config()) == m
    True

References:
    NVIDIA Tesla V100 and A100 datasheets (float32 peak); Intel 64 and IA-32 Architectures
    Optimization Reference Manual (AVX2 FMA throughput: two 256-bit FMAs per cycle).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .._validate import check_float, check_int

__all__ = ["ComputeModel", "register", "make", "available"]


@dataclass(frozen=True)
class ComputeModel:
    """Compute time of one node's step: ``seconds_per_step + B * (seconds per sample)``.

    Give either ``seconds_per_sample`` or ``flops_per_second`` (with ``flops_per_sample`` now or at
    each call), not both.

    Args:
        seconds_per_sample: seconds per sample of the minibatch (finite, >= 0), or None.
        seconds_per_step: fixed seconds per step, whatever the batch (finite, >= 0).
        flops_per_sample: FLOPs of one sample's gradient (finite, >= 0), or None.
        flops_per_second: sustained FLOP/s of the device (finite, > 0), or None.
        name: a label (a preset's name).

    Example:
        >>> ComputeModel(flops_per_sample=1e6, flops_per_second=1e9).step_time(4)
        0.004

    References:
        See the module docstring for the presets' sources.
    """

    seconds_per_sample: float | None = None
    seconds_per_step: float = 0.0
    flops_per_sample: float | None = None
    flops_per_second: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "seconds_per_sample", check_float("seconds_per_sample", self.seconds_per_sample, low=0.0,
                                                  allow_none=True))
        s(self, "seconds_per_step", check_float("seconds_per_step", self.seconds_per_step, low=0.0))
        s(self, "flops_per_sample", check_float("flops_per_sample", self.flops_per_sample, low=0.0,
                                                allow_none=True))
        s(self, "flops_per_second", check_float("flops_per_second", self.flops_per_second, low=0.0,
                                                low_open=True, allow_none=True))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__} {self.name!r}")
        if self.seconds_per_sample is not None and (self.flops_per_sample is not None
                                                    or self.flops_per_second is not None):
            raise ValueError("give either seconds_per_sample or flops_per_second (with flops_per_sample), not both")
        if self.seconds_per_sample is None and self.flops_per_second is None:
            if self.flops_per_sample is not None:
                raise ValueError("flops_per_sample needs flops_per_second (the device's FLOP/s)")
            raise ValueError("give seconds_per_sample (>= 0) or flops_per_second (> 0)")

    def get_config(self) -> dict:
        """JSON-ready dict of the fields; :meth:`from_config` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "ComputeModel":
        """Build from a dict of fields; unknown keys are a ValueError naming them."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"unknown compute-model parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**config)

    def replace(self, **changes) -> "ComputeModel":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def seconds_per_sample_for(self, flops_per_sample: float | None = None) -> float:
        """Seconds per sample; ``flops_per_sample`` overrides the model's own (FLOP-based models only)."""
        if self.seconds_per_sample is not None:
            if flops_per_sample is not None:
                raise ValueError("flops_per_sample applies only to a FLOP-based model (this one is time-based)")
            return self.seconds_per_sample
        f = self.flops_per_sample if flops_per_sample is None else check_float(
            "flops_per_sample", flops_per_sample, low=0.0)
        if f is None:
            raise ValueError(f"compute model {self.name or 'FLOP-based'!r} needs flops_per_sample "
                             "(the FLOPs of one sample's gradient), in the model or in the call")
        return f / self.flops_per_second

    def step_time(self, batch_size: int, flops_per_sample: float | None = None) -> float:
        """Simulated seconds for one node's step on ``batch_size`` samples.

        Args:
            batch_size: samples in the node's minibatch (>= 0).
            flops_per_sample: per-call FLOPs per sample (FLOP-based models; overrides the field).

        Returns:
            ``seconds_per_step + batch_size * seconds per sample``.
        """
        b = check_int("batch_size", batch_size, low=0)
        return self.seconds_per_step + b * self.seconds_per_sample_for(flops_per_sample)


_PRESETS: dict[str, ComputeModel] = {}


def register(model: ComputeModel) -> ComputeModel:
    """Add ``model`` under ``model.name``; a duplicate or empty name is a ValueError."""
    if not isinstance(model, ComputeModel):
        raise TypeError(f"model must be a ComputeModel, got {type(model).__name__}")
    if not model.name:
        raise ValueError("a compute preset needs a non-empty name")
    if model.name in _PRESETS:
        raise ValueError(f"a compute preset named {model.name!r} is already registered")
    _PRESETS[model.name] = model
    return model


def available() -> list[str]:
    """Sorted names of the compute presets."""
    return sorted(_PRESETS)


def make(spec, **overrides) -> ComputeModel:
    """A compute model from a preset name, a config dict or a model, with optional field overrides.

    A dict whose ``name`` is a preset and that gives no rate (``seconds_per_sample`` or
    ``flops_per_second``) starts from that preset; otherwise the dict is a full config.

    Raises:
        ValueError: unknown preset (the message lists them) or a bad parameter.
    """
    if isinstance(spec, ComputeModel):
        return spec.replace(**overrides) if overrides else spec
    if isinstance(spec, dict):
        spec = dict(spec)
        if "seconds_per_sample" in spec or "flops_per_second" in spec:
            return ComputeModel.from_config({**spec, **overrides})
        name = spec.pop("name", None)
        return make(name, **spec, **overrides)
    if not isinstance(spec, str):
        raise TypeError(f"compute must be a preset name, a config dict or a ComputeModel, got {spec!r}")
    if spec not in _PRESETS:
        raise ValueError(f"unknown compute preset {spec!r}; available: {', '.join(available())}")
    model = _PRESETS[spec]
    if overrides:
        allowed = {f.name for f in dataclasses.fields(ComputeModel)} - {"name"}
        unknown = set(overrides) - allowed
        if unknown:
            raise ValueError(f"unknown compute-model parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        model = model.replace(**overrides)
    return model


register(ComputeModel(seconds_per_sample=0.0, name="zero"))
register(ComputeModel(flops_per_second=3e10, name="cpu-core"))
register(ComputeModel(flops_per_second=0.5 * 15.7e12, seconds_per_step=1e-5, name="v100"))
register(ComputeModel(flops_per_second=0.5 * 19.5e12, seconds_per_step=1e-5, name="a100"))
