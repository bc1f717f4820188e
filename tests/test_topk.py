"""Top-k: bit-exact against the reference, golden bytes, the [D] error identity, selection, fuzz."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist import DecodeError, compressors
from simdist.coding import BitWriter
from simdist.coding.elias import delta_str, omega_str
from simdist.compressors.topk import TopK
from simdist.kernels.select import SAMPLE_SIZE, topk_indices, topk_select, workspace_sizes
from simdist.reference.sparse import ref_sparse_decode, ref_sparse_encode, ref_topk_indices

GOLDEN_X = np.array([0.5, -2.0, 0.0, 3.0, -2.0, 1.0, 0.25, -0.125], np.float32)


def _vectors(rng, d, dtype):
    """Edge cases: gaussian, heavy ties (small integers), zeros, negatives, one nonzero, constant."""
    one = np.zeros(d)
    one[rng.integers(d)] = -1.5
    return {
        "gaussian": rng.standard_normal(d).astype(dtype),
        "ties": rng.integers(-3, 4, d).astype(dtype),
        "zeros": np.zeros(d, dtype),
        "negative": (-np.abs(rng.standard_normal(d)) - 0.1).astype(dtype),
        "one-nonzero": one.astype(dtype),
        "constant": np.full(d, 0.25, dtype),
    }


def _check_against_reference(x, k):
    c = TopK(k=k)
    p = c.compress(x)
    idx = ref_topk_indices(x, k)
    data, nbits = ref_sparse_encode(x, idx)
    assert p.to_bytes() == data and p.nbits == nbits
    y = c.decompress(p)
    ry, rbits = ref_sparse_decode(data, x.size, x.dtype, k)
    assert y.dtype == x.dtype and np.array_equal(y, ry) and rbits == nbits
    return y


# --- bytes: kernel == reference, golden ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 17, 257, 5000])
def test_kernel_equals_reference(dtype, d):
    rng = np.random.default_rng(d)
    for name, x in _vectors(rng, d, dtype).items():
        for k in sorted({1, max(1, d // 10), max(1, d // 2), d}):
            _check_against_reference(x, k)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 2**32 - 1), st.booleans(), st.floats(0.0, 1.0))
def test_kernel_equals_reference_random(d, seed, f64, frac):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(d) * (rng.random(d) < 0.7)).astype(np.float64 if f64 else np.float32)
    _check_against_reference(x, max(1, int(frac * d)))


def test_golden_bytes():
    # omega(3) = 110, mode 1 (fixed 3-bit indices: 6 bits < 8 for delta), indices 1 and 3
    # (|-2.0| ties with index 4: the lowest index wins), end gap delta(8 - 3) = 01101,
    # then -2.0 and 3.0 as binary32
    c = TopK(k=2)
    for x in (GOLDEN_X, GOLDEN_X.astype(np.float64)):
        p = c.compress(x)
        assert (p.to_bytes().hex(), p.nbits) == ("d2db8000000080800000", 79)
        assert c.decompress(p).tolist() == [0.0, -2.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]


def test_float64_values_rounded_to_float32_on_the_wire():
    x = np.array([0.1, -1e-3, 2.0 / 3.0])
    y = TopK(k=2).decompress(TopK(k=2).compress(x))
    assert y.dtype == np.float64
    assert y.tolist() == [float(np.float32(0.1)), 0.0, float(np.float32(2.0 / 3.0))]


def test_float64_outside_float32_range_is_refused():
    with pytest.raises(ValueError, match="float32"):
        TopK(k=1).compress(np.array([1e300, 1.0]))
    with pytest.raises(ValueError, match="float32"):
        TopK(k=1).compress(np.array([1.0, -3.5e38]))  # rounds to -inf in float32
    y = TopK(k=1).decompress(TopK(k=1).compress(np.array([1e30, 1.0])))  # large but representable
    assert y.tolist() == [float(np.float32(1e30)), 0.0]


def test_ratio_gives_ceil_ratio_d():
    assert TopK(ratio=0.01).k_for(2**24) == math.ceil(0.01 * 2**24) == 167773
    assert TopK(ratio=0.001).k_for(10) == 1
    assert TopK(ratio=1.0).k_for(7) == 7
    assert TopK(ratio=0.3).k_for(10) == 3
    p = TopK(ratio=0.3).compress(np.arange(10, dtype=np.float32))
    assert np.count_nonzero(TopK(ratio=0.3).decompress(p)) == 3


def test_batch_rows_and_config():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 300)).astype(np.float32)
    c = compressors.make("topk", ratio=0.05)
    batch = c.compress_batch(X)
    Y = c.decompress_batch(batch)
    for i in range(5):
        p = c.compress(X[i])
        assert batch[i].to_bytes() == p.to_bytes()
        assert np.array_equal(Y[i], c.decompress(p))
    assert c.get_config() == {"name": "topk", "k": None, "ratio": 0.05}
    assert compressors.make(c.get_config()) == c


# --- the [D] identity and the k-contraction -------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_error_identity_is_exact(seed):
    """||x - top_k(x)||^2 is the sum of the d-k smallest x_i^2, as a multiset (no rounding)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(50, 3000))
    x = (rng.standard_normal(d) * rng.integers(0, 3, d)).astype(np.float32)  # zeros and ties
    k = int(rng.integers(1, d + 1))
    c = TopK(k=k)
    y = c.decompress(c.compress(x)).astype(np.float64)
    x64 = x.astype(np.float64)
    residual_sq = (x64 - y) ** 2  # exact in float64 for float32 inputs
    smallest = np.sort(x64**2)[: d - k]
    assert np.array_equal(np.sort(residual_sq), np.sort(np.concatenate([smallest, np.zeros(k)])))
    assert math.fsum(residual_sq) == math.fsum(smallest)
    assert c.exact_variance(x) == pytest.approx(math.fsum(smallest), rel=1e-12, abs=0.0)
    assert c.exact_variance(x) <= c.variance_bound(x) * (1 + 1e-12)
    assert c.variance_bound(x) == pytest.approx((1 - k / d) * math.fsum(x64**2), rel=1e-12)


