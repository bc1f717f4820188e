"""Problems: gradients vs finite differences and per-sample formulas, vectorization, constants, registry."""

import json

import numpy as np
import pytest
from scipy import special

from simdist import problems
from simdist.problems.base import Problem

# Small, fast settings of every built-in problem (the digits MLP with few hidden units).
SETTINGS = {
    "mean_estimation": dict(d=6, n=300, m=0.5, s=2.0, seed=1),
    "least_squares": dict(n=300, d=8, noise=0.7, cond=10.0, seed=2),
    "logistic": dict(n=300, d=7, sep=1.5, lam=1e-2, seed=3),
    "logistic_bc": dict(dataset="breast_cancer"),
    "mlp_digits": dict(hidden=6, lam=1e-3, seed=4),
    "mlp_relu": dict(hidden=5, activation="relu", seed=5),
    "sign_counterexample": dict(eps=0.3),
}
NAME = {"logistic_bc": "logistic", "mlp_relu": "mlp_digits"}


def build(key, **extra):
    return problems.make(NAME.get(key, key), **SETTINGS[key], **extra)


@pytest.fixture(scope="module", params=list(SETTINGS))
def problem(request):
    return build(request.param)


# --- per-sample reference formulas, written independently of the library -------------------


def ref_sample_loss(p, x, j):
    """f_j(x), the single-sample objective, from the module docstrings' formulas."""
    if p.name == "mean_estimation":
        return 0.5 * np.sum((x - p.samples[j]) ** 2)
    if p.name == "least_squares":
        return 0.5 * (p.A[j] @ x - p.b[j]) ** 2
    if p.name == "logistic":
        return np.log1p(np.exp(-p.y[j] * (p.A[j] @ x))) + 0.5 * p.lam * (x @ x)
    if p.name == "sign_counterexample":
        return 2.0 * (p.a[j] @ x) ** 2
    if p.name == "mlp_digits":
        h = p.hidden
        W1 = x[: 64 * h].reshape(64, h)
        b1 = x[64 * h : 65 * h]
        W2 = x[65 * h : 75 * h].reshape(h, 10)
        b2 = x[75 * h :]
        pre = p.X[j] @ W1 + b1
        hid = np.tanh(pre) if p.activation == "tanh" else np.maximum(pre, 0)
        z = hid @ W2 + b2
        return special.logsumexp(z) - z[p.classes[j]] + 0.5 * p.lam * (x @ x)
    raise AssertionError(p.name)


def ref_sample_grad(p, x, j):
    """g_j(x) in closed form (central differences of f_j for the MLP)."""
    if p.name == "mean_estimation":
        return x - p.samples[j]
    if p.name == "least_squares":
        return (p.A[j] @ x - p.b[j]) * p.A[j]
    if p.name == "logistic":
        yj, aj = p.y[j], p.A[j]
        return -yj * aj / (1.0 + np.exp(yj * (aj @ x))) + p.lam * x
    if p.name == "sign_counterexample":
        return 4.0 * (p.a[j] @ x) * p.a[j]
    return np.array([_central(lambda t: ref_sample_loss(p, t, j), x, e) for e in np.eye(p.dim)])


def _central(fun, x, v, h=1e-6):
    return (fun(x + h * v) - fun(x - h * v)) / (2 * h)


def _point(p, rng, scale=0.5):
    return p.x0.astype(np.float64) + scale * rng.standard_normal(p.dim)


# --- gradients -------------------------------------------------------------------------------


def test_full_grad_matches_finite_differences_of_loss(problem):
    rng = np.random.default_rng(10)
    for _ in range(3):
        x = _point(problem, rng)
        g = problem.full_grad(x)
        for v in [*rng.standard_normal((4, problem.dim)), *np.eye(problem.dim)[:3]]:
            fd = _central(problem.loss, x, v)
            assert abs(fd - g @ v) <= 1e-6 * (1 + abs(fd)), (fd, g @ v)


def test_single_sample_grads_match_per_sample_formulas(problem):
    rng = np.random.default_rng(11)
    x = _point(problem, rng)
    js = rng.choice(problem.n_samples, size=min(4, problem.n_samples), replace=False)
    G = problem.grads(x, js[:, None])
    for row, j in zip(G, js):
        ref = ref_sample_grad(problem, x, j)
        np.testing.assert_allclose(row, ref, rtol=1e-6, atol=1e-7)
        # the per-sample loss's directional derivative agrees too (checks the loss formula itself)
        v = rng.standard_normal(problem.dim)
        assert abs(_central(lambda t: ref_sample_loss(problem, t, j), x, v) - row @ v) <= 1e-6 * (1 + abs(row @ v))


