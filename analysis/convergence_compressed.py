"""Convergence of compressed SGD measured from training histories, and one-sided decisions over seeds.

The reproductions of QSGD's "at most 2x the iterations, at least 10x fewer bits", of the sign
counterexample and of top-k with error feedback (THEORY.md sections 1, 4 and 5) read the same
few quantities off a :class:`simdist.engine.history.History` loss curve:

* :func:`steps_to_target`: the number of steps until the loss first reaches a target (``inf``
  when it never does within the run), with the engine's ``eval_every`` resolution;
* :func:`tail_mean`: the "final loss" as the mean over the last fraction of the steps (less noisy
  than the last value of a stochastic run);
* :func:`qsgd_iteration_factor`: the factor ``1 + min(b/s^2, sqrt(b)/s)`` by which QSGD's
  Lemma 3.1 (ii) can at most multiply a gradient's second moment (b the bucket size), which is
  the at-most-2x of Theorem 3.4 at s = sqrt(b) [V];
* :func:`demonstrate_mean`: decide a claim about the mean of per-seed values (one-sided Student t,
  CLT over seeds) in the *demonstrating* direction: the claim passes only when the one-sided
  confidence limit lies on the claimed side of the reference. A wrong claim passes with probability
  at most ``1 - confidence`` (under the CLT approximation); a correct claim whose effect is
  too small for the number of seeds fails, which is the safe error for a reproduction.

Example:
    >>> import numpy as np
    >>> steps_to_target(np.array([3.0, 3.0, 2.0, 2.0, 1.0]), 2.0)     # reached after step index 2
    3.0
    >>> v = demonstrate_mean([1.1, 1.2, 1.15, 1.12], 2.0, side="below", statement="T_q/T_fp <= 2",
    ...                      source="QSGD Thm 3.4", confidence=0.99)
    >>> v.passed, v.kind
    (True, 'demonstrated')

References:
    D. Alistarh et al., "QSGD", NeurIPS 2017, Lemma 3.1 (ii), Theorem 3.4. S. P. Karimireddy et
    al., "Error Feedback Fixes SignSGD ...", ICML 2019 (counterexample). S. U. Stich, J.-B.
    Cordonnier, M. Jaggi, "Sparsified SGD with Memory", NeurIPS 2018.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from scipy import stats

from ._args import check_float, check_int
from .montecarlo import Verdict
from .qsgd import qsgd_variance_factor

__all__ = ["steps_to_target", "tail_mean", "qsgd_iteration_factor", "demonstrate_mean", "bonferroni", "blas_threads"]


@contextlib.contextmanager
def blas_threads(limit: int = 1):
    """Limit the BLAS thread pool inside the block (threadpoolctl, installed with scikit-learn).

    The problems' matmuls are small ((1797, 64) x (64, 32) for the MLP); on a small shared machine
    a multi-threaded OpenBLAS spends far more time waking threads than computing (measured: the
    MLP's full loss took 8.4 ms with the default pool, 0.41 ms with one thread). Without
    threadpoolctl the block runs unchanged. The results do not depend on it (same bits).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def _curve(name: str, values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-step losses, got shape {a.shape}")
    return a


def steps_to_target(loss, target: float) -> float:
    """Steps until the loss curve first reaches ``target`` (``loss[t] <= target`` at step t -> t + 1).

    The engine records, at a step where the loss is not evaluated (``eval_every > 1``), the last
    evaluated value, so the first index that reaches the target is an evaluation step and the
    count has the resolution of ``eval_every``.

    Args:
        loss: per-step losses (a History's ``loss``), 1-D.
        target: the level to reach (finite).

    Returns:
        The step count as a float, ``inf`` when the run never reached the target.
    """
    y = _curve("loss", loss)
    target = check_float("target", target)
    hit = np.flatnonzero(y <= target)
    return float(hit[0] + 1) if hit.size else math.inf


def tail_mean(loss, frac: float = 0.1) -> float:
    """Mean of the last ``ceil(frac * T)`` losses of a T-step curve (at least one).

    Args:
        loss: per-step losses, 1-D.
        frac: fraction of the steps in (0, 1].
    """
    y = _curve("loss", loss)
    frac = check_float("frac", frac, low=0.0, high=1.0, low_open=True)
    m = max(1, math.ceil(frac * y.size))
    return float(np.mean(y[-m:]))


def qsgd_iteration_factor(d: int, s: int, bucket: int | None = None) -> float:
    """``1 + min(b/s^2, sqrt(b)/s)`` with ``b = min(bucket, d)`` (``d`` without bucketing) [V].

    Lemma 3.1 (ii) bounds the quantized gradient's second moment by this factor times the
    unquantized one, so Theorem 3.4's variance-dominated iteration count grows by at most this
    factor (at most 2 for s >= sqrt(b)).

    Example:
        >>> qsgd_iteration_factor(1024, 32), round(qsgd_iteration_factor(1024, 16, 512), 4)
        (2.0, 2.4142)
    """
    d = check_int("d", d, low=1)
    b = d if bucket is None else min(check_int("bucket", bucket, low=1), d)
    return 1.0 + qsgd_variance_factor(b, s)


def bonferroni(confidence: float, tests: int) -> float:
    """Per-test confidence ``1 - (1 - confidence) / tests`` (family-wise ``confidence``)."""
    confidence = check_float("confidence", confidence, low=0.5, high=1.0, high_open=True)
    tests = check_int("tests", tests, low=1)
    return 1.0 - (1.0 - confidence) / tests


def demonstrate_mean(values, reference: float, *, side: str, statement: str, source: str,
                     confidence: float = 0.99, detail: str = "") -> Verdict:
    """Decide "mean < reference" (``side="below"``) or "mean > reference" (``side="above"``).

    One-sided Student t over the m per-seed values (CLT): with ``h = t_{c, m-1} sd / sqrt(m)``,
    ``side="below"`` passes iff ``mean + h < reference`` and ``side="above"`` iff
    ``mean - h > reference``. Every value equal: decided exactly. A non-finite value (a run that
    never reached its target) makes ``side="below"`` fail and, for ``side="above"``, the caller
    should pass a censored lower bound instead (see the reproductions).

    Args:
        values: per-seed values, at least 2.
        reference: the threshold of the claim.
        side: ``"below"`` or ``"above"``.
        statement, source, detail: text for the verdict.
        confidence: the confidence c in [0.5, 1): a false claim passes with probability <= 1 - c.

    Returns:
        A :class:`analysis.montecarlo.Verdict` of kind ``"demonstrated"`` whose ``[ci_low, ci_high]``
        is ``mean -+ h`` (each end a one-sided limit at confidence c).
    """
    if side not in ("below", "above"):
        raise ValueError(f"side must be one of ['below', 'above'], got {side!r}")
    confidence = check_float("confidence", confidence, low=0.5, high=1.0, high_open=True)
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or y.size < 2:
        raise ValueError(f"values must be a 1-D array of at least 2 seeds, got shape {y.shape}")
    reference = float(reference)
    m = y.size
    if not np.all(np.isfinite(y)):
        mean = float(np.mean(y)) if not np.any(np.isnan(y)) else math.nan
        text = "a non-finite value (a run that never reached its target or diverged): not demonstrated"
        return Verdict(statement, source, "demonstrated", mean, None, None, confidence, reference, False, m,
                       f"{detail}; {text}" if detail else text)
    mean = float(y.mean())
    sd = float(y.std(ddof=1))
    if sd <= 1e-12 * max(abs(mean), 1e-300):
        lo = hi = mean
        rule = "every seed equal: decided exactly"
    else:
        h = float(stats.t.ppf(confidence, m - 1)) * sd / math.sqrt(m)
        lo, hi = mean - h, mean + h
        rule = f"one-sided {confidence:.6g} Student t over {m} seeds (CLT)"
    passed = hi < reference if side == "below" else lo > reference
    rule += f"; pass iff the {'upper' if side == 'below' else 'lower'} limit is {side} {reference:g}"
    return Verdict(statement, source, "demonstrated", mean, lo, hi, confidence, reference, bool(passed), m,
                   f"{detail}; {rule}" if detail else rule)
