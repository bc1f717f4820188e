"""The modeled reproductions `simdist repro sparcml` / `simdist repro scaling` and analysis.scaling."""

import json
import math

import numpy as np
import pytest

from analysis import collectives as ac
from analysis import scaling as sc
from paper_repro import scaling as rs
from paper_repro import sparcml as rp
from simdist.collectives import SimulatedTransport, sparse
from simdist.network import AlphaBeta

NET = AlphaBeta(alpha=2e-6, beta=3e-10)


# -- analysis.scaling --------------------------------------------------------------------------

def test_quantized_allreduce_is_reduce_scatter_plus_allgather():
    P, N, q = 8, 8000, 4.0
    nbytes = N * q / 8
    want = (P - 1) * (NET.alpha + nbytes / P * NET.beta) + ac.recursive_doubling_allgather_cost(
        P, nbytes, NET.alpha, NET.beta)
    assert sc.quantized_allreduce_time(P, N, q, NET) == pytest.approx(want, rel=1e-12)
    # at 32 bits its bandwidth term equals the ring allreduce's (both bandwidth-optimal)
    a0 = AlphaBeta(0.0, 1e-9)
    assert sc.quantized_allreduce_time(P, N, 32, a0) == pytest.approx(ac.ring_allreduce_cost(P, 4 * N, 0.0, 1e-9))
    assert sc.quantized_allreduce_time(1, N, q, NET) == 0.0


def test_allgather_time_matches_analysis_and_executed_trace():
    from simdist.collectives import make

    P, b = 8, 100
    assert sc.allgather_time(P, b, NET) == pytest.approx(
        ac.recursive_doubling_allgather_cost(P, P * b, NET.alpha, NET.beta))
    _, tr = SimulatedTransport(P).run(make("allgather"), [np.zeros(b, np.uint8)] * P)
    assert NET.price(tr) == pytest.approx(sc.allgather_time(P, b, NET), rel=1e-12)


def test_dense_allreduce_best_is_min_of_three():
    for P, n in [(8, 100), (8, 10**8), (6, 4000)]:
        each = [sc.dense_allreduce_time(P, n, NET, a) for a in ("ring", "recursive_doubling", "rabenseifner")]
        assert sc.dense_allreduce_time(P, n, NET) == min(each)
    with pytest.raises(ValueError, match="algorithm"):
        sc.dense_allreduce_time(4, 10, NET, "tree")


def test_sparcml_costs_fp32_equals_estimate_and_quantization_only_helps_dense():
    P, N = 8, 10**6
    for k in (10, 10**4, 3 * 10**5):
        base = sparse.estimate_costs(P, N, k, NET)
        c32 = sc.sparcml_costs(P, N, k, NET)
        assert c32 == pytest.approx(base, rel=1e-12)
        c8 = sc.sparcml_costs(P, N, k, NET, dense_bits=8)
        K = N * (1 - (1 - k / N) ** P)
        if K * 8 >= N * 1:   # the quantized dense phase is cheaper than the sparse stream
            assert c8["sparse_dynamic"] < c32["sparse_dynamic"]
        else:
            assert c8["sparse_dynamic"] == pytest.approx(c32["sparse_dynamic"])
    with pytest.raises(ValueError, match="k"):
        sc.sparcml_costs(P, 10, 11, NET)


def test_speedup_and_its_inverse():
    for c in (0.0, 1e-3, 0.5):
        s = sc.speedup(c, 0.2, 0.01)
        assert sc.compute_for_speedup(s, 0.2, 0.01) == pytest.approx(c, abs=1e-12)
    assert math.isnan(sc.compute_for_speedup(100.0, 0.2, 0.01))  # 20x is the ceiling here
    with pytest.raises(ValueError):
        sc.speedup(0.0, 1.0, 0.0)