def test_full_grad_and_loss_are_the_sample_means(problem):
    rng = np.random.default_rng(12)
    x = _point(problem, rng)
    np.testing.assert_allclose(problem.sample_grads(x).mean(axis=0), problem.full_grad(x), rtol=1e-10, atol=1e-12)
    js = rng.choice(problem.n_samples, size=min(25, problem.n_samples), replace=False)
    if problem.n_samples <= 25:  # the whole sum: f = mean_j f_j exactly
        assert problem.loss(x) == pytest.approx(np.mean([ref_sample_loss(problem, x, j) for j in js]), rel=1e-12)


def test_vectorized_grads_equal_per_node_loop(problem):
    rng = np.random.default_rng(13)
    P, B = 5, 3
    idx = rng.integers(0, problem.n_samples, size=(P, B))
    x = _point(problem, rng)
    G = problem.grads(x, idx)
    assert G.shape == (P, problem.dim) and G.dtype == np.float64
    if problem.name != "mlp_digits":  # closed-form per-sample references
        loop = np.stack([np.mean([ref_sample_grad(problem, x, j) for j in row], axis=0) for row in idx])
        np.testing.assert_allclose(G, loop, rtol=1e-10, atol=1e-12)
    loop = np.stack([problem.grads(x, row[None, :])[0] for row in idx])
    np.testing.assert_allclose(G, loop, rtol=1e-12, atol=1e-14)
    # one iterate per node: row i uses X[i] only
    X = x + 0.3 * rng.standard_normal((P, problem.dim))
    GX = problem.grads(X, idx)
    loop = np.stack([problem.grads(X[i], idx[i : i + 1])[0] for i in range(P)])
    np.testing.assert_allclose(GX, loop, rtol=1e-12, atol=1e-14)
    assert not np.allclose(GX, G)


@pytest.mark.parametrize("key", list(SETTINGS))
def test_float32_option(key):
    p32, p64 = build(key, dtype="float32"), build(key)
    assert p32.dtype == np.float32 and p32.x0.dtype == np.float32
    rng = np.random.default_rng(14)
    idx = rng.integers(0, p32.n_samples, size=(3, 4))
    x = _point(p64, rng)
    G32 = p32.grads(x, idx)
    assert G32.dtype == np.float32
    np.testing.assert_allclose(G32, p64.grads(x, idx), rtol=2e-4, atol=2e-4 * np.abs(p64.grads(x, idx)).max())
    assert p32.loss(x) == pytest.approx(p64.loss(x), rel=1e-4)


def test_mlp_batched_gradient_is_not_trivially_zero_and_descends():
    p = build("mlp_digits")
    x = p.x0.astype(np.float64)
    f0 = p.loss(x)
    for _ in range(30):
        x = x - 0.5 * p.full_grad(x)
    assert p.loss(x) < 0.8 * f0 and p.accuracy(x) > p.accuracy(p.x0)


def test_mlp_layout_and_seeded_init():
    p = problems.make("mlp_digits", hidden=32)
    assert p.dim == 75 * 32 + 10 == 2410 and p.n_samples == 1797
    W1, b1, W2, b2 = p.unpack(p.x0)
    assert W1.shape == (64, 32) and W2.shape == (32, 10) and not b1.any() and not b2.any()
    assert np.array_equal(problems.make("mlp_digits", seed=0).x0, p.x0)
    assert not np.array_equal(problems.make("mlp_digits", seed=1).x0, p.x0)
    assert p.x_star is p.f_star is p.L is p.mu is p.sigma2 is p.R is None
    assert np.isclose(W1.std(), 1 / 8, rtol=0.1)  # N(0, 1/64)


# --- constants -------------------------------------------------------------------------------

CONVEX = ["mean_estimation", "least_squares", "logistic", "logistic_bc", "sign_counterexample"]


