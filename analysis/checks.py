"""Check every statement that applies to a compressor on one vector, by Monte Carlo.

Steps of :func:`check_compressor`:

1. compress ``trials`` copies of ``x`` and collect the statistics (:func:`analysis.montecarlo.sample_compressor`);
2. ask the compressor which statements it makes: ``unbiased``; ``exact_variance(x)`` (identity on
   ``E||C(x) - x||^2``); ``variance_bound(x)`` (bound); and, where it defines them, ``expected_nnz(x)``
   (identity on ``E nnz``), ``nnz_bound(x)`` (bound on ``E nnz``), ``bits_bound(x)`` (bound on
   ``E nbits``), ``delta(x)`` (delta-approximation: ``E||C(x) - x||^2 <= (1 - delta)||x||^2``);
3. decide each one at the stated confidence (:mod:`analysis.montecarlo`);
4. report the mean message length against dense fp32 (32 d bits) and the compression ratio.

Example:
    >>> import numpy as np
    >>> from simdist.compressors import make
    >>> x = make_vector("gaussian", 16, seed=0)
    >>> [(v.kind, v.passed) for v in check_compressor(make("identity"), x, trials=10, seed=0)]
    [('unbiased', True), ('identity', True), ('bound', True), ('info', True)]

References:
    The statements and their sources: THEORY.md sections 1-5 (QSGD Lemma 3.1 and Theorem 3.2,
    NUQSGD, TernGrad, Karimireddy et al. 2019, Stich et al. 2018).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._args import check_float, check_int
from .montecarlo import FLOAT_RTOL, Verdict, info_verdict, sample_compressor, verdict_mean, verdict_unbiased

__all__ = ["check_compressor", "make_vector", "VECTOR_KINDS", "SOURCES"]

#: Kinds of test vectors accepted by :func:`make_vector`.
VECTOR_KINDS = ("gaussian", "uniform", "sparse", "powerlaw")

#: Sources of the statements, per compressor name and hook (a compressor may override them with a
#: ``theory_sources`` dict attribute of the same shape).
SOURCES: dict[str, dict[str, str]] = {
    "qsgd": {
        "unbiased": "QSGD Lemma 3.1(i)",
        "variance_bound": "QSGD Lemma 3.1(ii)",
        "exact_variance": "[D] QSGD Sec. 3.1 definition",
        "expected_nnz": "[D] QSGD Sec. 3.1 definition",
        "nnz_bound": "QSGD Lemma 3.1(iii)",
        "bits_bound": "QSGD Theorem 3.2 (o(1) dropped)",
    },
    "nuqsgd": {
        "unbiased": "NUQSGD (JMLR 2021) [M]",
        "variance_bound": "[D] NUQSGD level geometry",
        "exact_variance": "[D] NUQSGD definition",
        "expected_nnz": "[D] NUQSGD definition",
    },
    "terngrad": {
        "unbiased": "TernGrad (NeurIPS 2017) Sec. 3",
        "exact_variance": "[D] TernGrad E||g||^2 = ||g||_inf ||g||_1",
        "variance_bound": "[D] TernGrad ||g||_inf ||g||_1 - ||g||^2",
    },
    "onebit": {"exact_variance": "[D] 1BitSGD avg+/avg- (Seide et al. 2014)"},
    "threshold": {"exact_variance": "[D] threshold: sum of x_i^2 below tau"},
    "sign": {
        "exact_variance": "[D] scaled sign definition",
        "variance_bound": "[D] scaled sign definition",
        "delta": "Karimireddy et al. ICML 2019 Sec. 3",
    },
    "topk": {
        "exact_variance": "[D] top-k: sum of the d-k smallest x_i^2",
        "variance_bound": "Stich et al. NeurIPS 2018 Def. 2.1 [M]",
        "delta": "Stich et al. NeurIPS 2018 Def. 2.1 [M]",
    },
    "randk": {
        "unbiased": "rand-k scaled by d/k",
        "exact_variance": "[D] rand-k definition",
        "variance_bound": "Stich et al. NeurIPS 2018 Def. 2.1 [M]",
        "delta": "Stich et al. NeurIPS 2018 Def. 2.1 [M]",
    },
    "identity": {"unbiased": "fp32 baseline", "exact_variance": "[D] fp32 rounding", "variance_bound": "[D] fp32 rounding"},
    "fp16": {"exact_variance": "[D] fp16 rounding"},
}

_STATEMENTS = {
    "exact_variance": "E||C(x)-x||^2 = exact value",
    "variance_bound": "E||C(x)-x||^2 <= bound",
    "expected_nnz": "E nnz(C(x)) = exact value",
    "nnz_bound": "E nnz(C(x)) <= bound",
    "bits_bound": "E nbits <= bound",
    "delta": "E||C(x)-x||^2 <= (1 - delta) ||x||^2",
}


def make_vector(kind: str, d: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Build a test vector.

    Args:
        kind: ``"gaussian"`` (i.i.d. N(0, 1)), ``"uniform"`` (i.i.d. U(-1, 1)), ``"sparse"`` (10% of the
            entries N(0, 1), at least one, the rest 0) or ``"powerlaw"`` (magnitudes ``1/rank`` in random
            order with random signs, like a heavy-tailed gradient).
        d: dimension (>= 1).
        seed: seed (>= 0).
        dtype: float32 (default) or float64.

    Returns:
        The vector.

    Example:
        >>> x = make_vector("sparse", 100, seed=1)
        >>> x.dtype.name, int(np.count_nonzero(x))
        ('float32', 10)
    """
    if kind not in VECTOR_KINDS:
        raise ValueError(f"kind must be one of {list(VECTOR_KINDS)}, got {kind!r}")
    d = check_int("d", d, low=1)
    seed = check_int("seed", seed, low=0)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng([seed, d])
    if kind == "gaussian":
        x = rng.standard_normal(d)
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, d)
    elif kind == "sparse":
        x = np.zeros(d)
        nz = max(1, d // 10)
        x[rng.choice(d, nz, replace=False)] = rng.standard_normal(nz)
    else:
        x = rng.permutation(1.0 / np.arange(1, d + 1)) * rng.choice([-1.0, 1.0], d)
    return x.astype(dtype)


def _source(c, hook: str) -> str:
    own = getattr(c, "theory_sources", None)
    if isinstance(own, dict) and hook in own:
        return str(own[hook])
    return SOURCES.get(c.name, {}).get(hook, f"{type(c).__name__}.{hook}")


def _hook(c, name: str, x):
    f = getattr(c, name, None)
    if f is None:
        return None
    v = f(x)
    return None if v is None else float(v)


def check_compressor(c, x: np.ndarray, trials: int, seed: int, confidence: float = 0.99, *, progress: bool = False) -> list[Verdict]:
    """Check the statements that apply to ``c`` on ``x`` (see the module docstring).

    Args:
        c: a compressor.
        x: 1-D float32/float64 vector.
        trials: number of independent compressions (>= 2).
        seed: root seed (>= 0).
        confidence: in [0.5, 1); each verdict's false-alarm probability is at most 1 - confidence.
        progress: show a tqdm bar on stderr.

    Returns:
        One :class:`~analysis.montecarlo.Verdict` per statement, the bits report last; each has a
        stable ``key``: ``"unbiased"``, the hook it checks (``"exact_variance"``, ``"variance_bound"``,
        ``"expected_nnz"``, ``"nnz_bound"``, ``"bits_bound"``, ``"delta"``) or ``"bits_vs_fp32"``.
    """
    from simdist._validate import check_vector

    x = check_vector("x", x)
    c._check_dim(x.size)
    confidence = check_float("confidence", confidence, low=0.5, high=1.0, high_open=True)
    # 1. sample
    s = sample_compressor(c, x, trials, seed, progress=progress)
    d = x.size
    norm_sq = float(s.x @ s.x)
    out: list[Verdict] = []
    # 2-3. statements
    if c.unbiased:
        out.append(replace(verdict_unbiased(s, confidence=confidence, source=_source(c, "unbiased")), key="unbiased"))
    sq_tol = lambda ref: FLOAT_RTOL * (norm_sq + abs(ref))  # noqa: E731  (float32 rounding)
    for hook, values, kind, tol in (
        ("exact_variance", s.sq_error, "identity", sq_tol),
        ("variance_bound", s.sq_error, "bound", sq_tol),
        ("expected_nnz", s.nnz, "identity", lambda ref: 1e-9 * max(1.0, abs(ref))),
        ("nnz_bound", s.nnz, "bound", lambda ref: 1e-9 * max(1.0, abs(ref))),
        ("bits_bound", s.nbits, "bound", lambda ref: 1e-9 * max(1.0, abs(ref))),
    ):
        ref = _hook(c, hook, x)
        if ref is not None:
            out.append(replace(verdict_mean(values, ref, kind=kind, statement=_STATEMENTS[hook], source=_source(c, hook),
                                            confidence=confidence, tol=tol(ref)), key=hook))
    delta = _hook(c, "delta", x)
    if delta is not None:
        ref = (1.0 - delta) * norm_sq
        out.append(replace(verdict_mean(s.sq_error, ref, kind="bound", statement=_STATEMENTS["delta"],
                                        source=_source(c, "delta"), confidence=confidence, tol=sq_tol(ref),
                                        detail=f"delta = {delta:.6g}"), key="delta"))
    # 4. bits against dense fp32
    mean_bits = float(s.nbits.mean())
    ratio = 32.0 * d / mean_bits if mean_bits > 0 else float("inf")
    out.append(replace(info_verdict(s.nbits, statement="E nbits vs dense fp32 (32 d bits)", source="fp32 baseline",
                                    confidence=confidence,
                                    detail=f"32 d = {32 * d} bits; compression ratio 32 d / E nbits = {ratio:.4g}; "
                                           f"{mean_bits / d:.4g} bits per entry"), key="bits_vs_fp32"))
    return out