def test_hooks_flags():
    c = TopK(k=3)
    assert c.unbiased is False and c.needs_rng is False and c.name == "topk"
    assert c.exact_variance(np.array([3.0, -1.0, 2.0, 0.5], np.float32)) == 0.25
    assert TopK(k=2).exact_variance(np.array([3.0, -1.0, 2.0, 0.5])) == 1.25


# --- the linear-time selection --------------------------------------------------------------


def test_selection_paths_equal_reference():
    """Large d (sampling on), including inputs that defeat the strided sample (retry paths)."""
    rng = np.random.default_rng(7)
    d = 1 << 17
    stride = d // SAMPLE_SIZE
    cases = {
        "gaussian": rng.standard_normal(d),
        # the sample sees only zeros: threshold 0, every entry is a candidate (buffer regrowth)
        "off-sample": np.where(np.arange(d) % stride == 1, rng.standard_normal(d), 0.0),
        # the sample sees only the largest values: too few candidates first (lower and retry)
        "on-sample-peaks": np.where(np.arange(d) % stride == 0, 10 + rng.random(d), rng.random(d)),
        "all-equal": np.ones(d),
        "heavy-ties": rng.integers(-2, 3, d).astype(np.float64),
    }
    for name, x in cases.items():
        for dtype in (np.float32, np.float64):
            xx = x.astype(dtype)
            for k in (1, 100, d // 100, d // 2, d - 1, d):
                got = topk_indices(xx, k)
                assert np.array_equal(got, ref_topk_indices(xx, k)), (name, dtype, k)


def test_selection_without_workspace_and_values():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(100_000).astype(np.float32)
    k = 777
    out = np.empty(k, np.int64)
    vals = np.empty(k, np.float32)
    topk_select(x, k, out, vals, np.empty(0, np.int64), np.empty(0, np.float32))  # kernel allocates
    assert np.array_equal(out, ref_topk_indices(x, k)) and np.array_equal(vals, x[out])
    n64, nv = workspace_sizes(x.size, k)
    ws, wsv = np.empty(n64, np.int64), np.empty(nv, np.float32)
    topk_select(x, k, out, vals, ws, wsv)
    assert np.array_equal(out, ref_topk_indices(x, k)) and np.array_equal(vals, x[out])


# --- decoder robustness -----------------------------------------------------------------------


def _message(idx, values, d, mode=1, end=None):
    w = BitWriter()
    w.write_str(omega_str(len(idx) + 1))
    w.write(mode, 1)
    for i in idx:
        w.write(int(i), max(0, (d - 1).bit_length()))
    w.write_str(delta_str(max(1, int(d - idx[-1])) if end is None else end))
    for v in values:
        w.write(int(np.array([v], ">f4").view(">u4")[0]), 32)
    return w.to_bytes()


def test_decoder_rejects_wrong_count_bad_index_and_nonfinite():
    c = TopK(k=2)
    d = 6
    assert c.decompress(c.from_bytes(_message([1, 4], [1.0, 2.0], d), d)).tolist() == [0, 1, 0, 0, 2, 0]
    with pytest.raises(DecodeError, match="inconsistent header"):
        c.from_bytes(_message([1], [1.0], d), d)  # count 1 != k = 2
    with pytest.raises(DecodeError, match="inconsistent header"):
        c.from_bytes(_message([0, 1, 2], [1.0, 2.0, 3.0], d), d)
    with pytest.raises(DecodeError, match="out of range"):
        c.from_bytes(_message([1, 7], [1.0, 2.0], d), d)  # index 7 >= d
    with pytest.raises(DecodeError, match="out of range"):
        c.from_bytes(_message([4, 1], [1.0, 2.0], d), d)  # not increasing
    with pytest.raises(DecodeError, match="non-finite"):
        c.from_bytes(_message([1, 4], [1.0, np.inf], d), d)
    with pytest.raises(DecodeError, match="non-finite"):
        c.from_bytes(_message([1, 4], [np.nan, 1.0], d), d)
    with pytest.raises(DecodeError, match="trailing"):
        c.from_bytes(_message([1, 4], [1.0, 2.0], d) + b"\x00", d)
    with pytest.raises(DecodeError, match="inconsistent header"):  # end gap 3 does not reach d = 6
        c.from_bytes(_message([1, 4], [1.0, 2.0], d, end=3), d)
    with pytest.raises(DecodeError, match="dim=7"):  # the message of dim 6 read as dim 7
        c.from_bytes(_message([1, 4], [1.0, 2.0], d), 7)
    good = _message([1, 4], [1.0, 2.0], d)
    for cut in range(len(good)):
        with pytest.raises(DecodeError):
            c.from_bytes(good[:cut], d)


def _fuzz_one(c, data: bytes, d: int):
    try:
        p = c.from_bytes(data, d)
    except DecodeError:
        try:
            ref_sparse_decode(data, d, np.float32, c.k_for(d))
        except DecodeError:
            return
        raise AssertionError(f"kernel rejected what the reference accepts: {data.hex()}")
    y = c.decompress(p)
    assert y.shape == (d,) and np.all(np.isfinite(y)) and np.count_nonzero(y) <= c.k_for(d)
    assert np.array_equal(y, ref_sparse_decode(data, d, np.float32, c.k_for(d))[0])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=60), st.integers(1, 64), st.integers(1, 4))