def test_time_to_train_single_node_and_ideal():
    assert sc.time_to_train(1000, 1, 10, 0.5, 99.0) == 500.0
    assert sc.time_to_train(6400, 4, 32, 0.01, 0.0) == pytest.approx(sc.ideal_time(64.0, 4))
    assert sc.time_to_train(6400, 4, 32, 0.01, 0.1) == pytest.approx(50 * (0.32 + 0.1))


# -- the model functions of the reproductions ---------------------------------------------------

def test_lstm_params_by_hand():
    # 1 layer, vocab 10, embed 3, hidden 2: 30 + 4*2*(3+2+1) + 2*10 + 10
    assert rp.lstm_params(10, 3, 2, 1) == 30 + 48 + 30
    assert rp.lstm_params(10, 3, 2, 2) == 30 + 48 + 4 * 2 * 5 + 30


def test_formula_costs_equal_executed_traces_on_identical_supports():
    """Identical supports make the union sizes deterministic: executed == formula exactly
    (N divisible by P, the support spread evenly over the P blocks, gamma = 0)."""
    P, N, k = 8, 1024, 64
    idx = np.arange(0, N, N // k)
    X = np.zeros((P, N), np.float32)
    X[:, idx] = np.arange(1, P + 1, dtype=np.float32)[:, None]
    c = rp.formula_costs(P, N, k, NET)
    _, tr = SimulatedTransport(P).run(sparse.make("sparse_recursive_doubling"), list(X))
    assert NET.price(tr) == pytest.approx(ac.sparse_recursive_doubling_cost(P, k, NET.alpha, NET.beta, 8, "best"))
    _, tr = SimulatedTransport(P).run(sparse.make("sparse_split_allgather"), list(X))
    assert NET.price(tr) == pytest.approx(ac.split_allgather_cost(P, k, k, NET.alpha, NET.beta, 8))
    assert c["dense_ring"] == pytest.approx(ac.ring_allreduce_cost(P, 4 * N, NET.alpha, NET.beta))


def test_measured_bits_follow_the_wire_format():
    cfg = rs.settings(True)
    cfg["probe_d"] = 2 ** 14
    bits = rs.measured_bits(cfg)
    assert bits["qsgd4"] == 4 + 32 / 512 and bits["qsgd8"] == 8 + 32 / 512   # fixed code + a scale per bucket
    assert 0.32 < bits["topk"] < 0.5   # 1% of entries x (32-bit value + a delta-coded gap of ~100)


def test_scaling_comm_times_order():
    bits = {"qsgd4": 4.0625, "qsgd8": 8.0625, "topk": 0.43}
    c = rs.comm_times(1024, 60_000_000, bits, AlphaBeta(1.3e-6, 1e-10))
    assert c["QSGD 4-bit, quantized allreduce"] < c["QSGD 8-bit, quantized allreduce"] < c["fp32 ring allreduce"]
    assert c["QSGD 4-bit, allgather"] > c["fp32 ring allreduce"]   # allgather does not scale


# -- the reproductions end to end (quick) ------------------------------------------------------

@pytest.mark.parametrize("mod", [rp, rs])
def test_repro_quick_writes_files_and_claims_hold(mod, tmp_path):
    res = mod.run(tmp_path, quick=True)
    png = tmp_path / f"{mod.NAME}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / f"{mod.NAME}.json").read_text())
    assert data["name"] == mod.NAME
    failed = [c for c in res.claims if c["passed"] is False]
    assert not failed, failed
    assert any(c["passed"] is True for c in res.claims)


def test_sparcml_lstm_speedup_table():
    ls = rp.lstm_speedups(rp.settings(True))
    assert ls["params"] == rp.lstm_params(1000, 512, 1024, 2)
    for name, row in ls["networks"].items():
        s = [r["speedup"] for r in row["sensitivity"]]
        assert all(a >= b for a, b in zip(s, s[1:]))   # more compute, less speedup
        assert s[0] == pytest.approx(row["dense_s"] / row["sparse_s"])
        assert row["speedup"] > 1
