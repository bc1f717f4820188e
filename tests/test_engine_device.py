"""``simdist.train(..., device="cuda")``: the run on the device (simdist.engine.device).

Under Numba's CUDA simulator the device path runs with xp = numpy and the simulator's kernels
(the compressors get device arrays, so they encode and decode with their GPU codecs): its
histories must be bit-identical to the CPU run's. A real GPU (CuPy) is covered by
tests/test_gpu_wiring_device.py.
"""

import numpy as np
import pytest
from numba import config, cuda

from simdist.engine import device as dev
from simdist.engine.config import TrainConfig
from simdist.engine.loop import train

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

KEYS = ("loss", "grad_norm", "bits", "wire_bits", "sim_time")
PROBLEMS = [
    {"name": "mean_estimation", "d": 20, "n": 40},
    {"name": "least_squares", "d": 12, "n": 60, "dtype": "float32"},
    {"name": "logistic", "d": 9, "n": 60},
]
COMPRESSORS = [{"name": "sign", "bucket": 8}, {"name": "qsgd", "s": 4, "bucket": 8, "encoding": "fixed"}, None]
#: the other codecs (slower under the simulator: one problem each, with error feedback)
MORE = [(PROBLEMS[1], {"name": "qsgd", "s": 4, "bucket": 8}, True), (PROBLEMS[0], {"name": "topk", "k": 3}, True),
        (PROBLEMS[2], {"name": "terngrad", "bucket": 4}, True), (PROBLEMS[1], {"name": "onebit", "bucket": 4}, True)]


def _same(a, b):
    for k in KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.extra["x_final"] == b.extra["x_final"]
    assert (a.stop_reason is None) == (b.stop_reason is None) and a.stopped_at == b.stopped_at


@pytest.mark.parametrize("comp,ef", [(c, ef) for c in COMPRESSORS for ef in (False, True) if c or not ef],
                         ids=lambda v: v["name"] if isinstance(v, dict) else str(v))
@pytest.mark.parametrize("prob", PROBLEMS, ids=lambda p: p["name"])
def test_history_is_bit_identical_to_the_cpu_run(prob, comp, ef):
    _check_identical(prob, comp, ef)


@pytest.mark.parametrize("prob,comp,ef", MORE, ids=lambda v: v["name"] if isinstance(v, dict) else str(v))
def test_history_is_bit_identical_with_the_other_codecs(prob, comp, ef):
    _check_identical(prob, comp, ef)


def _check_identical(prob, comp, ef):
    kw = dict(nodes=3, steps=4, lr=0.1, batch_size=2, seed=3, error_feedback=ef, momentum=0.5)
    a = train(prob, comp, **kw)
    b = train(prob, comp, device="cuda", **kw)
    assert a.steps_run == 4 and b.config["device"] == "cuda" and a.config["device"] == "cpu"
    _same(a, b)


@pytest.mark.parametrize("comp", COMPRESSORS[:2], ids=lambda c: c["name"])
def test_divergence_stops_at_the_same_step(comp):
    kw = dict(nodes=2, steps=400, lr=1e3, seed=1)  # x grows ~1e3-fold a step: beyond float32 in ~13 steps
    a = train({"name": "mean_estimation", "d": 6, "n": 20}, comp, **kw)
    b = train({"name": "mean_estimation", "d": 6, "n": 20}, comp, device="cuda", **kw)
    assert a.stop_reason is not None and "diverged" in b.stop_reason and a.steps_run > 5
    _same(a, b)


def test_callback_sees_the_iterates():
    seen = []
    kw = dict(nodes=2, steps=3, lr=0.2, seed=0, callback=lambda t, x, agg: seen.append((t, np.array(x))))
    train("mean_estimation", "sign", device="cuda", **kw)
    cpu = []
    kw["callback"] = lambda t, x, agg: cpu.append((t, np.array(x)))
    train("mean_estimation", "sign", **kw)
    assert [t for t, _ in seen] == [0, 1, 2]
    for (_, x), (_, y) in zip(seen, cpu):
        np.testing.assert_array_equal(x, y)


def test_mean_rows_is_the_cpu_kernel():
    from simdist.kernels.rows import mean_rows as _mean_rows

    C = np.random.default_rng(0).standard_normal((7, 33)).astype(np.float32) * 1e3
    C[:, 0] = -0.0  # signed zeros: the sum starts from +0.0 on both sides
    want = np.empty(33)
    _mean_rows(C, want)
    got = dev.mean_rows(C, np)
    assert np.array_equal(got, want) and np.signbit(got[0]) == np.signbit(want[0])


# --- what cannot run on the device: clear errors -------------------------------------------------------


def test_config_validates_device():
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(problem="mean_estimation", device="gpu")
    cfg = TrainConfig(problem="mean_estimation", device="cuda")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_problems_and_compressors_without_device_support_are_refused():
    with pytest.raises(ValueError, match="mlp_digits.*least_squares, logistic, mean_estimation"):
        train("mlp_digits", "sign", steps=1, device="cuda")
    with pytest.raises(TypeError, match="no GPU codec"):
        train("mean_estimation", {"name": "randk", "k": 2}, steps=1, device="cuda")


def test_no_gpu_and_no_simulator_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(ValueError, match="device='cuda' needs a CUDA GPU and CuPy"):
        train("mean_estimation", "sign", steps=1, device="cuda")


def test_the_distributed_loop_refuses_device_cuda():
    from simdist.engine.distributed import run_rank

    class One:
        rank, size = 0, 1

    with pytest.raises(ValueError, match="applies to the simulator"):
        run_rank(TrainConfig(problem="mean_estimation", nodes=1, device="cuda"), One())
