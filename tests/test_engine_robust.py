"""Byzantine nodes and robust aggregation in the simulator (TrainConfig.aggregator / byzantine / attack):
one step against an independent computation, the mean rule against the engine's own mean, the
separation the rules exist for, and the refusals."""

import numpy as np
import pytest

from simdist import compressors, problems
from simdist.engine.comm import _sampling_rng
from simdist.engine.config import TrainConfig
from simdist.engine.loop import train
from simdist.problems.partition import sample_minibatch
from simdist.rng import attack_rng, node_step_rng

KEYS = ("loss", "grad_norm", "bits", "wire_bits", "sim_time")


def _first_step(prob, P, B, seed):
    parts = prob.partition(P, "iid", seed)
    return prob.grads(prob.x0, sample_minibatch(parts, B, _sampling_rng(seed, 0)))


def _agg_of_step0(prob, comp, **kw):
    seen = []
    h = train(prob, comp, steps=1, callback=lambda t, x, agg: seen.append(np.array(agg)), **kw)
    return seen[0], h


@pytest.mark.parametrize("rule,ref", [
    ("median", lambda V: np.median(V, axis=0)),
    ({"name": "trimmed_mean", "beta": 0.2}, lambda V: np.sort(V, axis=0)[2:-2].mean(axis=0)),
    ({"name": "krum", "f": 2}, None),
])
def test_full_precision_step_is_the_rule_on_the_fp32_rows(rule, ref):
    prob = problems.make("least_squares", d=7, n=80)
    P, B, seed, f = 10, 3, 4, 2
    G = _first_step(prob, P, B, seed)
    G[P - f:] = -3.0 * G[: P - f].mean(axis=0)  # sign_flip(scale=3)
    V = G.astype(np.float32).astype(np.float64)  # what the wire carries
    if ref is None:
        from tests.test_robust import _krum_reference

        want = _krum_reference(V, 2, 1)[0]
    else:
        want = ref(V)
    got, h = _agg_of_step0(prob, None, nodes=P, batch_size=B, seed=seed, aggregator=rule, byzantine=f,
                           attack={"name": "sign_flip", "scale": 3.0})
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert h.bits[0] == 32 * 7 and h.wire_bits[0] == 32 * 7 * (P - 1)  # every node receives every row


@pytest.mark.parametrize("comp,ef", [({"name": "qsgd", "s": 4}, True), ({"name": "topk", "k": 2}, True),
                                     ({"name": "sign"}, False)])
def test_compressed_step_is_the_rule_on_the_decoded_payloads(comp, ef):
    prob = problems.make("logistic", d=9, n=90)
    P, B, seed, f = 9, 2, 1, 2
    G = _first_step(prob, P, B, seed)
    atk = {"name": "gaussian", "sigma": 5.0}
    G[P - f:] = attack_rng(seed, 0).normal(0.0, 5.0, (f, G.shape[1]))
    c = compressors.make(comp)
    rngs = [node_step_rng(seed, i, 0) if c.needs_rng else None for i in range(P)]
    C = np.stack([c.decompress(c.compress(G[i], rngs[i])) for i in range(P)]).astype(np.float64)
    got, h = _agg_of_step0(prob, comp, nodes=P, batch_size=B, seed=seed, aggregator="median", byzantine=f,
                           attack=atk, error_feedback=ef)
    np.testing.assert_array_equal(got, np.median(C, axis=0))
    nbits = [c.compress(G[i], node_step_rng(seed, i, 0) if c.needs_rng else None).nbits for i in range(P)]
    assert h.bits[0] == np.mean(nbits)


@pytest.mark.parametrize("comp,ef", [({"name": "qsgd", "s": 4}, True), ({"name": "topk", "k": 3}, True),
                                     ({"name": "terngrad"}, False)])
def test_the_mean_rule_is_the_engines_mean_bit_for_bit(comp, ef):
    kw = dict(nodes=5, steps=15, lr=0.1, batch_size=2, seed=2, error_feedback=ef)
    a = train("least_squares", comp, **kw)
    b = train("least_squares", comp, aggregator="mean", **kw)
    for k in KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert b.config["aggregator"] == {"name": "mean"}


