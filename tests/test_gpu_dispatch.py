"""The compressor API on device arrays (simdist.gpu.dispatch), under Numba's CUDA simulator.

``numba.cuda.to_device`` gives the simulator's device arrays, which ``is_device_array`` recognises:
compress/decompress of them must give the CPU path's exact bytes and values and stay "on the
device" (payload buffers and decoded arrays are device arrays). Sizes stay small (the simulator
runs one Python thread per CUDA thread). CuPy and torch CUDA inputs: tests/test_gpu_wiring_device.py.
"""

import subprocess
import sys

import numpy as np
import pytest
from numba import cuda

from simdist import DecodeError
from simdist.compressors import make
from simdist.compressors.payload import PayloadBatch
from simdist.gpu import dispatch
from simdist.gpu.backend import is_device_array, to_host

if not cuda.is_available():
    pytest.skip("no CUDA GPU and the CUDA simulator is off (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

CONFIGS = [  # compressors with device codecs, as the registry matches them
    {"name": "sign"},
    {"name": "sign", "bucket": 7},
    {"name": "sign", "scaled": False},
    {"name": "qsgd", "s": 4, "bucket": 16, "encoding": "fixed"},
    {"name": "qsgd", "s": 3, "norm": "max", "encoding": "fixed"},
    {"name": "qsgd", "s": 4, "bucket": 16},  # Elias (the default encoding)
    {"name": "qsgd", "s": 2, "norm": "max"},
    {"name": "topk", "k": 3},
    {"name": "topk", "ratio": 0.25},
    {"name": "terngrad"},
    {"name": "terngrad", "clip": 2.5, "bucket": 8},
    {"name": "onebit"},
    {"name": "onebit", "bucket": 5},
]


def _gens(n, base=10):
    return [np.random.default_rng(base + i) for i in range(n)]


def _matrix(n, d, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# --- the registry ------------------------------------------------------------------------------------


def test_registry_lists_and_matches_configs():
    assert {"qsgd (encoding='fixed')", "qsgd (encoding='elias')", "sign", "topk", "terngrad", "onebit"} <= set(
        dispatch.available())
    assert dispatch.codec_for(make("sign")) is not None
    fixed, elias = dispatch.codec_for(make("qsgd", encoding="fixed")), dispatch.codec_for(make("qsgd"))
    assert fixed is not None and elias is not None and fixed is not elias  # the config picks the codec
    assert dispatch.codec_for(make("topk", k=2)) is not None
    assert dispatch.codec_for(make("randk", k=2)) is None


def test_register_is_one_call_and_checks_the_codec(monkeypatch):
    monkeypatch.setattr(dispatch, "_CODECS", {k: list(v) for k, v in dispatch._CODECS.items()})
    with pytest.raises(TypeError, match="encode"):
        dispatch.register("topk", object())
    calls = []

    class Fake:
        def encode(self, c, X, keys):
            calls.append(("encode", keys))
            return dispatch.codec_for(make("sign")).encode(make("sign"), X, None)

        def decode(self, c, buffer, offsets, d, dtype):
            return dispatch.codec_for(make("sign")).decode(make("sign"), buffer, offsets, d, dtype)

    dispatch.register("threshold", Fake(), when=lambda c: True, note="any config")
    assert "threshold (any config)" in dispatch.available()
    X = _matrix(2, 9, np.float32)
    batch = make("threshold", tau=0.5).compress_batch(cuda.to_device(X))
    assert calls == [("encode", None)] and is_device_array(batch.buffer)  # deterministic: no keys drawn


def test_compressor_without_codec_names_the_ones_with():
    X = cuda.to_device(_matrix(2, 8, np.float32))
    for c in (make("randk", k=2), make("nuqsgd", s=4)):
        with pytest.raises(TypeError, match="no GPU codec") as info:
            c.compress_batch(X, _gens(2))
        assert str(c) in str(info.value) and "sign" in str(info.value) and "encoding='fixed'" in str(info.value)


# --- compress / decompress on device arrays ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: str(sorted(c.items())))
def test_batch_round_trip_matches_cpu_and_stays_on_device(cfg, dtype):
    c = make(dict(cfg))
    X = _matrix(3, 37, dtype, seed=len(str(cfg)))
    ref = c.compress_batch(X, _gens(3))
    batch = c.compress_batch(cuda.to_device(X), _gens(3))
    assert is_device_array(batch.buffer) and (batch.dim, batch.dtype, batch.codec) == (37, np.dtype(dtype), c.name)
    np.testing.assert_array_equal(to_host(batch.buffer), ref.buffer)
    np.testing.assert_array_equal(batch.offsets, ref.offsets)
    np.testing.assert_array_equal(batch.nbits, ref.nbits)
    Y = c.decompress_batch(batch)
    assert is_device_array(Y) and Y.shape == (3, 37) and Y.dtype == dtype
    np.testing.assert_array_equal(to_host(Y), c.decompress_batch(ref))
    for i in range(3):  # rows: payload views of the device buffer, bytes copied to the host on demand
        assert batch[i].to_bytes() == ref[i].to_bytes() and batch[i].nbits == ref[i].nbits


def test_one_generator_derives_the_same_keys_as_the_cpu():
    c = make("qsgd", s=2, encoding="fixed")
    X = _matrix(4, 20, np.float64, seed=3)
    ref = c.compress_batch(X, np.random.default_rng(5))
    got = c.compress_batch(cuda.to_device(X), np.random.default_rng(5))
    np.testing.assert_array_equal(to_host(got.buffer), ref.buffer)


@pytest.mark.parametrize("cfg", CONFIGS[::2], ids=lambda c: c["name"] + str(len(c)))
def test_vector_round_trip_and_out(cfg):
    c = make(dict(cfg))
    x = _matrix(1, 29, np.float32, seed=7)[0]
    ref = c.compress(x, np.random.default_rng(1))
    p = c.compress(cuda.to_device(x), np.random.default_rng(1))
    assert is_device_array(p.data) and p.nbits == ref.nbits and p.to_bytes() == ref.to_bytes()
    y = c.decompress(p)
    assert is_device_array(y) and y.shape == (29,)
    np.testing.assert_array_equal(to_host(y), c.decompress(ref))
    out = cuda.device_array(29, np.float32)
    assert c.decompress(p, out=out) is out
    np.testing.assert_array_equal(out.copy_to_host(), c.decompress(ref))
    OUT = cuda.device_array((1, 29), np.float32)
    batch = PayloadBatch(p.data, np.array([0, p.nbytes]), np.array([p.nbits]), 29, np.float32, c.name)
    assert c.decompress_batch(batch, out=OUT) is OUT
    np.testing.assert_array_equal(OUT.copy_to_host()[0], c.decompress(ref))


def test_out_must_be_a_device_array_of_the_right_shape_and_dtype():
    c = make("sign")
    p = c.compress(cuda.to_device(np.ones(10, np.float32)))
    with pytest.raises(TypeError, match="device array"):
        c.decompress(p, out=np.empty(10, np.float32))
    with pytest.raises(ValueError, match="shape"):
        c.decompress(p, out=cuda.device_array(11, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        c.decompress(p, out=cuda.device_array(10, np.float64))


# --- input checks: the host path's errors, without copying the input -----------------------------------


def test_device_input_checks():
    c = make("sign")
    with pytest.raises(TypeError, match="float32 or float64"):
        c.compress(cuda.to_device(np.ones(4, np.int64)))
    with pytest.raises(ValueError, match="1-D"):
        c.compress(cuda.to_device(np.ones((2, 4))))
    with pytest.raises(ValueError, match="2-D"):
        c.compress_batch(cuda.to_device(np.ones(4)))
    with pytest.raises(ValueError, match="non-empty"):
        c.compress_batch(cuda.to_device(np.ones((2, 0))))
    with pytest.raises(TypeError, match="randomized"):
        make("qsgd", encoding="fixed").compress_batch(cuda.to_device(np.ones((2, 4))))


@pytest.mark.parametrize("cfg", [{"name": "sign", "bucket": 4}, {"name": "qsgd", "encoding": "fixed"}])
def test_nonfinite_and_overflow_errors_name_the_input(cfg):
    c = make(dict(cfg))
    X = _matrix(2, 12, np.float64)
    X[1, 5] = np.nan
    with pytest.raises(ValueError) as cpu:
        c.compress_batch(X, _gens(2))
    with pytest.raises(ValueError) as dev:
        c.compress_batch(cuda.to_device(X), _gens(2))
    assert str(dev.value) == str(cpu.value) and "flat index 17" in str(dev.value)
    with pytest.raises(ValueError, match="float32 range"):
        c.compress(cuda.to_device(np.full(4, 1e300)), np.random.default_rng(0))


# --- decoding malformed device payloads ---------------------------------------------------------------


def _device_batch(c, X, buf=None, nbits=None):
    ref = c.compress_batch(X, _gens(X.shape[0]))
    data = np.array(ref.buffer) if buf is None else buf
    return ref, PayloadBatch(cuda.to_device(data), ref.offsets, ref.nbits if nbits is None else nbits,
                             ref.dim, ref.dtype, c.name)


@pytest.mark.parametrize("cfg", [{"name": "sign"}, {"name": "qsgd", "s": 2, "encoding": "fixed"}])
def test_padding_bits_and_declared_lengths_are_checked_like_the_cpu(cfg):
    c = make(dict(cfg))
    X = _matrix(2, 13, np.float32, seed=2)
    ref, _ = _device_batch(c, X)
    assert ref.nbits[0] % 8 != 0  # the last byte of each row has padding bits
    bad = np.array(ref.buffer)
    bad[ref.offsets[2] - 1] |= 1  # a padding bit of row 1
    for cpu_batch, dev_batch in [
        (PayloadBatch(bad, ref.offsets, ref.nbits, 13, np.float32, c.name), _device_batch(c, X, buf=bad)[1]),
        (PayloadBatch(ref.buffer, ref.offsets, ref.nbits - 1, 13, np.float32, c.name),
         _device_batch(c, X, nbits=ref.nbits - 1)[1]),
    ]:
        with pytest.raises(DecodeError) as cpu:
            c.decompress_batch(cpu_batch)
        with pytest.raises(DecodeError) as dev:
            c.decompress_batch(dev_batch)
        assert str(dev.value) == str(cpu.value)


def test_wrong_codec_and_truncated_device_payloads():
    c = make("sign")
    X = _matrix(1, 20, np.float32)
    _, dev = _device_batch(c, X)
    with pytest.raises(ValueError, match="written by 'sign'"):
        make("qsgd", encoding="fixed").decompress_batch(dev)
    ref = c.compress_batch(X)
    short = PayloadBatch(cuda.to_device(np.array(ref.buffer[:-1])), np.array([0, ref.offsets[1] - 1]), ref.nbits,
                         20, np.float32, "sign")
    with pytest.raises(DecodeError, match="truncated"):
        c.decompress_batch(short)


def test_host_path_does_not_load_the_gpu_modules():
    """NumPy in, NumPy out: compress/decompress never import numba.cuda or the dispatch module."""
    code = ("import sys, numpy as np; from simdist.compressors import make; c = make('sign'); "
            "c.decompress(c.compress(np.ones(8, np.float32))); "
            "print(sorted(m for m in sys.modules if m.startswith(('numba.cuda', 'simdist.gpu.dispatch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
