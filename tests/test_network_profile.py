"""Cost profiles (simdist.network.profile): the price of a trace on any alpha-beta-gamma network
from the ranks' Pareto-maximal (messages, bytes, reduced bytes) per round, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist.collectives.fastpath import allgather_bits, allreduce_trace
from simdist.collectives.trace import Trace
from simdist.network import AlphaBeta
from simdist.network import make as make_network
from simdist.network.profile import check_profile, cost_profile, price_profile, rank_round_totals


@st.composite
def traces(draw):
    P = draw(st.integers(2, 7))
    t = Trace(P)
    for _ in range(draw(st.integers(0, 25))):
        src = draw(st.integers(0, P - 1))
        dst = (src + draw(st.integers(1, P - 1))) % P
        t.add_message(draw(st.integers(0, 4)), src, dst, draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(0, 6))):
        t.add_reduction(draw(st.integers(0, 4)), draw(st.integers(0, P - 1)), draw(st.integers(0, 10**5)))
    return t


nets = st.builds(AlphaBeta, alpha=st.floats(0, 1e-4), beta=st.floats(0, 1e-8), gamma=st.floats(0, 1e-9))


@settings(max_examples=200, deadline=None)
@given(traces(), nets)
def test_profile_price_equals_the_trace_price_bit_for_bit(trace, net):
    prof = cost_profile(trace)
    assert price_profile(prof, net) == net.price(trace) == float(net.price_rounds(trace).sum())


@settings(max_examples=200, deadline=None)
@given(traces(), st.lists(nets, min_size=1, max_size=5))
def test_profile_rows_are_the_pareto_maximal_rank_totals(trace, ns):
    tot = rank_round_totals(trace)
    prof = cost_profile(trace)
    assert np.array_equal(np.unique(prof[:, 0]), np.arange(tot.shape[0]))  # every round, in order
    for r in range(tot.shape[0]):
        rows = prof[prof[:, 0] == r, 1:]
        ranks = {tuple(x) for x in tot[r]}
        assert {tuple(x) for x in rows} <= ranks  # rows are some ranks' totals
        for a in rows:  # none dominated by a rank, none dominated by another row
            assert not any(all(np.array(b) >= a) and tuple(b) != tuple(a) for b in ranks)
        for net in ns:  # so the slowest rank's cost is a row's cost, whatever the network
            assert net._cost(rows).max() == net._cost(tot[r]).max()


def test_symmetric_collectives_have_one_row_per_round():
    for name in ("ring", "recursive_doubling", "rabenseifner"):
        tr = allreduce_trace(name, 8, 1000, 4)
        prof = cost_profile(tr)
        assert prof.shape[0] == tr.nrounds and np.array_equal(prof[:, 0], np.arange(tr.nrounds))
    # allgather of unequal payloads: several maximal ranks in some rounds, still priced exactly
    tr = allgather_bits(np.array([10, 4000, 20, 30, 50000]), "allgather")
    net = make_network("10gbe")
    assert price_profile(cost_profile(tr), net) == net.price(tr)


def test_check_profile_refuses_malformed_rows():
    assert check_profile([]).shape == (0, 4)
    assert check_profile([[0, 1, 2, 3], [1, 1, 2, 0]]).tolist() == [[0, 1, 2, 3], [1, 1, 2, 0]]
    for bad in ([[0, 1, -2, 0]], [[1, 1, 2, 0], [0, 1, 2, 0]]):
        with pytest.raises(ValueError, match="profile"):
            check_profile(bad)
    with pytest.raises(ValueError):
        check_profile([[0, 1, 2]])
    assert price_profile([], make_network("aries")) == 0.0
