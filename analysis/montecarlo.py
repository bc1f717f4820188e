"""Monte-Carlo verifiers: estimate a compressor's statistics and decide against a theorem.

Steps of a check (see :func:`analysis.checks.check_compressor`):

1. :func:`sample_compressor` compresses ``trials`` independent copies of ``x`` (in chunks of rows
   through ``compress_batch``, one generator seeded from ``seed``), decodes them, and keeps per trial
   ``||C(x) - x||^2``, ``nnz(C(x))``, ``nbits`` and a few projections ``u^T (C(x) - x)``, plus
   per-coordinate mean, variance and range of ``C(x) - x`` (streaming, Chan/Welford merges).
2. :func:`verdict_mean` decides a scalar statement from per-trial values (CLT: the sample mean is
   approximately normal, so a Student-t interval from the sample variance is used):

   * ``kind="bound"``: passes when the one-sided lower confidence limit
     ``mean - t_{c, m-1} se`` is <= the bound (the data do not show a violation at confidence c).
     The reported ``[ci_low, ci_high]`` is ``mean -+ t_{c, m-1} se``: each end is a one-sided limit
     at confidence c.
   * ``kind="identity"``: passes when the exact value lies in the two-sided interval
     ``mean -+ t_{(1+c)/2, m-1} se``.
   * Every trial equal (a deterministic compressor, sample variance 0): decided exactly, the
     interval is the point, with only a floating-point tolerance.

3. :func:`verdict_unbiased` tests ``E[C(x)] = x`` at confidence c, splitting the false-alarm
   probability ``alpha = 1 - c`` by Bonferroni between (a) t-tests (CLT) of ``k`` projections
   (``x/||x||``, ``sign(x)/sqrt d`` and 8 random +-1/sqrt(d) directions), each two-sided at level
   ``alpha / (2k)``, and (b) per-coordinate tests, each two-sided at level ``alpha / (2d)``. The
   coordinate test uses the empirical Bernstein radius (Maurer & Pontil 2009, Thm 4),
   ``sqrt(2 V ln(4/delta) / m) + 7 R ln(4/delta) / (3 (m-1))``, instead of a plain z-score: a
   coordinate whose value changes with a small probability (QSGD entries near 0) has a skewed,
   often all-equal sample on which a z-score raises false alarms. R is the largest range of
   ``C(x)_i - x_i`` observed over all coordinates (assumption: no coordinate's range exceeds it).
   A coordinate or projection with zero sample variance in a deterministic compressor must have
   mean error 0 up to float32 rounding.

A false alarm (a correct statement judged FAIL) has probability at most ``1 - confidence`` per
verdict (under the CLT approximation for the t-intervals).

References:
    A. Maurer, M. Pontil, "Empirical Bernstein Bounds and Sample Variance Penalization", COLT 2009,
    Theorem 4. Statements checked: THEORY.md sections 1-5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from ._args import check_float, check_int

__all__ = ["Verdict", "Samples", "sample_compressor", "verdict_mean", "verdict_unbiased", "info_verdict"]

#: Relative tolerance for floating-point rounding of float32 wire values (a few float32 ulps).
FLOAT_RTOL = 2.0**-20
#: Elements (rows x d) held in memory per chunk of compressions.
CHUNK_ELEMENTS = 1 << 20
#: Number of random +-1 projection directions in the unbiasedness test.
N_RANDOM_DIRECTIONS = 8


@dataclass
class Verdict:
    """The outcome of checking one statement.

    Attributes:
        statement: what was checked, e.g. ``"E||C(x)-x||^2 <= min(d/s^2, sqrt(d)/s) ||x||^2"``.
        source: where it comes from, e.g. ``"QSGD Lemma 3.1(ii)"``.
        kind: ``"bound"``, ``"identity"``, ``"unbiased"`` or ``"info"`` (reported, always passes).
        measured: the Monte-Carlo mean (for ``"unbiased"``: the worst normalized deviation, which
            must be <= 1).
        ci_low, ci_high: confidence limits of ``measured`` (None where not applicable).
        confidence: the confidence level c (false-alarm probability <= 1 - c).
        reference: the bound or exact value (1.0 for ``"unbiased"``; None for ``"info"``).
        passed: the decision.
        trials: number of compressions.
        detail: a human-readable explanation (decision rule, extra numbers).
        key: a stable identifier of the statement for programs (e.g. ``"variance_bound"``, the
            compressor hook it checks; set by :func:`analysis.checks.check_compressor`), or "".
    """

    statement: str
    source: str
    kind: str
    measured: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    reference: float | None
    passed: bool
    trials: int
    detail: str = ""
    key: str = ""

    def to_dict(self) -> dict:
        """JSON-ready dict (non-finite floats become None, so ``json.dumps`` is strict JSON)."""
        return {k: _json_float(v) for k, v in asdict(self).items()}


def _json_float(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


@dataclass
class Samples:
    """Per-trial and per-coordinate statistics of ``C(x) - x`` (built by :func:`sample_compressor`).

    Attributes:
        x: the vector (float64 copy).
        trials: number of compressions m.
        sq_error: (m,) ``||C(x) - x||^2``.
        nnz: (m,) nonzeros of ``C(x)``.
        nbits: (m,) message lengths.
        directions: (k, d) unit projection directions; proj: (m, k) projections of ``C(x) - x``.
        coord_mean, coord_var: (d,) per-coordinate mean and unbiased sample variance of ``C(x) - x``.
        coord_min, coord_max: (d,) per-coordinate extremes of ``C(x) - x``.
    """

    x: np.ndarray
    trials: int
    sq_error: np.ndarray
    nnz: np.ndarray
    nbits: np.ndarray
    directions: np.ndarray
    proj: np.ndarray
    coord_mean: np.ndarray
    coord_var: np.ndarray
    coord_min: np.ndarray
    coord_max: np.ndarray
    extra: dict = field(default_factory=dict)


def _directions(x: np.ndarray, seed: int) -> np.ndarray:
    d = x.size
    rows = []
    nx = np.linalg.norm(x)
    if nx > 0:
        rows.append(x / nx)
    sg = np.sign(x)
    if np.any(sg):
        rows.append(sg / np.linalg.norm(sg))
    rng = np.random.default_rng([seed, 0x5D1])
    rows.extend(rng.choice([-1.0, 1.0], size=(N_RANDOM_DIRECTIONS, d)) / math.sqrt(d))
    return np.asarray(rows)


def sample_compressor(c, x: np.ndarray, trials: int, seed: int, *, progress: bool = False) -> Samples:
    """Compress ``trials`` independent copies of ``x`` and collect the statistics of ``C(x) - x``.

    Args:
        c: a compressor (``simdist.compressors.Compressor``).
        x: 1-D float32/float64 vector.
        trials: number of compressions, >= 2.
        seed: root seed (>= 0): the compressions use ``numpy.random.default_rng(seed)``.
        progress: show a tqdm progress bar on stderr.

    Returns:
        :class:`Samples`.

    Example:
        >>> import numpy as np
        >>> from simdist.compressors import make
        >>> s = sample_compressor(make("identity"), np.ones(3, np.float32), 4, 0)
        >>> s.nbits.tolist(), float(s.sq_error.max())
        ([96, 96, 96, 96], 0.0)
    """
    trials = check_int("trials", trials, low=2)
    seed = check_int("seed", seed, low=0)
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise TypeError("x must be a 1-D numpy array of float32 or float64")
    d = x.size
    x64 = x.astype(np.float64)
    U = _directions(x64, seed)
    rng = np.random.default_rng(seed) if c.needs_rng else None
    chunk = max(1, min(trials, CHUNK_ELEMENTS // max(d, 1)))
    sq = np.empty(trials)
    nnz = np.empty(trials, dtype=np.int64)
    nbits = np.empty(trials, dtype=np.int64)
    proj = np.empty((trials, U.shape[0]))
    mean = np.zeros(d)
    m2 = np.zeros(d)
    cmin = np.full(d, np.inf)
    cmax = np.full(d, -np.inf)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trials, desc=f"check {c.name}", unit="trial", leave=False)
    done = 0
    while done < trials:
        n = min(chunk, trials - done)
        batch = c.compress_batch(np.tile(x, (n, 1)), rng)
        Y = c.decompress_batch(batch)
        E = Y.astype(np.float64) - x64
        sl = slice(done, done + n)
        sq[sl] = np.einsum("ij,ij->i", E, E)
        nnz[sl] = np.count_nonzero(Y, axis=1)
        nbits[sl] = batch.nbits
        proj[sl] = E @ U.T
        # Chan et al. merge of (count, mean, M2) with the chunk's statistics.
        bmean = E.mean(axis=0)
        bm2 = ((E - bmean) ** 2).sum(axis=0)
        delta = bmean - mean
        tot = done + n
        mean += delta * (n / tot)
        m2 += bm2 + delta**2 * (done * n / tot)
        np.minimum(cmin, E.min(axis=0), out=cmin)
        np.maximum(cmax, E.max(axis=0), out=cmax)
        done = tot
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    return Samples(x64, trials, sq, nnz, nbits, U, proj, mean, m2 / (trials - 1), cmin, cmax)


def _check_conf(confidence) -> float:
    return check_float("confidence", confidence, low=0.5, high=1.0, high_open=True)


def verdict_mean(
    values,
    reference: float,
    *,
    kind: str,
    statement: str,
    source: str,
    confidence: float = 0.99,
    tol: float = 0.0,
    detail: str = "",
) -> Verdict:
    """Decide a bound or identity on the mean of per-trial values (see the module docstring).

    Args:
        values: per-trial values (at least 2).
        reference: the bound (``kind="bound"``: claim mean <= reference) or the exact value
            (``kind="identity"``: claim mean == reference).
        kind: ``"bound"`` or ``"identity"``.
        statement, source, detail: text for the verdict.
        confidence: in [0.5, 1).
        tol: absolute floating-point tolerance added to the decision (>= 0).

    Returns:
        The :class:`Verdict`.

    Example:
        >>> v = verdict_mean([1.0, 3.0] * 50, 2.0, kind="identity", statement="E Y = 2", source="test")
        >>> v.passed, round(v.ci_low, 3), round(v.ci_high, 3)
        (True, 1.736, 2.264)
    """
    if kind not in ("bound", "identity"):
        raise ValueError(f"kind must be one of ['bound', 'identity'], got {kind!r}")
    confidence = _check_conf(confidence)
    y = np.asarray(values, dtype=np.float64)
    m = y.size
    if m < 2:
        raise ValueError(f"values must hold at least 2 trials, got {m}")
    reference = float(reference)
    mean = float(y.mean())
    sd = float(y.std(ddof=1))
    if sd <= 1e-12 * abs(mean):
        lo = hi = mean
        rule = "every trial equal: decided exactly (float tolerance %.3g)" % tol
    else:
        q = confidence if kind == "bound" else (1.0 + confidence) / 2.0
        half = float(stats.t.ppf(q, m - 1)) * sd / math.sqrt(m)
        lo, hi = mean - half, mean + half
        if kind == "bound":
            rule = f"pass iff one-sided {confidence:g} lower limit <= bound (Student t, CLT)"
        else:
            rule = f"pass iff exact value in the two-sided {confidence:g} interval (Student t, CLT)"
    if kind == "bound":
        passed = lo <= reference + tol
    else:
        passed = lo - tol <= reference <= hi + tol
    text = rule if not detail else f"{detail}; {rule}"
    return Verdict(statement, source, kind, mean, lo, hi, confidence, reference, bool(passed), m, text)


def info_verdict(values, *, statement: str, source: str, confidence: float, detail: str = "") -> Verdict:
    """A reported measurement with its two-sided interval and no claim (always passes)."""
    y = np.asarray(values, dtype=np.float64)
    mean, m = float(y.mean()), y.size
    sd = float(y.std(ddof=1)) if m > 1 else 0.0
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, m - 1)) * sd / math.sqrt(m) if sd > 0 else 0.0
    return Verdict(statement, source, "info", mean, mean - half, mean + half, confidence, None, True, m, detail)


def verdict_unbiased(samples: Samples, *, confidence: float = 0.99, source: str = "") -> Verdict:
    """Test ``E[C(x)] = x`` from :class:`Samples` at the given confidence (see the module docstring).

    Args:
        samples: from :func:`sample_compressor`.
        confidence: in [0.5, 1); the false-alarm probability is at most ``1 - confidence``.
        source: the statement's source, e.g. ``"QSGD Lemma 3.1(i)"``.

    Returns:
        A :class:`Verdict` of kind ``"unbiased"``: ``measured`` is the worst ratio of a deviation to
        its threshold (pass iff <= 1).
    """
    confidence = _check_conf(confidence)
    alpha = 1.0 - confidence
    x, m = samples.x, samples.trials
    d = x.size
    xinf = float(np.max(np.abs(x)))
    worst, where = 0.0, "none"

    # (a) projections: Student-t (CLT), Bonferroni over k directions at total level alpha/2.
    k = samples.directions.shape[0]
    pm = samples.proj.mean(axis=0)
    psd = samples.proj.std(axis=0, ddof=1)
    tcrit = float(stats.t.ppf(1.0 - alpha / (4.0 * k), m - 1))
    ptol = FLOAT_RTOL * (np.abs(samples.directions) @ (np.abs(x) + xinf))
    for j in range(k):
        if psd[j] > 0:
            r = abs(pm[j]) / (tcrit * psd[j] / math.sqrt(m) + ptol[j])
        else:
            r = abs(pm[j]) / ptol[j] if ptol[j] > 0 else (0.0 if pm[j] == 0 else math.inf)
        if r > worst:
            worst, where = r, f"projection {j} (t = {pm[j] / (psd[j] / math.sqrt(m)) if psd[j] > 0 else math.inf:.3g}, critical {tcrit:.3g})"

    # (b) coordinates: empirical Bernstein radius, Bonferroni over d at total level alpha/2.
    ranges = samples.coord_max - samples.coord_min
    R = float(ranges.max())
    lg = math.log(4.0 / (alpha / (2.0 * d)))
    radius = np.sqrt(2.0 * samples.coord_var * lg / m) + 7.0 * R * lg / (3.0 * (m - 1))
    ctol = FLOAT_RTOL * (np.abs(x) + xinf)
    ratio = np.abs(samples.coord_mean) / (radius + ctol)
    zero = (radius + ctol) == 0
    ratio[zero] = np.where(samples.coord_mean[zero] == 0, 0.0, np.inf)
    i = int(np.argmax(ratio))
    if ratio[i] > worst:
        worst, where = float(ratio[i]), f"coordinate {i} (mean error {samples.coord_mean[i]:.4g}, radius {radius[i]:.4g})"

    rel = float(np.linalg.norm(samples.coord_mean) / max(np.linalg.norm(x), 1e-300))
    detail = (
        f"||mean C(x) - x|| / ||x|| = {rel:.3g}; worst deviation/threshold {worst:.3g} at {where}; "
        f"pass iff <= 1 ({k} projections by t-test (CLT) and {d} coordinates by empirical Bernstein, "
        f"Bonferroni at total level {alpha:g})"
    )
    return Verdict(
        "E[C(x)] = x", source, "unbiased", worst, None, None, confidence, 1.0, bool(worst <= 1.0), m, detail
    )
