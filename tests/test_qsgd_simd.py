"""The AVX-512 parts of the QSGD codec against plain Python and against the scalar kernels, byte
for byte: the encoder's code stage (simdist.kernels.qsgd_simd) and the decoder's vector writes
(simdist.kernels.qsgd_simd_decode).

On a host without AVX-512 the code stage reports every bucket as "cannot code" and both kernels
take their scalar paths; the tests check that instead (CI's machines have AVX-512, so there they
test the SIMD code itself, and the reference tests in test_qsgd.py also run through it).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from simdist.coding.elias import omega_str
from simdist.kernels import qsgd_encode as QE
from simdist.kernels import qsgd_simd as S


@njit(cache=True)
def _run(lev, pos, lvo, ptop, pln, tab_g, tab_a):
    return S.bucket_codes(lev, lev.size // 16, pos, lvo, ptop, pln, tab_g, tab_a)


def _codes(lev: np.ndarray):
    n = lev.size
    pos = np.full(n + S.PAD + 1, -7, np.int32)  # garbage: the kernel must not rely on its contents
    lvo = np.full(n + S.PAD, 99, np.int32)
    ptop = np.zeros(n // 2 + S.PAD, np.uint64)
    pln = np.zeros(n // 2 + S.PAD, np.int32)
    c, bad, units = _run(lev, pos, lvo, ptop, pln, S.TAB_G, S.TAB_A)
    return int(c), int(bad), pos, ptop[:units], pln[:units]


def _bits(ptop, pln) -> str:
    """The units concatenated; each must be top-aligned, non-empty and at most 56 bits (the
    accumulator keeps <= 7 bits pending)."""
    assert all(0 < int(n) <= 56 and int(t) & ((1 << (64 - int(n))) - 1) == 0 for t, n in zip(ptop, pln))
    return "".join(format(int(t), "064b")[: int(n)] for t, n in zip(ptop, pln))


def _expected_bits(lev: np.ndarray) -> str:
    """omega(distance) . sign . omega(|level|) for each nonzero, as in simdist.reference.qsgd."""
    out, prev = [], 0
    for j in np.flatnonzero(lev):
        out.append(omega_str(int(j) + 1 - prev) + ("1" if lev[j] < 0 else "0") + omega_str(abs(int(lev[j]))))
        prev = int(j) + 1
    return "".join(out)


def test_tables_are_omega_codes():
    for tab in (S.TAB_G, S.TAB_A):
        assert tab[0] == 0
        for k in range(1, tab.size):
            code = omega_str(k)
            assert tab[k] & 0xFFFF == int(code, 2) and tab[k] >> 16 == len(code)


def test_available_matches_numbas_target_features(monkeypatch):
    import llvmlite.binding as llvm
    from numba.core import config

    if config.CPU_FEATURES is None:
        feats = llvm.get_host_cpu_features()
        assert S.AVAILABLE == bool(feats.get("avx512f") and feats.get("avx512bw"))
    monkeypatch.setattr(config, "CPU_FEATURES", "+sse2,+avx2")  # e.g. a portable build
    assert not {"avx512f", "avx512bw"} <= S._target_features()
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512f,-avx512bw")
    assert not {"avx512f", "avx512bw"} <= S._target_features()
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx512f,+avx512bw")
    assert {"avx512f", "avx512bw"} <= S._target_features()


@pytest.mark.parametrize("density,smax,seed", [(0.5, 16, 0), (0.9, 31, 1), (0.05, 3, 2), (1.0, 1, 3), (0.0, 1, 4),
                                              (0.3, 40, 5), (0.02, 2, 6)])
@pytest.mark.parametrize("n", [16, 64, 512, 1024])
def test_bucket_codes_equal_the_omega_codes(n, density, smax, seed):
    """The units, concatenated, are exactly the nonzeros' codes; buckets with a distance >= 64 or a
    level >= 32 are reported (bad != 0), and only those."""
    rng = np.random.default_rng(seed)
    lev = (rng.integers(1, smax + 1, n) * (rng.random(n) < density) * np.where(rng.random(n) < 0.5, -1, 1))
    lev = lev.astype(np.int32)
    c, bad, pos, ptop, pln = _codes(lev)
    nz = np.flatnonzero(lev)
    gaps = np.diff(np.concatenate([[0], nz + 1]))
    codable = bool(np.all(gaps < 64) and np.all(np.abs(lev) < 32))
    if not S.AVAILABLE:
        assert bad != 0
        return
    assert c == nz.size and (bad == 0) == codable
    assert pos[0] == 0 and np.array_equal(pos[1:c + 1], nz + 1)
    if codable:
        assert _bits(ptop, pln) == _expected_bits(lev)
        assert (c + 3) // 4 <= ptop.size <= (c + 1) // 2  # one unit per two to four codes


def test_bucket_codes_long_codes_stay_in_pairs():
    """Four long codes (distance ~40, level 31: 24 bits each) do not fit one unit: two pairs; short
    ones do: the units alternate, and the bits are still the codes in order."""
    lev = np.zeros(1024, np.int32)
    lev[39:520:40] = 31
    lev[520:560] = -1  # 40 short codes (distance 1, level 1: 3 bits)
    lev[600:1024:41] = -29
    c, bad, _, ptop, pln = _codes(lev)
    if not S.AVAILABLE:
        assert bad != 0
        return
    assert bad == 0 and c == np.count_nonzero(lev)
    assert _bits(ptop, pln) == _expected_bits(lev)
    assert int(pln.max()) == 48 and int(pln.min()) == 12  # pairs of long codes; four short codes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-31, 31), min_size=1, max_size=300), st.integers(0, 3))
def test_bucket_codes_any_levels(levels, zeros_every):
    lev = np.array(levels, np.int32)
    if zeros_every:
        lev[::zeros_every + 1] = 0
    lev = np.concatenate([lev, np.zeros(-lev.size % 16, np.int32)])
    c, bad, _, ptop, pln = _codes(lev)
    if not S.AVAILABLE or bad:
        assert not S.AVAILABLE or np.any(np.diff(np.concatenate([[0], np.flatnonzero(lev) + 1])) >= 64)
        return
    assert _bits(ptop, pln) == _expected_bits(lev)


CASES = list(itertools.product([1, 7, 513, 5000], [1, 64, 512, 2048], [1, 2, 16, 31, 32, 100], [np.float32, np.float64],
                               [False, True]))


@pytest.mark.parametrize("d,b,s,dtype,ef", CASES)
def test_encoder_simd_equals_scalar(monkeypatch, d, b, s, dtype, ef):
    """The whole encoder, SIMD code stage on and off: the same bytes, offsets, nbits and (with error
    feedback) the same memory. Rows mix dense buckets, long zero runs and large levels, so the
    SIMD stage and its scalar fallback both run."""
    rng = np.random.default_rng(d * 31 + b * 7 + s)
    X = (rng.standard_normal((3, d)) * np.where(rng.random((3, d)) < 0.1, 100, 1)).astype(dtype)
    X[1, : min(d, 150)] = 0
    keys = rng.integers(0, 2**63, 3, dtype=np.uint64)
    E0 = (rng.standard_normal((3, d)) * 0.1).astype(dtype)
    out = []
    for simd in (False, True):
        monkeypatch.setattr(QE, "_SIMD", [simd])
        E = E0.copy() if ef else None
        buf, off, nbits = QE.encode(X, keys, s, b, False, True, 0, E=E)
        out.append((buf.tobytes(), off.tolist(), nbits.tolist(), None if E is None else E.tobytes()))
    assert out[0] == out[1]


def test_encoder_picks_the_simd_kernel_on_avx512_hosts(monkeypatch):
    monkeypatch.setattr(QE, "_SIMD", [True])
    assert (QE._kernel(16, True) is QE._encode_kernel_simd) == S.AVAILABLE
    assert QE._kernel(16, False) is QE._encode_kernel_small  # fixed width: no code stage
    monkeypatch.setattr(QE, "_SIMD", [False])
    assert QE._kernel(16, True) is QE._encode_kernel_small and QE._kernel(40, True) is QE._encode_kernel


# --- the decoder's vector writes (simdist.kernels.qsgd_simd_decode) ------------------------------


def test_expand_table_matches_the_multi_table():
    """Each window's int8 levels and offset mask say what its multi-table entry says."""
    from simdist.kernels.qsgd_decode import SLOTS, multi_table
    from simdist.kernels.qsgd_simd_decode import expand_table

    for cap in (1, 16, 31):
        m, e = multi_table(cap), expand_table(cap)
        for w in np.random.default_rng(cap).integers(0, m.size, 400).tolist() + [0, m.size - 1]:
            mw, ew = int(m[w]), int(e[w]) & ((1 << 64) - 1)
            if mw & 15 == 0:
                assert ew == 0
                continue
            levels = [(mw >> 10) & 63] + [(mw >> (4 + 12 * k)) & 63 for k in range(1, SLOTS)]
            offs = [0] + [(mw >> (10 + 12 * k)) & 63 for k in range(1, SLOTS)]
            for k in range(SLOTS):
                byte = (ew >> (8 * k)) & 255
                assert byte - 256 * (byte >= 128) == (levels[k] ^ 32) - 32
            mask = (ew >> 32) & 0xFFFF
            assert mask == (sum(1 << o for o in set(offs)) if max(offs) < 16 else 0)