def test_byzantine_nodes_break_the_mean_and_not_the_robust_rules():
    """mean_estimation, P = 12 with f = 3 sign-flippers of scale 4: the mean aggregate is
    (9 g - 12 g)/12 = -g/4, an ascent direction, so f(x_t) grows; every robust rule descends.
    The separation is by direction, not by a tuned threshold: the mean ends above f(x0), each robust
    rule closer to f* than to f(x0) (SGD's own noise floor here is about 2% of the gap)."""
    prob = problems.make("mean_estimation", d=10, n=240)
    f0, fstar = prob.loss(prob.x0), prob.constants()["f_star"]
    kw = dict(nodes=12, steps=150, lr=0.2, batch_size=4, seed=0, byzantine=3,
              attack={"name": "sign_flip", "scale": 4.0})
    assert train(prob, None, **kw).loss[-1] > f0
    for rule in ("median", {"name": "trimmed_mean", "beta": 0.25}, {"name": "krum", "f": 3}, "geometric_median"):
        for comp in (None, {"name": "qsgd", "s": 8}):
            h = train(prob, comp, aggregator=rule, **kw)
            assert h.stop_reason is None and h.loss[-1] - fstar < 0.5 * (f0 - fstar), (rule, comp)


def test_same_seed_same_run_and_the_attack_stream_is_its_own():
    kw = dict(nodes=6, steps=10, lr=0.1, seed=3, aggregator="median", byzantine=1,
              attack={"name": "gaussian", "sigma": 2.0})
    a, b = train("logistic", "qsgd", **kw), train("logistic", "qsgd", **kw)
    for k in KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    # the forged rows come from attack_rng(seed, t): another sigma changes them (seen through the mean)
    m2, m3 = (train("logistic", "qsgd", **{**kw, "aggregator": "mean", "attack": {"name": "gaussian", "sigma": s}})
              for s in (2.0, 3.0))
    assert not np.array_equal(m2.loss, m3.loss)


def test_config_round_trip_and_refusals():
    cfg = TrainConfig(problem="least_squares", nodes=7, aggregator={"name": "krum", "f": 2}, byzantine=2,
                      attack="alie", staleness=3, delays="fixed")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and cfg.attack == {"name": "alie"}
    with pytest.raises(ValueError, match="byzantine > 0 needs an attack"):
        TrainConfig(problem="least_squares", byzantine=1)
    with pytest.raises(ValueError, match="byzantine > 0 needs an attack"):
        TrainConfig(problem="least_squares", attack="alie")
    with pytest.raises(ValueError, match=r"byzantine must be in \[0, 3\]"):
        TrainConfig(problem="least_squares", nodes=4, byzantine=4, attack="alie")
    with pytest.raises(ValueError, match="collective must be 'auto' or 'allgather'"):
        train("least_squares", nodes=4, steps=1, aggregator="median", collective="ring")
    with pytest.raises(ValueError, match="collective must be 'auto' or 'allgather'"):
        train("least_squares", {"name": "topk", "k": 2}, nodes=4, steps=1, aggregator="median",
              collective="sparse_dynamic")
    with pytest.raises(ValueError, match=r"krum with f=1 needs more than 2f \+ 2 = 4 nodes, got nodes=4"):
        train("least_squares", nodes=4, steps=1, aggregator="krum")
    with pytest.raises(ValueError, match="unknown aggregator"):
        train("least_squares", nodes=4, steps=1, aggregator="mode")
    with pytest.raises(ValueError, match="unknown attack"):
        train("least_squares", nodes=4, steps=1, byzantine=1, attack="label_flip")
    with pytest.raises(ValueError, match="fewer attackers than the majority"):
        train("least_squares", nodes=4, steps=1, byzantine=3, attack="alie")


def test_a_forged_row_beyond_float32_stops_the_run():
    kw = dict(nodes=4, steps=5, seed=0, byzantine=1, attack={"name": "sign_flip", "scale": 1e300})
    h = train("least_squares", None, aggregator="median", **kw)
    assert h.stopped_at == 0 and "float32 range" in h.stop_reason
    h = train("least_squares", "qsgd", aggregator="median", **kw)
    assert h.stopped_at == 0 and "diverged" in h.stop_reason
