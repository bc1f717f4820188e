"""The TernGrad and 1BitSGD CUDA kernels, byte for byte and value for value against the CPU path.

Runs under Numba's CUDA simulator where no GPU is present (tests/conftest.py); sizes stay small.
tests/test_gpu_device.py repeats the comparison at large d on a real GPU (CuPy inputs, FMA).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _mutations import mutate
from numba import cuda

from simdist import DecodeError
from simdist._validate import NonFiniteInput
from simdist.compressors.onebit import OneBit
from simdist.compressors.terngrad import TernGrad
from simdist.gpu import backend
from simdist.gpu.codecs_onebit import compress_onebit, decompress_onebit
from simdist.gpu.codecs_terngrad import compress_terngrad, decompress_terngrad
from simdist.gpu.dispatch import FunctionCodec
from simdist.kernels.terngrad import terngrad_encode, terngrad_nbits
from simdist.rng import draw_keys, stream_words

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

# SplitMix64 wraps uint64 products on purpose, and the float32 cast of a float64 beyond the range
# (flagged by the kernels) and Inf - Inf in the clipping statistics of Inf input warn under the simulator.
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

host = backend.to_host


def _matrix(n, d, dtype, seed, kind="normal"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-3, 3, size=(n, 1)))
    if kind == "zeros":  # a zero row (+0.0 and -0.0) next to normal rows
        X[0] = 0.0
        X[0, ::3] = -0.0
    elif kind == "const":  # constant buckets: std 0, so no clipping; one side of 1-bit empty
        X[:] = -0.75
    elif kind == "heavy":  # a few outliers: clipping bites
        X[:, ::7] *= 50.0
    elif kind == "positive":  # no negatives: avg- is an empty side
        X = np.abs(X)
    return np.ascontiguousarray(X.astype(dtype))


def _gens(n):
    return [np.random.default_rng(300 + i) for i in range(n)]


GPU = {"terngrad": (compress_terngrad, decompress_terngrad), "onebit": (compress_onebit, decompress_onebit)}


def _check(c, X, **params):
    """GPU bytes, offsets, lengths and decoded values of compressor ``c`` equal the CPU path's."""
    n, d = X.shape
    compress, decompress = GPU[c.name]
    if c.needs_rng:
        ref = c.compress_batch(X, _gens(n))
        buf, offsets, nbits = compress(X, draw_keys(_gens(n), n), **params)
    else:
        ref = c.compress_batch(X)
        buf, offsets, nbits = compress(X, **params)
    np.testing.assert_array_equal(host(buf), ref.buffer)
    np.testing.assert_array_equal(offsets, ref.offsets)
    np.testing.assert_array_equal(nbits, ref.nbits)
    Y, got_bits = decompress(buf, offsets, d, X.dtype, bucket=params["bucket"], return_nbits=True)
    Y = host(Y)
    assert Y.dtype == X.dtype
    np.testing.assert_array_equal(Y, c.decompress_batch(ref))
    np.testing.assert_array_equal(got_bits, ref.nbits)
    return Y


def _check_terngrad(X, clip=None, bucket=None):
    return _check(TernGrad(clip=clip, bucket=bucket), X, clip=clip, bucket=bucket)


def _check_onebit(X, bucket=None):
    return _check(OneBit(bucket=bucket), X, bucket=bucket)


# --- golden bytes (the CPU compressors' messages, written out) ---------------------------------------

X6 = np.array([[0.5, -1.0, 0.0, 2.0, -0.25, 1.0]], np.float32)


def test_golden_terngrad():
    keys = draw_keys([np.random.default_rng(3)], 1)
    buf, offsets, nbits = compress_terngrad(X6, keys, bucket=4)
    assert host(buf).tobytes().hex() == "400000003f8000006180"  # scales 2.0, 1.0; groups 97, 2<<6
    assert offsets.tolist() == [0, 10] and nbits.tolist() == [74]
    buf, _, _ = compress_terngrad(X6, keys, clip=1.0, bucket=4)  # bucket 0 clipped at std = 1.0825...
    assert host(buf).tobytes().hex() == "3f8a90673f2000006180"


def test_golden_onebit():  # the slide of Seide et al.: avg+ = 0.2, avg- = -0.2, signs + - + - +
    buf, offsets, nbits = compress_onebit(np.array([[0.1, -0.3, 0.5, -0.1, 0.0]], np.float32))
    assert host(buf).tobytes().hex() == "3e4ccccdbe4ccccd50"
    assert offsets.tolist() == [0, 9] and nbits.tolist() == [69]


# --- shapes ----------------------------------------------------------------------------------------