@pytest.mark.parametrize("key", CONVEX)
def test_x_star_is_the_minimizer(key):
    p = build(key)
    g = p.full_grad(p.x_star)
    assert np.linalg.norm(g) <= 1e-9 * max(1.0, np.linalg.norm(p.full_grad(p.x0)))
    assert p.f_star == pytest.approx(p.loss(p.x_star), rel=1e-12, abs=1e-15)
    rng = np.random.default_rng(15)
    for _ in range(5):
        assert p.loss(p.x_star + 1e-3 * rng.standard_normal(p.dim)) > p.f_star
    assert p.R == pytest.approx(np.linalg.norm(p.x0 - p.x_star))


@pytest.mark.parametrize("key", CONVEX)
def test_smoothness_and_strong_convexity_on_random_pairs(key):
    p = build(key)
    rng = np.random.default_rng(16)
    for _ in range(20):
        x, y = _point(p, rng, 2.0), _point(p, rng, 2.0)
        dg, dx = p.full_grad(x) - p.full_grad(y), x - y
        assert np.linalg.norm(dg) <= p.L * np.linalg.norm(dx) * (1 + 1e-9)
        assert dg @ dx >= p.mu * (dx @ dx) * (1 - 1e-9)
        j = rng.integers(p.n_samples)
        dgj = p.grads(x, [[j]])[0] - p.grads(y, [[j]])[0]
        assert np.linalg.norm(dgj) <= p.L_sample * np.linalg.norm(dx) * (1 + 1e-9)
    assert p.mu <= p.L <= p.L_sample


@pytest.mark.parametrize("key", ["least_squares", "sign_counterexample", "mean_estimation"])
def test_L_and_mu_are_tight_for_quadratics(key):
    p = build(key)
    H = np.stack([p.full_grad(e) - p.full_grad(np.zeros(p.dim)) for e in np.eye(p.dim)], axis=1)
    eig = np.linalg.eigvalsh((H + H.T) / 2)
    assert eig[-1] == pytest.approx(p.L, rel=1e-9) and eig[0] == pytest.approx(p.mu, rel=1e-9)


def test_logistic_mu_is_tight_far_out():
    """mu = lam is approached where every margin is large (the data curvature vanishes)."""
    p = build("logistic")
    u = np.random.default_rng(23).standard_normal(p.dim)
    x = 1e4 * u / np.linalg.norm(u)
    H = np.stack([(p.full_grad(x + 1e-5 * e) - p.full_grad(x - 1e-5 * e)) / 2e-5 for e in np.eye(p.dim)], axis=1)
    eig = np.linalg.eigvalsh((H + H.T) / 2)
    assert p.mu * (1 - 1e-6) <= eig[0] <= 1.1 * p.mu


def test_sigma2_exact_identities():
    me = build("mean_estimation")
    rng = np.random.default_rng(17)
    for _ in range(3):  # the same at every x [D]
        assert me.grad_variance(_point(me, rng, 3.0)) == pytest.approx(me.sigma2, rel=1e-12)
    assert me.sigma2 == pytest.approx(np.mean(np.sum((me.samples - me.samples.mean(0)) ** 2, 1)), rel=1e-12)
    assert me.f_star == pytest.approx(me.sigma2 / 2, rel=1e-12)
    for key in ["least_squares", "logistic", "logistic_bc", "sign_counterexample"]:
        p = build(key)
        assert p.sigma2_at == "x_star"
        assert p.grad_variance(p.x_star) == pytest.approx(p.sigma2, rel=1e-8, abs=1e-14)
    lg = build("logistic")
    for _ in range(5):  # the sup bound holds everywhere
        assert lg.grad_variance(_point(lg, rng, 5.0)) <= lg.sigma2_sup


@pytest.mark.parametrize("key", ["mean_estimation", "least_squares"])
@pytest.mark.parametrize("P,B", [(1, 1), (8, 4)])
def test_sigma2_against_monte_carlo(key, P, B):
    """E||avg of P*B iid single-sample grads - grad f||^2 = sigma2 / (P B) at x* [D], by Monte Carlo.

    N = 20000 independent replicas; the z-score of the sample mean against sigma2/(P B), with the
    standard error estimated from the replicas, is below 4.5 with false-alarm probability
    about 7e-6 (two-sided normal tail; the CLT applies: the summands have finite variance).
    """
    p = build(key)
    rng = np.random.default_rng(18)
    N = 20000
    x = p.x_star
    idx = rng.integers(0, p.n_samples, size=(N, P * B))
    G = p.grads(x, idx.reshape(N * P, B)).reshape(N, P, p.dim).mean(axis=1)
    v = np.sum((G - p.full_grad(x)) ** 2, axis=1)
    z = (v.mean() - p.sigma2 / (P * B)) / (v.std(ddof=1) / np.sqrt(N))
    assert abs(z) < 4.5, z


