"""The network and time model: alpha-beta pricing of traces, presets, the compute-time model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist import network
from simdist.collectives.trace import Trace
from simdist.network import AlphaBeta, ComputeModel, compute, nbytes_of, presets

A, B, G = 1e-6, 1e-9, 1e-10


def _net(gamma=G):
    return AlphaBeta(alpha=A, beta=B, gamma=gamma)


# -- pricing hand-built traces ---------------------------------------------------------------------


def test_empty_trace_costs_nothing():
    t = Trace(4)
    assert _net().price(t) == 0.0
    assert _net().price_rounds(t).shape == (0,)


def test_one_message():
    t = Trace(2)
    t.add_message(0, 0, 1, 8000)  # 1000 bytes
    assert _net().price(t) == pytest.approx(A + 1000 * B, rel=1e-15)


def test_bits_round_up_to_bytes():
    t = Trace(2)
    t.add_message(0, 0, 1, 9)  # 9 bits travel as 2 bytes
    assert _net().price(t) == pytest.approx(A + 2 * B, rel=1e-15)
    t0 = Trace(2)
    t0.add_message(0, 0, 1, 0)  # an empty message still pays its latency
    assert _net().price(t0) == pytest.approx(A, rel=1e-15)


def test_round_lasts_as_long_as_slowest_rank():
    t = Trace(3)
    t.add_message(0, 0, 1, 8 * 100)
    t.add_message(0, 1, 2, 8 * 500)
    t.add_message(0, 2, 0, 8 * 300)
    assert _net().price(t) == pytest.approx(A + 500 * B, rel=1e-15)


def test_receiving_is_free_full_duplex():
    # rank 0 receives from three ranks in one round: it pays nothing for receiving
    t = Trace(4)
    for src in (1, 2, 3):
        t.add_message(0, src, 0, 8 * 1000)
    assert _net().price(t) == pytest.approx(A + 1000 * B, rel=1e-15)


def test_several_messages_from_one_rank_add_up():
    t = Trace(4)
    for dst in (1, 2, 3):
        t.add_message(0, 0, dst, 8 * 1000)
    t.add_message(0, 1, 2, 8 * 2000)
    # rank 0: 3 (A + 1000 B) = 3e-6 + 3e-6; rank 1: A + 2000 B = 3e-6
    assert _net().price(t) == pytest.approx(3 * (A + 1000 * B), rel=1e-15)


def test_two_rounds_sum_their_maxima():
    t = Trace(2)
    t.add_message(0, 0, 1, 8 * 10)
    t.add_message(0, 1, 0, 8 * 40)
    t.add_message(1, 0, 1, 8 * 70)
    t.add_message(1, 1, 0, 8 * 20)
    net = _net()
    np.testing.assert_allclose(net.price_rounds(t), [A + 40 * B, A + 70 * B], rtol=1e-15)
    assert net.price(t) == pytest.approx(2 * A + 110 * B, rel=1e-15)


def test_reductions_add_gamma_to_their_rank_and_round():
    t = Trace(2)
    t.add_message(0, 0, 1, 8 * 1000)
    t.add_reduction(0, 1, 1000)  # rank 1 reduces what it receives: in parallel with rank 0's send
    net = AlphaBeta(alpha=0.0, beta=1.0, gamma=3.0)
    assert net.price(t) == pytest.approx(3000.0)  # max(1000 beta, 1000 gamma)
    t.add_reduction(0, 0, 500)  # now rank 0: 1000 + 1500
    assert net.rank_round_times(t).tolist() == [[2500.0, 3000.0]]
    assert net.price(t) == pytest.approx(3000.0)


def test_round_with_only_a_reduction():
    t = Trace(2)
    t.add_message(0, 0, 1, 8 * 4)
    t.add_reduction(1, 1, 4)
    net = AlphaBeta(alpha=1.0, beta=0.5, gamma=0.25)
    np.testing.assert_allclose(net.price_rounds(t), [1.0 + 2.0, 1.0])


def test_gamma_zero_ignores_reductions():
    t = Trace(2)
    t.add_reduction(0, 0, 10**9)
    assert AlphaBeta(alpha=1.0, beta=1.0, gamma=0.0).price(t) == 0.0


def test_idle_round_between_rounds_costs_nothing():
    t = Trace(2)
    t.add_message(0, 0, 1, 8)
    t.add_message(2, 1, 0, 8)
    net = AlphaBeta(alpha=1.0, beta=0.0)
    np.testing.assert_array_equal(net.price_rounds(t), [1.0, 0.0, 1.0])


def _price_loop(net, t):
    """Obviously-correct pricing with Python loops (the oracle for the vectorised one)."""
    rounds = {}
    for rnd, src, _dst, nbits in t.messages().tolist():
        rounds.setdefault(rnd, {}).setdefault(src, 0.0)
        rounds[rnd][src] += net.alpha + net.beta * math.ceil(nbits / 8)
    for rnd, rank, nbytes in t.reductions().tolist():
        rounds.setdefault(rnd, {}).setdefault(rank, 0.0)
        rounds[rnd][rank] += net.gamma * nbytes
    return sum(max(v.values()) for v in rounds.values())


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(2, 6),
    events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 10**6)),
                    max_size=40),
    reds=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 10**6)), max_size=10),
    params=st.tuples(*[st.floats(0, 1e-3, allow_nan=False)] * 3),
)
def test_vectorised_price_equals_loop(size, events, reds, params):
    t = Trace(size)
    for rnd, s, d, nbits in events:
        s, d = s % size, d % size
        if s != d:
            t.add_message(rnd, s, d, nbits)
    for rnd, rank, nbytes in reds:
        t.add_reduction(rnd, rank % size, nbytes)
    net = AlphaBeta(*params)
    assert net.price(t) == pytest.approx(_price_loop(net, t), rel=1e-12, abs=1e-300)
    assert len(net.price_rounds(t)) == t.nrounds


def test_price_of_a_large_trace_is_fast_enough():
    # ring allgather shape at P = 256: 255 rounds x 256 messages, priced without Python loops
    P = 256
    rnd = np.repeat(np.arange(P - 1), P)
    src = np.tile(np.arange(P), P - 1)

    class _Arr:  # a trace given as arrays (duck-typed: size, messages(), reductions())
        size = P

        @staticmethod
        def messages():
            return np.stack([rnd, src, (src + 1) % P, np.full_like(src, 8 * 4096)], axis=1)

        @staticmethod
        def reductions():
            return np.zeros((0, 3), np.int64)

    assert _net().price(_Arr) == pytest.approx((P - 1) * (A + 4096 * B), rel=1e-12)


# -- AlphaBeta parameters ----------------------------------------------------------------------------


def test_message_time_and_bandwidth():
    net = AlphaBeta(alpha=2.0, beta=0.5, gamma=0.0)
    assert net.message_time(10) == 7.0
    np.testing.assert_array_equal(net.message_time(np.array([0, 2])), [2.0, 3.0])
    assert net.bandwidth == 2.0
    assert AlphaBeta(1.0, 0.0).bandwidth == math.inf
    with pytest.raises(ValueError, match="nbytes"):
        net.message_time(-1)


def test_nbytes_of():
    assert [nbytes_of(b) for b in (0, 1, 7, 8, 9, 16, 17)] == [0, 1, 1, 1, 2, 2, 3]
    np.testing.assert_array_equal(nbytes_of(np.array([0, 1, 8, 9])), [0, 1, 1, 2])


@pytest.mark.parametrize("field", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("bad", [-1e-9, math.inf, math.nan])
def test_bad_parameters_name_the_parameter(field, bad):
    kw = {"alpha": 1e-6, "beta": 1e-9, "gamma": 0.0, field: bad}
    with pytest.raises(ValueError, match=field):
        AlphaBeta(**kw)


def test_bad_parameter_types():
    with pytest.raises(TypeError, match="alpha"):
        AlphaBeta(alpha="fast", beta=1e-9)
    with pytest.raises(TypeError, match="name"):
        AlphaBeta(1e-6, 1e-9, 0.0, name=3)


def test_config_round_trip_through_json():
    net = AlphaBeta(alpha=1.5e-6, beta=1 / 12.5e9, gamma=2e-10, name="mine")
    cfg = json.loads(json.dumps(net.get_config()))
    assert AlphaBeta.from_config(cfg) == net
    assert network.make(cfg) == net
    with pytest.raises(ValueError, match="latency"):
        AlphaBeta.from_config({**cfg, "latency": 1.0})


def test_frozen():
    net = _net()
    with pytest.raises(Exception):
        net.alpha = 2.0


# -- presets -----------------------------------------------------------------------------------------

REQUIRED = ["10gbe", "25gbe", "100gbe", "ib-edr", "ib-hdr", "aries", "nvlink", "ec2-10g"]


def test_required_presets_exist():
    assert set(REQUIRED) <= set(presets.available())
    assert network.available() == presets.available()


@pytest.mark.parametrize("name", REQUIRED + ["nvlink3"])
def test_presets_validate_round_trip_and_document_their_source(name):
    net = presets.make(name)
    assert net.name == name
    assert net.alpha > 0 and net.beta > 0 and net.gamma == presets.CPU_REDUCE_GAMMA
    assert AlphaBeta(**net.get_config()) == net
    assert network.make(json.loads(json.dumps(net.get_config()))) == net
    assert network.make(name) == net == network.make({"name": name})
    assert len(presets.describe(name)) > 20
    assert name in presets.__doc__


@pytest.mark.parametrize("name, gbit", [("10gbe", 10), ("25gbe", 25), ("100gbe", 100), ("ib-edr", 100),
                                        ("ib-hdr", 200), ("ec2-10g", 10)])
def test_preset_beta_is_the_line_rate(name, gbit):
    assert presets.make(name).beta == pytest.approx(8 / (gbit * 1e9), rel=1e-12)


def test_preset_sanity_ordering():
    m = presets.make
    assert m("ec2-10g").alpha > m("10gbe").alpha > m("ib-edr").alpha > m("ib-hdr").alpha
    assert m("10gbe").beta > m("25gbe").beta > m("100gbe").beta > m("ib-hdr").beta > m("nvlink").beta
    assert m("aries").beta == pytest.approx(1e-10)
    assert presets.CPU_REDUCE_GAMMA == pytest.approx(1 / 5e9)


def test_preset_overrides():
    assert presets.make("aries", gamma=0.0).gamma == 0.0
    assert presets.make("aries", gamma=0.0).alpha == presets.make("aries").alpha
    assert network.make({"name": "10gbe", "alpha": 1e-3}).alpha == 1e-3
    assert network.make("10gbe", beta=1e-9).beta == 1e-9
    with pytest.raises(ValueError, match="latency"):
        presets.make("aries", latency=1.0)
    with pytest.raises(ValueError, match="gamma"):
        presets.make("aries", gamma=-1.0)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown network preset 'infiniband'.*10gbe.*aries"):
        presets.make("infiniband")
    with pytest.raises(ValueError, match="unknown network preset"):
        network.make({"name": "nope"})
    with pytest.raises(TypeError, match="network"):
        network.make(3.0)
    with pytest.raises(ValueError, match="alpha"):
        network.make({"beta": 1.0})


def test_duplicate_preset_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        presets.register(AlphaBeta(1.0, 1.0, name="10gbe"))
    with pytest.raises(ValueError, match="non-empty name"):
        presets.register(AlphaBeta(1.0, 1.0))
    with pytest.raises(TypeError):
        presets.register({"name": "x", "alpha": 1.0, "beta": 1.0})


# -- compute model -----------------------------------------------------------------------------------


def test_time_based_step():
    m = ComputeModel(seconds_per_sample=1e-3, seconds_per_step=5e-3)
    assert m.step_time(0) == 5e-3
    assert m.step_time(10) == pytest.approx(15e-3)


def test_flop_based_step():
    m = ComputeModel(flops_per_sample=2e6, flops_per_second=1e9, seconds_per_step=1e-4)
    assert m.step_time(8) == pytest.approx(1e-4 + 8 * 2e-3)
    # per-call FLOPs override the model's own
    assert m.step_time(8, flops_per_sample=1e6) == pytest.approx(1e-4 + 8 * 1e-3)
    device = ComputeModel(flops_per_second=1e9)
    with pytest.raises(ValueError, match="flops_per_sample"):
        device.step_time(4)
    assert device.step_time(4, flops_per_sample=1e9) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="FLOP-based"):
        ComputeModel(seconds_per_sample=1.0).step_time(1, flops_per_sample=1.0)


@pytest.mark.parametrize("kw, field", [
    ({"seconds_per_sample": -1.0}, "seconds_per_sample"),
    ({"seconds_per_sample": 1.0, "seconds_per_step": math.nan}, "seconds_per_step"),
    ({"flops_per_second": 0.0}, "flops_per_second"),
    ({"flops_per_second": 1e9, "flops_per_sample": -5.0}, "flops_per_sample"),
    ({"flops_per_sample": 5.0}, "flops_per_second"),
    ({}, "seconds_per_sample"),
    ({"seconds_per_sample": 1.0, "flops_per_second": 1e9}, "not both"),
])
def test_compute_bad_parameters(kw, field):
    with pytest.raises(ValueError, match=field):
        ComputeModel(**kw)


def test_compute_bad_batch():
    m = ComputeModel(seconds_per_sample=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        m.step_time(-1)
    with pytest.raises(TypeError, match="batch_size"):
        m.step_time(1.5)


@pytest.mark.parametrize("name", ["zero", "cpu-core", "v100", "a100"])
def test_compute_presets(name):
    m = compute.make(name)
    assert m.name == name
    assert ComputeModel.from_config(json.loads(json.dumps(m.get_config()))) == m
    assert compute.make(m.get_config()) == m
    assert name in compute.__doc__
    t = m.step_time(16, flops_per_sample=1e6) if m.flops_per_second else m.step_time(16)
    assert t >= 0.0


def test_compute_preset_values():
    assert compute.make("zero").step_time(1000) == 0.0
    assert compute.make("cpu-core", flops_per_sample=3e6).step_time(10) == pytest.approx(1e-3)
    assert compute.make({"name": "v100", "flops_per_sample": 7.85e6}).step_time(1000) == pytest.approx(1e-5 + 1e-3)
    assert network.make_compute("a100").flops_per_second == pytest.approx(9.75e12)
    assert compute.make(ComputeModel(seconds_per_sample=1.0), seconds_per_step=2.0).step_time(1) == 3.0


def test_compute_registry_errors():
    with pytest.raises(ValueError, match="unknown compute preset 'tpu'.*cpu-core"):
        compute.make("tpu")
    with pytest.raises(ValueError, match="already registered"):
        compute.register(ComputeModel(seconds_per_sample=0.0, name="zero"))
    with pytest.raises(ValueError, match="unknown compute-model parameter"):
        compute.make("v100", speed=1.0)
    with pytest.raises(ValueError, match="unknown compute-model parameter"):
        ComputeModel.from_config({"seconds_per_sample": 1.0, "speed": 2})
    with pytest.raises(TypeError, match="compute"):
        compute.make(3)


def test_step_time_plus_priced_trace():
    # the simulated time of a step = compute + the collective's price
    t = Trace(2)
    t.add_message(0, 0, 1, 8 * 1250)
    t.add_message(0, 1, 0, 8 * 1250)
    net = presets.make("10gbe")
    comp = ComputeModel(seconds_per_sample=1e-4)
    total = comp.step_time(10) + net.price(t)
    assert total == pytest.approx(1e-3 + 20e-6 + 1e-6, rel=1e-12)