TERN_CASES = [  # (n, d, bucket, clip, dtype, kind)
    (1, 1, None, None, np.float32, "normal"),    # d = 1: one partial group of 1 symbol
    (1, 1, None, 2.5, np.float64, "normal"),     # d = 1 with clipping: std 0, no clip
    (3, 37, 5, None, np.float32, "normal"),      # d mod 5 = 2, d mod bucket = 2
    (2, 103, None, 2.5, np.float64, "heavy"),    # whole-row bucket, clipping
    (3, 64, 8, 1.0, np.float32, "heavy"),        # d mod 5 = 4
    (3, 50, 7, 2.5, np.float32, "zeros"),        # a zero row: scale 0, all symbols 1
    (2, 40, 16, 1.5, np.float64, "const"),       # constant buckets are not clipped
    (2, 700, 256, None, np.float64, "normal"),   # several chunks per bucket (CHUNK = 256)
    (1, 4096, 1000, 2.0, np.float32, "heavy"),
]


@pytest.mark.parametrize("n,d,bucket,clip,dtype,kind", TERN_CASES)
def test_terngrad_bytes_and_values_match_cpu(n, d, bucket, clip, dtype, kind):
    _check_terngrad(_matrix(n, d, dtype, seed=5 * d + n, kind=kind), clip=clip, bucket=bucket)


ONEBIT_CASES = [  # (n, d, bucket, dtype, kind)
    (1, 1, None, np.float32, "normal"),          # d = 1: 64 + 1 bits
    (1, 1, 3, np.float64, "const"),              # one negative entry: avg+ is an empty side
    (3, 37, 5, np.float32, "normal"),            # d mod 8 = 5, d mod bucket = 2
    (2, 103, None, np.float64, "normal"),        # whole-row bucket
    (3, 50, 7, np.float32, "zeros"),             # a zero row (-0.0 counts as >= 0)
    (2, 40, 16, np.float64, "positive"),         # no negatives: avg- = +0.0
    (2, 64, 8, np.float32, "const"),             # all negative: avg+ = +0.0
    (2, 700, 300, np.float64, "normal"),         # several chunks per bucket in the decoder
    (1, 4096, None, np.float32, "normal"),
]


@pytest.mark.parametrize("n,d,bucket,dtype,kind", ONEBIT_CASES)
def test_onebit_bytes_and_values_match_cpu(n, d, bucket, dtype, kind):
    _check_onebit(_matrix(n, d, dtype, seed=3 * d + n, kind=kind), bucket=bucket)


def test_terngrad_clipping_changes_the_message():
    """The clipped case is really exercised: the scales differ from the unclipped ones."""
    X = _matrix(2, 64, np.float32, seed=9, kind="heavy")
    a = _check_terngrad(X, clip=1.0, bucket=16)
    b = _check_terngrad(X, bucket=16)
    assert np.abs(a).max() < np.abs(b).max()


# The 1-bit averages are float64 sums in index order (the CPU's), rounded to float32: found by
# search, a bucket whose average changes with the order (reversed or pairwise sums give 0.12509157).
ORDER = np.array([2**-53, 2**-24, 1.0, 2**-12, 2**-12, 2**-54, 2**-12, 2**-53])


def test_onebit_sums_in_index_order():
    X = np.concatenate([ORDER, -ORDER[::-1]])[None, :]  # bucket 1 holds the same values in reverse
    Y = _check_onebit(X, bucket=8)
    forward = np.float32(sum(ORDER.tolist(), 0.0) / 8)
    backward = np.float32(sum(ORDER[::-1].tolist(), 0.0) / 8)
    assert forward != backward  # the order is visible here
    assert Y[0, 0] == forward and Y[0, 8] == -backward


# The TernGrad clipping threshold uses float64 sums in index order (the CPU's): found by search, a
# bucket and a clip whose threshold is exactly a float32 in index order but a float64 ulp or more
# above it when either sum (the mean's, the squares') runs backwards, where the rounded-up scale
# would be the next float32.
CLIP_ORDER = np.array([[40.0, 2.1208608814049512e-05, 3.110139257245237e-09, 4.542259921436198e-05,
                        0.14745894074440002, -5.182178020035622e-10]], np.float32)
CLIP_C = 0.9999999950162313


def _threshold(g, clip, back1=False, back2=False):
    s1 = 0.0
    for v in g[::-1] if back1 else g:
        s1 += v
    mean = s1 / g.size
    s2 = 0.0
    for v in g[::-1] if back2 else g:
        s2 += (v - mean) * (v - mean)
    return clip * np.sqrt(s2 / g.size)