# --- the sign counterexample -------------------------------------------------------------------


def test_sign_counterexample_constants_and_scaling():
    p = build("sign_counterexample")
    eps = 0.3
    assert np.array_equal(p.a, [[1 + eps, -1 + eps], [-1 + eps, 1 + eps]])
    np.testing.assert_array_equal(p.x0, [1.0, 1.0])
    assert p.f_star == 0.0 and np.array_equal(p.x_star, [0.0, 0.0]) and p.R == pytest.approx(np.sqrt(2))
    rng = np.random.default_rng(19)
    for _ in range(10):
        x = rng.standard_normal(2) * 3
        assert p.loss(x) == pytest.approx((p.a[0] @ x) ** 2 + (p.a[1] @ x) ** 2, rel=1e-14)
        # unbiased: the mean of the two single-sample gradients is grad f
        g = 2 * (p.a.T @ (p.a @ x))
        np.testing.assert_allclose(p.sample_grads(x).mean(0), g, rtol=0, atol=1e-13 * (1 + np.abs(g).max()))


def test_sign_counterexample_invariants():
    p = problems.make("sign_counterexample", eps=0.25)
    rng = np.random.default_rng(20)
    # every sign(g_i) is parallel to [1, -1], at any point
    for x in rng.standard_normal((50, 2)) * 4:
        for s in np.sign(p.sample_grads(x)):
            assert s[0] == -s[1]
    # on the line x1 + x2 = 2: f = 8 eps^2 + 8 t^2 >= 8 eps^2
    for t in rng.standard_normal(20) * 3:
        x = np.array([1 + t, 1 - t])
        assert p.loss(x) == pytest.approx(8 * 0.25**2 + 8 * t * t, rel=1e-12)
    # signSGD, P nodes of batch 1, dyadic steps (exact arithmetic): x1 + x2 = 2 forever
    x = p.x0.astype(np.float64)
    for t in range(2000):
        idx = rng.integers(0, 2, size=(4, 1))
        step = np.sign(p.grads(x, idx)).sum(axis=0)  # majority-vote numerator, still parallel to [1, -1]
        x = x - 2.0 ** -rng.integers(3, 10) * step
        assert x[0] + x[1] == 2.0
        assert p.loss(x) >= p.f_lower_bound * (1 - 1e-12)
    # a batch holding both samples averages them to grad f, whose sign is not parallel to [1, -1]
    assert np.array_equal(np.sign(p.grads(p.x0, [[0, 1]])[0]), [1.0, 1.0])


def test_sign_counterexample_error_feedback_converges():
    """EF-SGD with the scaled sign (THEORY.md 4) on the same problem reaches f near f* = 0."""
    p = problems.make("sign_counterexample", eps=0.25)
    rng = np.random.default_rng(21)
    x, e = p.x0.astype(np.float64), np.zeros(2)
    T = 4000
    for t in range(T):
        lr = 0.05 / np.sqrt(t + 1)
        q = lr * p.grads(x, rng.integers(0, 2, size=(1, 1)))[0] + e
        delta = np.abs(q).mean() * np.sign(q)
        x, e = x - delta, q - delta
    assert p.loss(x) < 0.01 * p.f_lower_bound


# --- registry, config, errors ------------------------------------------------------------------


def test_registry():
    assert problems.available() == ["least_squares", "logistic", "mean_estimation", "mlp_digits", "sign_counterexample"]
    with pytest.raises(ValueError, match="unknown problem 'nope'.*least_squares.*sign_counterexample"):
        problems.make("nope")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['k'\].*allowed"):
        problems.make("least_squares", k=3)

    class Dup(Problem):
        name = "least_squares"

    with pytest.raises(ValueError, match="already registered"):
        problems.register(Dup)

    class NoName(Problem):
        pass

    with pytest.raises(ValueError, match="non-empty"):
        problems.register(NoName)
    p = build("least_squares")
    assert problems.make(p) is p
    with pytest.raises(TypeError):
        problems.make(p, d=3)
    with pytest.raises(TypeError):
        problems.make(3)


