"""Monte-Carlo verifiers and check_compressor on toy compressors whose statistics are known exactly.

The honest toy (stochastic rounding to a grid of step h) must PASS every statement; the biased, the
too-noisy and the deterministic-but-claims-unbiased toys must FAIL: a checker that cannot fail is
worthless. Each verdict has false-alarm probability <= 1 - confidence; seeds are fixed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from analysis.checks import check_compressor, make_vector
from analysis.montecarlo import Verdict, sample_compressor, verdict_mean, verdict_unbiased
from simdist.compressors.base import Compressor
from simdist.compressors.identity import raw_float_decode
from simdist.rng import batch_uniform_bits

H = 0.125  # grid step (a power of 2, so grid values are exact in float32)


@dataclass(frozen=True)
class GridRounding(Compressor):
    """Unbiased stochastic rounding of each entry to the grid h Z (sent as raw float32).

    up_factor scales the round-up probability (1 = unbiased); extra_noise adds +-h with probability
    1/2 each to every entry (unbiased, but variance + d h^2).
    """

    up_factor: float = 1.0
    extra_noise: bool = False
    name = "toy_grid"
    unbiased = True
    needs_rng = True

    def _encode_batch(self, X, rng):
        n, d = X.shape
        w = batch_uniform_bits(rng, n, 2 * d).astype(np.float64) * 2.0**-32
        f = np.floor(X / H)
        p = np.minimum(1.0, self.up_factor * (X / H - f))
        Y = H * (f + (w[:, :d] < p))
        if self.extra_noise:
            Y = Y + H * np.where(w[:, d:] < 0.5, 1.0, -1.0)
        buffer = np.ascontiguousarray(Y, dtype="<f4").view(np.uint8).reshape(-1).copy()
        return buffer, np.arange(n + 1, dtype=np.int64) * 4 * d, np.full(n, 32 * d, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys):
        return raw_float_decode(self.name, buffer, offsets, d, dtype, "<f4")

    # The honest statements (those of up_factor = 1, extra_noise = False).
    def exact_variance(self, x):
        p = x / H - np.floor(x / H)
        return float(H * H * np.sum(p * (1 - p)))

    def variance_bound(self, x):
        return H * H * x.size / 4.0  # p (1 - p) <= 1/4

    def expected_nnz(self, x):
        f = np.floor(x.astype(np.float64) / H)
        p = x / H - f
        return float(np.sum(np.where(f == 0, p, np.where(f == -1, 1 - p, 1.0))))

    def bits_bound(self, x):
        return 32.0 * x.size


@dataclass(frozen=True)
class Truncate(Compressor):
    """Deterministic: zero the entries with |x_i| below the median, and (wrongly) claim unbiased."""

    name = "toy_truncate"
    unbiased = True

    def _encode_batch(self, X, rng):
        n, d = X.shape
        Y = np.where(np.abs(X) >= np.median(np.abs(X), axis=1, keepdims=True), X, 0)
        buffer = np.ascontiguousarray(Y, dtype="<f4").view(np.uint8).reshape(-1).copy()
        return buffer, np.arange(n + 1, dtype=np.int64) * 4 * d, np.full(n, 32 * d, np.int64), None

    def _decode_batch(self, buffer, offsets, d, dtype, keys):
        return raw_float_decode(self.name, buffer, offsets, d, dtype, "<f4")

    def exact_variance(self, x):
        x = x.astype(np.float64)
        return float(np.sum(np.where(np.abs(x) >= np.median(np.abs(x)), 0.0, x * x)))

    def delta(self, x):
        return 0.5 * (1 - 1e-3)  # holds: at most half the energy lies below the median


def _by_kind(verdicts):
    return {v.kind if v.kind != "bound" else f"bound:{v.statement}": v for v in verdicts}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_honest_toy_passes_every_statement(dtype):
    x = make_vector("gaussian", 300, seed=3, dtype=dtype)
    verdicts = check_compressor(GridRounding(), x, trials=3000, seed=11, confidence=0.99)
    kinds = [v.kind for v in verdicts]
    # unbiased, exact variance, variance bound, expected nnz, bits bound, bits info
    assert kinds == ["unbiased", "identity", "bound", "identity", "bound", "info"]
    assert [v.key for v in verdicts] == ["unbiased", "exact_variance", "variance_bound", "expected_nnz", "bits_bound",
                                         "bits_vs_fp32"]  # stable keys for programs
    assert all(v.to_dict()["key"] == v.key for v in verdicts)
    assert all(v.passed for v in verdicts), [v.to_dict() for v in verdicts]
    ev = verdicts[1]
    assert ev.ci_low < ev.reference < ev.ci_high
    assert ev.trials == 3000
    # the measured variance is close to the exact one (5 standard errors is a loose sanity band)
    se = (ev.ci_high - ev.ci_low) / (2 * stats.t.ppf(0.995, 2999))
    assert abs(ev.measured - ev.reference) < 5 * se
    info = verdicts[-1]
    assert info.measured == 32 * 300 and "compression ratio 32 d / E nbits = 1" in info.detail


def test_biased_toy_fails_unbiasedness_and_exact_variance():
    # up_factor 1.3: bias h * 0.3 p_i per entry (E p = 1/2), about 0.019 per entry over 300 entries;
    # along x/||x|| the mean deviation is ~ 0.3 h E[p |x|]/E[x^2]^0.5 * sqrt(d) ~ 0.2, its standard
    # error ~ h/2/sqrt(3000) ~ 0.0011: t ~ 100 >> critical 3.5, so the test fails with certainty.
    x = make_vector("gaussian", 300, seed=3)
    verdicts = check_compressor(GridRounding(up_factor=1.3), x, trials=3000, seed=11)
    by = _by_kind(verdicts)
    assert not by["unbiased"].passed and by["unbiased"].measured > 1
    assert not by["identity"].passed


def test_too_noisy_toy_fails_the_variance_statements():
    # Variance h^2 (sum p(1-p) + d) > h^2 d/4 (the claimed bound) by ~ 0.9 d h^2: far beyond the CI.
    x = make_vector("uniform", 300, seed=5)
    verdicts = check_compressor(GridRounding(extra_noise=True), x, trials=2000, seed=2)
    by = {v.statement: v for v in verdicts}
    assert by["E[C(x)] = x"].passed  # it is unbiased: the unbiasedness check must not flag it
    assert not by["E||C(x)-x||^2 = exact value"].passed
    assert not by["E||C(x)-x||^2 <= bound"].passed
    assert by["E||C(x)-x||^2 <= bound"].ci_low > by["E||C(x)-x||^2 <= bound"].reference


def test_deterministic_compressor_is_decided_exactly():
    x = make_vector("powerlaw", 64, seed=1, dtype=np.float64)
    verdicts = check_compressor(Truncate(), x, trials=5, seed=0)
    by = {v.kind: v for v in verdicts}
    assert not by["unbiased"].passed  # zeroing entries is a deterministic bias
    ident = by["identity"]
    assert ident.passed and ident.ci_low == ident.ci_high == ident.measured  # no CI: exact
    assert "every trial equal" in ident.detail
    assert by["bound"].passed and "delta" in by["bound"].detail


def test_wrong_bits_bound_fails():
    @dataclass(frozen=True)
    class Liar(GridRounding):
        def bits_bound(self, x):
            return 31.0 * x.size

    x = make_vector("uniform", 50, seed=0)
    v = [v for v in check_compressor(Liar(), x, trials=20, seed=0) if v.statement == "E nbits <= bound"][0]
    assert not v.passed and v.measured == 32 * 50


def test_verdict_mean_rules():
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 1.0, 2000)  # se ~ 0.022, one-sided 0.99 margin ~ 0.052
    assert verdict_mean(y, 1.0, kind="identity", statement="s", source="t").passed
    assert not verdict_mean(y, 1.2, kind="identity", statement="s", source="t").passed
    assert verdict_mean(y, 1.0, kind="bound", statement="s", source="t").passed
    assert not verdict_mean(y, 0.8, kind="bound", statement="s", source="t").passed
    # a bound slightly below the mean is not a shown violation (lower limit ~ mean - 0.052)
    m = float(y.mean())
    assert verdict_mean(y, m - 0.02, kind="bound", statement="s", source="t").passed
    v = verdict_mean(np.full(10, 3.0), 3.0, kind="identity", statement="s", source="t")
    assert v.passed and v.ci_low == v.ci_high == 3.0
    assert not verdict_mean(np.full(10, 3.0), 3.1, kind="identity", statement="s", source="t").passed
    with pytest.raises(ValueError, match="kind must be"):
        verdict_mean(y, 1.0, kind="maybe", statement="s", source="t")
    with pytest.raises(ValueError, match="confidence must be in"):
        verdict_mean(y, 1.0, kind="bound", statement="s", source="t", confidence=1.0)


def test_verdict_mean_false_alarm_rate_matches_confidence():
    # 2000 replications of an identity check on N(0,1) samples of size 30 at confidence 0.9: the
    # number of false alarms is Binomial(2000, 0.1) (mean 200, sd 13.4) if the t-interval is exact;
    # accept within 4 sd (false-alarm probability of this test ~ 6e-5).
    rng = np.random.default_rng(123)
    fails = sum(
        not verdict_mean(rng.standard_normal(30), 0.0, kind="identity", statement="s", source="t", confidence=0.9).passed
        for _ in range(2000)
    )
    assert abs(fails - 200) < 4 * math.sqrt(2000 * 0.1 * 0.9)


def test_unbiasedness_false_alarm_rate_is_at_most_alpha():
    # 60 independent honest runs at confidence 0.8: false alarms ~ Binomial(60, q) with q <= 0.2
    # (Bonferroni is conservative). P(Binomial(60, 0.2) >= 22) ~ 1.4e-3.
    x = make_vector("gaussian", 40, seed=9)
    c = GridRounding()
    fails = sum(not verdict_unbiased(sample_compressor(c, x, 300, seed), confidence=0.8).passed for seed in range(60))
    assert fails < 22


def test_rare_events_do_not_raise_false_alarms():
    # Entries just above grid points round up with probability ~1e-3: most coordinates see no event
    # in 500 trials (all-equal samples). A plain z-score would flag them; the Bernstein radius must not.
    x = (H * (np.arange(200) % 7 - 3) + H * 1e-3).astype(np.float64)
    s = sample_compressor(GridRounding(), x, 500, 4)
    assert np.count_nonzero(s.coord_var == 0) > 50  # the scenario: many all-equal coordinates
    assert np.all(s.coord_mean[s.coord_var == 0] != 0)  # ... whose mean error is not 0
    v = verdict_unbiased(s, confidence=0.99)
    assert v.passed, v.detail


def test_sampling_is_deterministic_and_chunked(monkeypatch):
    import analysis.montecarlo as mc

    x = make_vector("uniform", 30, seed=2)
    a = sample_compressor(GridRounding(), x, 50, 7)
    monkeypatch.setattr(mc, "CHUNK_ELEMENTS", 70)  # two rows per chunk
    b = sample_compressor(GridRounding(), x, 50, 7)
    np.testing.assert_array_equal(a.nbits, b.nbits)
    np.testing.assert_allclose(a.coord_mean, b.coord_mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.coord_var, b.coord_var, rtol=1e-9, atol=1e-15)
    # merged streaming statistics equal the direct ones
    c = GridRounding()
    rng = np.random.default_rng(7)
    E = c.decompress_batch(c.compress_batch(np.tile(x, (50, 1)), rng)).astype(np.float64) - x
    np.testing.assert_allclose(b.coord_var, E.var(axis=0, ddof=1), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(b.sq_error, np.sum(E * E, axis=1), rtol=1e-12)


def test_verdict_to_dict_is_strict_json():
    v = Verdict("s", "src", "info", 1.0, None, float("inf"), 0.99, None, True, 3, "d")
    d = v.to_dict()
    assert d["ci_high"] is None and json.loads(json.dumps(d, allow_nan=False)) == d


def test_make_vector_kinds_and_validation():
    for kind in ("gaussian", "uniform", "sparse", "powerlaw"):
        x = make_vector(kind, 50, seed=4)
        assert x.shape == (50,) and x.dtype == np.float32 and np.all(np.isfinite(x))
        np.testing.assert_array_equal(x, make_vector(kind, 50, seed=4))
    assert np.count_nonzero(make_vector("sparse", 50, seed=4)) == 5
    assert sorted(np.abs(make_vector("powerlaw", 4, seed=0, dtype=np.float64))) == [0.25, 1 / 3, 0.5, 1.0]
    with pytest.raises(ValueError, match="kind must be one of"):
        make_vector("cauchy", 5)
    with pytest.raises(ValueError, match="d must be in"):
        make_vector("gaussian", 0)