def test_terngrad_clip_sums_in_index_order():
    g = CLIP_ORDER[0].astype(np.float64)
    forward = _threshold(g, CLIP_C)
    assert np.float32(forward) == forward
    for back1, back2 in [(True, False), (False, True), (True, True)]:  # the order is visible here
        assert _threshold(g, CLIP_C, back1, back2) > forward
    Y = _check_terngrad(CLIP_ORDER, clip=CLIP_C)
    assert Y[0, 0] == forward  # entry 0 is clipped to the threshold: p = 1, so it is sent as +scale


def test_onebit_avg_minus_flushed_to_minus_zero():
    """float64 negatives below the float32 range: avg- is -0.0 on the wire (sign bit set), as on the CPU."""
    X = np.array([[1.0, -1e-300, 2.0, -3e-310]])
    buf, _, _ = compress_onebit(X)
    assert host(buf)[4:8].tobytes().hex() == "80000000"
    Y = _check_onebit(X)
    assert np.signbit(Y[0, 1]) and Y[0, 1] == 0.0


def _key_for(j, word):
    """A row key whose stream word j is ``word`` (inverting SplitMix64's bijective finalizer)."""
    M = 2**64

    def unshift(y, s):
        x = y
        for _ in range(64 // s + 1):
            x = y ^ (x >> s)
        return x

    z = word << 32
    z = unshift(z, 31) * pow(0x94D049BB133111EB, -1, M) % M
    z = unshift(z, 27) * pow(0xBF58476D1CE4E5B9, -1, M) % M
    z = unshift(z, 30)
    return (z - (j + 1) * 0x9E3779B97F4A7C15) % M


def test_terngrad_event_is_strict():
    """b = [u < p]: u = p exactly (0.5, and 0 for a zero entry) is no event, u just below p is one."""
    X = np.tile(np.array([0.5, 1.0, 0.0], np.float32), (3, 1))  # scale 1.0: p = 0.5, 1, 0
    keys = np.array([_key_for(0, 2**31), _key_for(2, 0), _key_for(0, 2**31 - 1)], np.uint64)
    assert stream_words(keys[:1], 1)[0, 0] == 2**31 and stream_words(keys[1:2], 3)[0, 2] == 0
    buf, offsets, _ = compress_terngrad(X, keys)
    Y = host(decompress_terngrad(buf, offsets, 3))
    assert Y[0, 0] == 0.0 and Y[1, 2] == 0.0 and Y[2, 0] == 1.0
    cpu = np.zeros(3 * 5, np.uint8)  # the CPU kernel, with the same keys
    terngrad_encode(X, keys, 3, 0.0, cpu, 5, np.zeros((3, 1), np.float32))
    np.testing.assert_array_equal(host(buf), cpu)


def test_one_vector_is_one_row_and_device_keys():
    x = _matrix(1, 30, np.float64, seed=2)[0]
    keys = draw_keys([np.random.default_rng(5)], 1)
    buf, _, _ = compress_terngrad(x, cuda.to_device(keys), bucket=7)
    assert host(buf).tobytes() == TernGrad(bucket=7).compress(x, np.random.default_rng(5)).to_bytes()
    buf, _, _ = compress_onebit(x, bucket=7)
    assert host(buf).tobytes() == OneBit(bucket=7).compress(x).to_bytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_raises(bad):
    X = _matrix(2, 30, np.float32, seed=4)
    X[1, 17] = bad
    with pytest.raises(NonFiniteInput):
        compress_terngrad(X, draw_keys(_gens(2), 2), bucket=8)
    with pytest.raises(NonFiniteInput):
        compress_terngrad(X, draw_keys(_gens(2), 2), clip=2.5)
    with pytest.raises(NonFiniteInput):
        compress_onebit(X, bucket=8)


def test_overflow_and_bad_parameters():
    big = np.array([[1.0, 1e300, -2.0, -1e300]])  # float64 beyond float32: the CPU path's ValueError
    with pytest.raises(ValueError, match="float32 range"):
        compress_terngrad(big, draw_keys(_gens(1), 1))
    with pytest.raises(ValueError, match="float32 range"):
        compress_onebit(big)
    with pytest.raises(ValueError, match="float32 range"):
        TernGrad().compress_batch(big, _gens(1))  # (the CPU path agrees)
    X = np.ones((2, 4), np.float32)
    keys = draw_keys(_gens(2), 2)
    with pytest.raises(ValueError, match="clip"):
        compress_terngrad(X, keys, clip=0.0)
    with pytest.raises(ValueError, match="bucket"):
        compress_terngrad(X, keys, bucket=0)
    with pytest.raises(ValueError, match="keys"):
        compress_terngrad(X, keys[:1])
    with pytest.raises(ValueError, match="bucket"):
        compress_onebit(X, bucket=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        compress_onebit(X.astype(np.int32))
    with pytest.raises(TypeError, match="dtype"):
        decompress_onebit(np.zeros(9, np.uint8), np.array([0, 9]), 5, np.int32)


def test_function_codec_shapes():
    """The functions fit :class:`simdist.gpu.dispatch.FunctionCodec` (how the lead registers them)."""
    X = _matrix(2, 23, np.float32, seed=1, kind="heavy")
    t = TernGrad(clip=2.5, bucket=6)
    codec = FunctionCodec(compress_terngrad, decompress_terngrad, params=lambda c: {"clip": c.clip, "bucket": c.bucket},
                          decode_params=lambda c: {"bucket": c.bucket}, rowbits=lambda c, d: terngrad_nbits(d, c._b(d)))
    buf, offsets, nbits = codec.encode(t, X, draw_keys(_gens(2), 2))
    Y, got = codec.decode(t, buf, offsets, 23, np.float32)
    np.testing.assert_array_equal(host(Y), t.decompress_batch(t.compress_batch(X, _gens(2))))
    np.testing.assert_array_equal(got, nbits)
    o = OneBit(bucket=6)
    codec = FunctionCodec(compress_onebit, decompress_onebit, params=lambda c: {"bucket": c.bucket},
                          rowbits=lambda c, d: c._nbits(d))
    buf, offsets, nbits = codec.encode(o, X, None)
    Y, got = codec.decode(o, buf, offsets, 23, np.float32)
    np.testing.assert_array_equal(host(Y), o.decompress_batch(o.compress_batch(X)))
    np.testing.assert_array_equal(got, nbits)


# --- the decoders: malformed messages ------------------------------------------------------------------


def _tern_message():  # d = 6, bucket 4: scales at bytes 0-3 and 4-7, group byte 8, a 2-bit group in byte 9
    return np.array(TernGrad(bucket=4).compress_batch(X6, _gens(1)).buffer)


def _one_message(x=(0.1, -0.3, 0.5, -0.1, 0.0)):  # d = 5: avg+ bytes 0-3, avg- 4-7, signs in byte 8
    return np.array(OneBit().compress_batch(np.array([x], np.float32)).buffer)


def _set(data, at, hexbytes):
    data = data.copy()
    raw = bytes.fromhex(hexbytes)
    data[at : at + len(raw)] = np.frombuffer(raw, np.uint8)
    return data


def _cut(a):
    return a[:-1]


def _extra(a):
    return np.append(a, np.uint8(0))


def _pad(a):
    return np.concatenate([a[:-1], a[-1:] | np.uint8(1)])


@pytest.mark.parametrize("edit,match", [
    (_cut, "truncated"),
    (_extra, "trailing"),
    (_pad, "trailing"),                                     # a padding bit
    (lambda a: _set(a, 0, "7fc00000"), "non-finite"),       # a NaN scale
    (lambda a: _set(a, 4, "ff800000"), "non-finite"),       # -inf
    (lambda a: _set(a, 4, "bf800000"), "out of range"),     # a negative scale
    (lambda a: _set(a, 8, "f3"), "out of range"),           # a full group of value 243
    (lambda a: _set(a, 9, "c0"), "out of range"),           # a 1-symbol group of value 3
])
def test_terngrad_decoder_rejects(edit, match):
    data = _tern_message()
    decompress_terngrad(data, np.array([0, data.size]), 6, bucket=4)
    bad = edit(data)
    with pytest.raises(DecodeError, match=match):
        TernGrad(bucket=4)._decode_checked(bad, np.array([0, bad.size]), 6, np.float32, None)  # the CPU agrees
    with pytest.raises(DecodeError, match=match):
        decompress_terngrad(bad, np.array([0, bad.size]), 6, bucket=4)
    two = np.concatenate([data, bad])  # the bad message as the second row
    with pytest.raises(DecodeError, match=match):
        decompress_terngrad(two, np.array([0, data.size, two.size]), 6, bucket=4)


POSITIVE = (0.1, 0.3, 0.5, 0.1, 0.0)
NEGATIVE = (-0.1, -0.3, -0.5, -0.1, -0.2)


@pytest.mark.parametrize("x,edit,match", [
    (None, _cut, "truncated"),
    (None, _extra, "trailing"),
    (None, _pad, "trailing"),
    (None, lambda a: _set(a, 0, "7f800000"), "non-finite"),   # avg+ = inf
    (None, lambda a: _set(a, 4, "ffc00000"), "non-finite"),   # avg- = NaN
    (None, lambda a: _set(a, 0, "be000000"), "out of range"), # avg+ < 0
    (None, lambda a: _set(a, 0, "80000000"), "out of range"), # avg+ = -0.0
    (None, lambda a: _set(a, 4, "3e000000"), "out of range"), # avg- > 0
    (POSITIVE, lambda a: _set(a, 4, "bf800000"), "out of range"),  # avg- nonzero, no negatives
    (POSITIVE, lambda a: _set(a, 4, "80000000"), "out of range"),  # avg- = -0.0, no negatives
    (NEGATIVE, lambda a: _set(a, 0, "3f800000"), "out of range"),  # avg+ nonzero, no entries >= 0
])
def test_onebit_decoder_rejects(x, edit, match):
    data = _one_message() if x is None else _one_message(x)
    decompress_onebit(data, np.array([0, data.size]), 5)
    bad = edit(data)
    with pytest.raises(DecodeError, match=match):
        OneBit()._decode_checked(bad, np.array([0, bad.size]), 5, np.float32, None)  # the CPU agrees
    with pytest.raises(DecodeError, match=match):
        decompress_onebit(bad, np.array([0, bad.size]), 5)
    two = np.concatenate([data, bad])
    with pytest.raises(DecodeError, match=match):
        decompress_onebit(two, np.array([0, data.size, two.size]), 5)


def test_decoders_accept_what_the_cpu_accepts_at_the_edges():
    """avg- = -0.0 with negatives present and a zero TernGrad scale with +-s symbols decode (as on the CPU)."""
    data = _set(_one_message(), 4, "80000000")
    want = OneBit()._decode_checked(data, np.array([0, 9]), 5, np.float64, None)[0]
    got = host(decompress_onebit(data, np.array([0, 9]), 5, np.float64))
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[0, 1]) and got[0, 1] == 0.0
    data = _set(_tern_message(), 0, "00000000")
    want = TernGrad(bucket=4)._decode_checked(data, np.array([0, 10]), 6, np.float32, None)[0]
    got = host(decompress_terngrad(data, np.array([0, 10]), 6, bucket=4))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # 0 * (t - 1) = -0.0 for t = 0


# --- fuzzing against the CPU decoders -------------------------------------------------------------------

CODECS = {
    "terngrad": (lambda b: TernGrad(bucket=b), decompress_terngrad, lambda d, b: terngrad_nbits(d, b)),
    "onebit": (lambda b: OneBit(bucket=b), decompress_onebit, lambda d, b: 64 * -(-d // b) + d),
}


def _agree(name, buf, d, bucket):
    """DecodeError exactly when the CPU decoder (with the trailing check) raises, else the same values."""
    make, decode, _ = CODECS[name]
    off = np.array([0, buf.size], np.int64)
    try:
        want, want_bits = make(bucket)._decode_checked(buf, off, d, np.float64, None)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode(buf, off, d, np.float64, bucket=bucket)
        return
    got, bits = decode(buf, off, d, np.float64, bucket=bucket, return_nbits=True)
    np.testing.assert_array_equal(host(got), want)
    np.testing.assert_array_equal(np.signbit(host(got)), np.signbit(want))
    np.testing.assert_array_equal(bits, want_bits)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data(), name=st.sampled_from(sorted(CODECS)), d=st.integers(1, 12),
       bucket=st.sampled_from([None, 1, 2, 3, 5]), slack=st.sampled_from([-1, 0, 0, 0, 1]))
def test_decoder_fuzz_agrees_with_cpu(draw, name, d, bucket, slack):
    """Random bytes of about the right length (so that most reach the value checks)."""
    b = d if bucket is None else min(bucket, d)
    size = max(1, ((CODECS[name][2](d, b) + 7) >> 3) + slack)
    buf = np.frombuffer(draw.draw(st.binary(min_size=size, max_size=size)), np.uint8).copy()
    _agree(name, buf, d, bucket)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data(), seed=st.integers(0, 999), name=st.sampled_from(sorted(CODECS)))
def test_decoder_mutations_agree_with_cpu(draw, seed, name):
    """A valid message truncated, with flipped bits or with appended bytes (tests/_mutations.py)."""
    X = _matrix(1, 23, np.float32, seed=seed)
    c = CODECS[name][0](4)
    msg = (c.compress_batch(X, _gens(1)) if c.needs_rng else c.compress_batch(X)).buffer
    _, msg = mutate(draw, bytearray(msg.tobytes()))
    _agree(name, np.frombuffer(bytes(msg), np.uint8).copy(), 23, 4)