@pytest.mark.parametrize("d,b,s,dtype", list(itertools.product([1, 7, 100, 513, 5000], [1, 3, 64, 512, 2048],
                                                                 [1, 2, 16, 31, 32, 100], [np.float32, np.float64])))
def test_decoder_vector_writes_equal_scalar(monkeypatch, d, b, s, dtype):
    """The decoder with and without the vector writes: the same output, bit for bit (into a
    NaN-filled out=, so an entry left unwritten shows), and the same nbits."""
    from simdist.kernels import qsgd_decode as QD

    rng = np.random.default_rng(d * 13 + b * 5 + s)
    X = (rng.standard_normal((3, d)) * np.where(rng.random((3, d)) < 0.1, 100, 1)).astype(dtype)
    X[1, : min(d, 150)] = 0
    buf, off, _ = QE.encode(X, rng.integers(0, 2**63, 3, dtype=np.uint64), s, b, False, True, 0)
    out = []
    for simd in (False, True):
        monkeypatch.setattr(QD, "_SIMD", [simd])
        Y = np.full((3, d), np.nan, dtype)
        _, nbits = QD.decode(buf, off, d, s, b, True, 0, dtype, Y)
        out.append((Y.tobytes(), nbits.tolist()))
    assert out[0] == out[1]
    assert not np.isnan(np.frombuffer(out[1][0], dtype)).any()