@pytest.mark.parametrize("key", list(SETTINGS))
def test_config_json_round_trip(key):
    p = build(key)
    cfg = json.loads(json.dumps(p.get_config()))
    q = problems.make(cfg)
    assert type(q) is type(p) and q.get_config() == p.get_config() == Problem.from_config(json.dumps(cfg)).get_config()
    np.testing.assert_array_equal(q.x0, p.x0)
    assert json.loads(json.dumps(q.constants())) == json.loads(json.dumps(p.constants()))
    x = _point(p, np.random.default_rng(22))
    assert q.loss(x) == p.loss(x)
    assert repr(p).startswith(p.name + "(")


def test_accuracy():
    assert build("logistic_bc").accuracy(build("logistic_bc").x_star) > 0.97
    with pytest.raises(TypeError, match="not a classifier"):
        build("least_squares").accuracy(np.zeros(8))


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    import sys

    from simdist.problems import logistic, mlp_digits

    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes "import sklearn" raise ImportError
    logistic._breast_cancer.cache_clear()
    mlp_digits._digits.cache_clear()
    with pytest.raises(ImportError, match=r"simdist\[data\]"):
        problems.make("logistic", dataset="breast_cancer")
    with pytest.raises(ImportError, match=r"simdist\[data\]"):
        problems.make("mlp_digits")
    assert problems.make("logistic", n=20, d=2).dim == 3  # synthetic data needs no scikit-learn


BAD = [
    ("mean_estimation", dict(d=0), ValueError, "d must be"),
    ("mean_estimation", dict(n=0), ValueError, "n must be"),
    ("mean_estimation", dict(s=-1.0), ValueError, "s must be"),
    ("mean_estimation", dict(m=float("nan")), ValueError, "m must be"),
    ("mean_estimation", dict(d=2.5), TypeError, "d must be an integer"),
    ("mean_estimation", dict(dtype="int32"), ValueError, "dtype must be"),
    ("least_squares", dict(noise=-0.1), ValueError, "noise must be"),
    ("least_squares", dict(cond=0.5), ValueError, "cond must be"),
    ("least_squares", dict(n=10**5, d=10**4), ValueError, "n \\* d"),
    ("logistic", dict(lam=0.0), ValueError, "lam must be"),
    ("logistic", dict(dataset="mnist"), ValueError, "dataset must be"),
    ("logistic", dict(dataset="breast_cancer", n=100), ValueError, "n applies to dataset='synthetic'"),
    ("logistic", dict(intercept=1), TypeError, "intercept must be"),
    ("mlp_digits", dict(hidden=0), ValueError, "hidden must be"),
    ("mlp_digits", dict(activation="sigmoid"), ValueError, "activation must be"),
    ("mlp_digits", dict(lam=-1.0), ValueError, "lam must be"),
    ("sign_counterexample", dict(eps=0.0), ValueError, "eps must be"),
    ("sign_counterexample", dict(eps=1.0), ValueError, "eps must be"),
]


@pytest.mark.parametrize("name,params,exc,match", BAD)
def test_bad_parameters(name, params, exc, match):
    with pytest.raises(exc, match=match):
        problems.make(name, **params)


def test_bad_gradient_inputs():
    p = build("least_squares")  # d = 8, n = 300
    x = np.zeros(8)
    with pytest.raises(ValueError, match=r"x must have shape \(8,\) or \(P, 8\)"):
        p.grads(np.zeros(7), [[0]])
    with pytest.raises(ValueError, match=r"x must have shape \(8,\)"):
        p.loss(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="idx must lie in"):
        p.grads(x, [[0, 300]])
    with pytest.raises(ValueError, match="idx must lie in"):
        p.grads(x, [[-1]])
    with pytest.raises(TypeError, match="idx must be an integer"):
        p.grads(x, [[0.5]])
    with pytest.raises(ValueError, match="idx must be a non-empty"):
        p.grads(x, [0, 1])
    with pytest.raises(ValueError, match="one row per node"):
        p.grads(np.zeros((3, 8)), [[0], [1]])
    with pytest.raises(TypeError, match="x must be a real array"):
        p.loss(np.array(["a"] * 8))