def test_fuzz_random_bytes(data, d, k):
    _fuzz_one(TopK(k=min(k, d)), data, d)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**32 - 1), st.sampled_from(["cut", "flip", "append"]))
def test_fuzz_mutations(d, seed, kind):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d).astype(np.float32)
    c = TopK(k=int(rng.integers(1, d + 1)))
    data = bytearray(c.compress(x).to_bytes())
    if kind == "cut":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "flip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, 8 * len(data)))
            data[i // 8] ^= 1 << (7 - i % 8)
    else:
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
    _fuzz_one(c, bytes(data), d)


# --- parameters -----------------------------------------------------------------------------


def test_bad_parameters_name_the_parameter_and_range():
    with pytest.raises(ValueError, match=r"k must be in \[1, inf\], got 0"):
        TopK(k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        TopK(k=2.5)
    with pytest.raises(ValueError, match=r"ratio must be in \(0.0, 1.0\]"):
        TopK(ratio=0.0)
    with pytest.raises(ValueError, match=r"ratio must be in \(0.0, 1.0\]"):
        TopK(ratio=1.5)
    with pytest.raises(ValueError, match="ratio must be in"):
        TopK(ratio=float("nan"))
    with pytest.raises(ValueError, match="exactly one of k .* or ratio"):
        TopK()
    with pytest.raises(ValueError, match="exactly one of k .* or ratio"):
        TopK(k=2, ratio=0.5)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\].*got k=6"):
        TopK(k=6).compress(np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\]"):
        TopK(k=6).from_bytes(b"\x00", 5)
    with pytest.raises(ValueError, match="unknown parameter"):
        compressors.make("topk", k=2, s=3)


def test_inconsistent_batch_offsets_are_rejected_not_read():
    from simdist.compressors.payload import PayloadBatch

    c = TopK(k=1)
    b = c.compress_batch(np.ones((2, 4), np.float32))
    offsets = np.array([0, b.offsets[1], 99], np.int64)  # row 1 would end past the buffer
    bad = PayloadBatch(b.buffer, offsets, b.nbits, 4, np.dtype(np.float32), "topk")
    with pytest.raises(DecodeError, match="inconsistent header"):
        c.decompress_batch(bad)


def test_workspace_reuse_and_cap(monkeypatch):
    from simdist.kernels import select

    select.clear_workspace()
    a = select.workspace("t", 10, np.int64)
    assert select.workspace("t", 5, np.int64) is a  # reused
    assert select.workspace("t", 20, np.int64).shape[0] == 20  # grown
    monkeypatch.setattr(select, "WORKSPACE_MAX_BYTES", 64)
    big = select.workspace("t", 100, np.int64, zero=True)
    assert big is not select.workspace("t", 100, np.int64) and not big.any()  # not cached
    # results do not depend on the workspace being cached or not
    x = np.random.default_rng(0).standard_normal(20000).astype(np.float32)
    c = TopK(k=300)
    assert c.compress(x).to_bytes() == ref_sparse_encode(x, ref_topk_indices(x, 300))[0]
    select.clear_workspace()