def test_decoder_picks_the_vector_kernel_on_avx512_hosts(monkeypatch):
    from simdist.kernels import qsgd_decode as QD

    calls = []
    for name in ("_decode_kernel", "_decode_kernel_simd"):
        real = getattr(QD, name)
        monkeypatch.setattr(QD, name, lambda *a, _r=real, _n=name: (calls.append(_n), _r(*a))[1])
    x = np.linspace(-1, 1, 1000).reshape(1, -1)
    buf, off, _ = QE.encode(x, np.array([3], np.uint64), 16, 512, False, True, 0)
    QD.decode(buf, off, 1000, 16, 512, True, 0, np.float64)
    assert calls == (["_decode_kernel_simd"] if S.AVAILABLE else ["_decode_kernel"])


def test_portable_build_without_avx512(tmp_path):
    """With Numba targeting a generic x86-64 (NUMBA_CPU_NAME=generic: no AVX-512, as a portable
    cache or an older CPU would have), the SIMD stages are off, every QSGD kernel still compiles
    (no x86-only intrinsic is left in them), and the bytes and values are the reference's."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from simdist.compressors.qsgd import QSGD\n"
        "from simdist.kernels import qsgd_simd\n"
        "from simdist.reference import qsgd as ref\n"
        "from simdist.rng import batch_uniform_bits\n"
        "assert not qsgd_simd.AVAILABLE\n"
        "x = np.random.default_rng(0).standard_normal(3000).astype(np.float32)\n"
        "for s in (2, 16, 40):\n"
        "    c = QSGD(s=s, bucket=512)\n"
        "    p = c.compress(x, np.random.default_rng(1))\n"
        "    words = batch_uniform_bits([np.random.default_rng(1)], 1, x.size)[0]\n"
        "    data, nbits = ref.encode(x, words, s, 'l2', 512, 'elias')\n"
        "    assert p.to_bytes() == data and p.nbits == nbits, s\n"
        "    y, _ = ref.decode(data, x.size, s, 512, 'elias', np.float32)\n"
        "    assert np.array_equal(c.decompress(p), y), s\n"
        "print('ok')\n"
    )
    env = {**__import__("os").environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
