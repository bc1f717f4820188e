"""Conformance kit: run any compressor, including your own, through simdist's contract.

Each ``check_*`` function raises ``AssertionError`` with a readable message when the
compressor breaks the contract of :mod:`simdist.compressors.base`; :func:`check_compressor`
runs them all. The statistical claims (unbiasedness, variance against the declared bound)
are checked by :func:`analysis.checks.check_compressor` with stated confidence.

Example:
    >>> import numpy as np
    >>> from simdist import compressors, testing
    >>> testing.check_compressor(compressors.make("identity"), seed=0)
"""

from __future__ import annotations

import json

import numpy as np

from .compressors.base import Compressor
from .compressors.registry import make
from .errors import DecodeError

__all__ = [
    "check_compressor",
    "check_roundtrip",
    "check_config_roundtrip",
    "check_determinism",
    "check_batch_consistency",
    "check_bad_input",
    "check_decoder_fuzz",
    "check_theory",
    "sample_vectors",
]


def sample_vectors(d: int, seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Vectors that exercise edge cases: gaussian, heavy-tailed, sparse, constant, zero, one-hot, negative."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros(d)
    sparse[rng.choice(d, size=max(1, d // 20), replace=False)] = rng.standard_normal(max(1, d // 20))
    onehot = np.zeros(d)
    onehot[d // 2] = -3.5
    vecs = {
        "gaussian": rng.standard_normal(d),
        "heavy": rng.standard_cauchy(d),
        "sparse": sparse,
        "constant": np.full(d, 0.25),
        "zero": np.zeros(d),
        "onehot": onehot,
        "negative": -np.abs(rng.standard_normal(d)) - 0.1,
    }
    return {k: v.astype(dtype) for k, v in vecs.items()}


def _rng(seed):
    return np.random.default_rng(seed)


def check_roundtrip(c: Compressor, x: np.ndarray, seed: int = 0) -> None:
    """Payload size, bytes, from_bytes and decompress agree; shape and dtype are preserved."""
    p = c.compress(x, _rng(seed))
    y = c.decompress(p)
    assert y.shape == x.shape and y.dtype == x.dtype, f"{c}: decompress gave {y.shape} {y.dtype}"
    assert np.all(np.isfinite(y)), f"{c}: decompress gave non-finite values"
    data = p.to_bytes()
    assert isinstance(data, bytes) and len(data) == (p.nbits + 7) // 8, f"{c}: {len(data)} bytes for {p.nbits} bits"
    assert p.nbits >= 0 and p.dim == x.size
    q = c.from_bytes(data, x.size, dtype=x.dtype, key=p.key)
    assert q.nbits == p.nbits, f"{c}: from_bytes measured {q.nbits} bits, compress {p.nbits}"
    assert np.array_equal(c.decompress(q), y), f"{c}: decompress(from_bytes(to_bytes())) differs"
    if x.size > 1 and c.determines_dim:
        # a grossly wrong dimension must never decode silently
        for wrong in (x.size // 2, 2 * x.size + 9):
            try:
                c.from_bytes(data, wrong, dtype=x.dtype, key=p.key)
            except ValueError as exc:  # DecodeError, or a parameter check such as k > d
                assert "dim" in str(exc) or "d=" in str(exc), f"{c}: the wrong-dim error does not name dim: {exc}"
            else:
                raise AssertionError(f"{c}: a message of dim {x.size} decoded as dim {wrong}")
    if data:
        try:
            c.from_bytes(data + b"\x00", x.size, dtype=x.dtype, key=p.key)
        except DecodeError:
            pass
        else:
            raise AssertionError(f"{c}: an appended byte was accepted (trailing data must be a DecodeError)")


def check_config_roundtrip(c: Compressor) -> None:
    """get_config survives JSON and rebuilds an equal compressor (through make and from_config)."""
    cfg = c.get_config()
    text = json.dumps(cfg)
    again = make(json.loads(text))
    assert again == c and again.get_config() == cfg, f"{c}: config round trip gave {again}"
    assert type(c).from_config(text) == c
    assert hash(again) == hash(c)


def check_determinism(c: Compressor, x: np.ndarray, seed: int = 0) -> None:
    """Same seed, same bits."""
    a = c.compress(x, _rng(seed))
    b = c.compress(x, _rng(seed))
    assert a.to_bytes() == b.to_bytes() and a.nbits == b.nbits and a.key == b.key, f"{c}: not deterministic"


def check_batch_consistency(c: Compressor, X: np.ndarray, seed: int = 0) -> None:
    """Row i of compress_batch(X, [g_0..g_n-1]) is compress(X[i], g_i), and decompress_batch agrees."""
    n = X.shape[0]
    gens = [_rng((seed, i)) for i in range(n)]
    batch = c.compress_batch(X, gens)
    assert len(batch) == n
    Y = c.decompress_batch(batch)
    assert Y.shape == X.shape and Y.dtype == X.dtype
    for i in range(n):
        p = c.compress(X[i], _rng((seed, i)))
        assert batch[i].to_bytes() == p.to_bytes() and batch[i].nbits == p.nbits, f"{c}: batch row {i} differs"
        assert np.array_equal(Y[i], c.decompress(p)), f"{c}: decompress_batch row {i} differs"
    # one generator: a derived stream, still deterministic
    b1 = c.compress_batch(X, _rng(seed))
    b2 = c.compress_batch(X, _rng(seed))
    assert np.array_equal(b1.buffer, b2.buffer) and np.array_equal(b1.nbits, b2.nbits)


def check_bad_input(c: Compressor, d: int = 16) -> None:
    """NaN/Inf, empty, non-1-D and integer inputs raise ValueError/TypeError naming ``x``."""
    rng = _rng(0)
    good = np.ones(d, np.float32)
    bad_cases = {
        "nan": np.where(np.arange(d) == 3, np.nan, good).astype(np.float32),
        "inf": np.where(np.arange(d) == 3, np.inf, good).astype(np.float32),
        "empty": np.zeros(0, np.float32),
        "2-D": np.ones((2, d), np.float32),
        "int": np.ones(d, np.int64),
        "list": [1.0] * d,
    }
    for what, x in bad_cases.items():
        try:
            c.compress(x, rng)
        except (ValueError, TypeError) as exc:
            assert "x" in str(exc), f"{c}: the {what} error does not name the parameter: {exc}"
        else:
            raise AssertionError(f"{c}: a {what} input was accepted")


def check_decoder_fuzz(c: Compressor, x: np.ndarray, seed: int = 0, mutations: int = 200) -> None:
    """Mutated messages (truncations, bit flips, appended bytes) raise DecodeError or decode cleanly."""
    rng = _rng(seed)
    p = c.compress(x, _rng(seed))
    data = bytearray(p.to_bytes())
    for m in range(mutations):
        kind = m % 3
        msg = bytearray(data)
        if kind == 0 and msg:
            msg = msg[: int(rng.integers(0, len(msg)))]
        elif kind == 1 and msg:
            i = int(rng.integers(0, 8 * len(msg)))
            msg[i // 8] ^= 1 << (7 - i % 8)
        else:
            msg += bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
        try:
            q = c.from_bytes(bytes(msg), x.size, dtype=x.dtype, key=p.key)
            y = c.decompress(q)
        except DecodeError:
            continue
        assert y.shape == x.shape and y.dtype == x.dtype and np.all(np.isfinite(y)), (
            f"{c}: a mutated message decoded to a malformed array"
        )


def check_theory(c: Compressor, x: np.ndarray, trials: int = 400, seed: int = 0, confidence: float = 1 - 1e-6) -> None:
    """The compressor's declared theory holds on ``x``: unbiasedness if ``c.unbiased``, its exact variance,
    variance bound and the other hooks, each by :func:`analysis.checks.check_compressor`.

    Each verdict has false-alarm probability at most ``1 - confidence`` (default 1e-6, so a kit run
    over a few hundred verdicts raises a false alarm with probability below 1e-3 by Bonferroni).
    """
    from analysis.checks import check_compressor as theory_checks

    failed = [v for v in theory_checks(c, x, trials, seed, confidence) if not v.passed]
    assert not failed, f"{c}: theory checks failed: " + "; ".join(
        f"{v.statement} ({v.source}): measured {v.measured:.6g} vs {v.reference}" for v in failed
    )


def check_compressor(c: Compressor, d: int = 257, seed: int = 0, theory: bool = True) -> None:
    """Run every contract check on ``c`` over a set of edge-case vectors, in float32 and float64,
    and (``theory=True``) its declared statistical claims on a Gaussian and a sparse vector."""
    check_config_roundtrip(c)
    check_bad_input(c)
    for dtype in (np.float32, np.float64):
        for name, x in sample_vectors(d, seed, dtype).items():
            try:
                check_roundtrip(c, x, seed)
                check_determinism(c, x, seed)
            except AssertionError as exc:
                raise AssertionError(f"[{name} {np.dtype(dtype).name}] {exc}") from None
        X = np.stack(list(sample_vectors(d, seed + 1, dtype).values()))
        check_batch_consistency(c, X, seed)
    check_decoder_fuzz(c, sample_vectors(d, seed)["gaussian"], seed)
    if theory:
        vecs = sample_vectors(d, seed)
        for name in ("gaussian", "sparse"):
            check_theory(c, vecs[name], seed=seed)
