"""Index coding (simdist.coding.indices): format, mode choice, round trips, rejection, fuzz."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from simdist import DecodeError
from simdist.coding import BitReader
from simdist.coding.bitio import get_bits
from simdist.coding.elias import delta_len, delta_str, omega_str
from simdist.coding.indices import (
    MAX_DIM,
    decode_indices,
    delta_code,
    encode_indices,
    fixed_width,
    index_code_length,
    sink_close,
    sink_open,
    sink_put,
    source_delta,
    source_get,
    source_open,
)
from simdist.reference.sparse import ref_decode_indices, ref_encode_indices, ref_index_bits


@st.composite
def index_sets(draw, max_d=5000):
    d = draw(st.integers(1, max_d))
    density = draw(st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(rng.random(d) < density)
    return idx, d


def _mode(data: bytes, k: int) -> int:
    r = BitReader(data)
    r.read(len(omega_str(k + 1)))
    return r.read(1)


# --- golden bytes and the format -------------------------------------------------------------


def test_golden_bytes_gap_mode():
    # omega(4) = 101000, mode 0, delta(4) = 01100, delta(6) = 01110, delta(1) = 1,
    # end gap delta(16 - 10 = 6) = 01110 -> 23 bits
    data, nbits = encode_indices(np.array([3, 9, 10]), 16)
    assert (data.hex(), nbits) == ("a0c75c", 23)


def test_golden_bytes_fixed_mode():
    # omega(3) = 110, mode 1, 2-bit indices 01, 11 (gaps would take 8 bits, fixed 4), end gap delta(1) = 1
    data, nbits = encode_indices(np.array([1, 3]), 4)
    assert (data.hex(), nbits) == ("d780", 9)


def test_empty_set_and_d1():
    # omega(1) = 0, end gap delta(7 + 1) = 00100 000
    assert encode_indices(np.array([], dtype=np.int64), 7) == (b"\x10\x00", 9)
    assert decode_indices(b"\x10\x00", 7).tolist() == []
    # d = 1: fixed width 0; omega(2) = 100, mode bit 1, no index bits, end gap delta(1) = 1
    assert encode_indices(np.array([0]), 1) == (b"\x98", 5)
    assert decode_indices(b"\x98", 1).tolist() == [0]


def test_the_block_determines_d():
    rng = np.random.default_rng(0)
    for d in (1, 2, 7, 100, 1000, 4096):
        for idx in (np.array([], np.int64), np.sort(rng.choice(d, max(1, d // 10), replace=False)), np.arange(d)):
            data, _ = encode_indices(idx, d)
            assert np.array_equal(decode_indices(data, d), idx)
            for wrong in {d - 1, d + 1, 2 * d + 9, d // 2} - {0, d}:
                with pytest.raises(DecodeError):
                    decode_indices(data, wrong)


def test_fixed_width_is_ceil_log2():
    expected = {1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 8: 3, 9: 4, 1000: 10, 1024: 10, 1025: 11, MAX_DIM: 31}
    assert {d: fixed_width(d) for d in expected} == expected


@settings(max_examples=150, deadline=None)
@given(index_sets())
def test_kernel_equals_reference_and_round_trips(case):
    idx, d = case
    data, nbits = encode_indices(idx, d)
    assert (data, nbits) == ref_encode_indices(idx, d)
    assert nbits == index_code_length(idx, d) == len(ref_index_bits(idx, d))
    assert np.array_equal(decode_indices(data, d), idx)
    assert ref_decode_indices(data, d) == idx.tolist()


@settings(max_examples=150, deadline=None)
@given(index_sets())
def test_picks_the_shorter_mode(case):
    idx, d = case
    k = idx.size
    data, nbits = encode_indices(idx, d)
    head = len(omega_str(k + 1)) + len(delta_str(int(d - (idx[-1] if k else -1))))
    if k == 0:
        assert nbits == head
        return
    gaps = sum(delta_len(int(g)) for g in np.diff(np.concatenate([[-1], idx])))
    fixed = k * fixed_width(d)
    assert nbits == head + 1 + min(gaps, fixed)
    assert _mode(data, k) == (0 if gaps < fixed else 1)


def test_both_modes_are_exercised():
    rng = np.random.default_rng(0)
    d = 1 << 16
    sparse = np.sort(rng.choice(d, 50, replace=False))  # gaps ~ 1300: delta ~ 15 bits < 16
    dense = np.arange(0, d, 2)  # gaps of 2: 4 bits each < 16
    clustered = np.sort(rng.choice(d, 3, replace=False))
    assert _mode(encode_indices(sparse, d)[0], sparse.size) == 0
    assert _mode(encode_indices(dense, d)[0], dense.size) == 0
    # a few indices far apart: with fixed width 16 and first gap ~ 2**15, delta needs 23 bits
    far = np.array([40000, 65535])
    assert _mode(encode_indices(far, d)[0], 2) == 1
    for idx in (sparse, dense, clustered, far):
        assert np.array_equal(decode_indices(encode_indices(idx, d)[0], d), idx)


# --- rejection ------------------------------------------------------------------------------


def _bits_to_bytes(bits: str) -> bytes:
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def test_rejects_index_out_of_range_and_non_increasing():
    d = 8
    # fixed mode: index 9 >= 8 impossible in 3 bits, so use d = 6 (3-bit indices, 6 and 7 invalid)
    bad_range = omega_str(2) + "1" + "110" + delta_str(1)
    with pytest.raises(DecodeError, match="out of range"):
        decode_indices(_bits_to_bytes(bad_range), 6)
    non_increasing = omega_str(3) + "1" + "011" + "011" + delta_str(5)
    with pytest.raises(DecodeError, match="out of range"):
        decode_indices(_bits_to_bytes(non_increasing), d)
    assert decode_indices(_bits_to_bytes(omega_str(3) + "1" + "011" + "100" + delta_str(4)), d).tolist() == [3, 4]
    # gap mode: gaps 5 and 4 reach index 8 >= d
    past_end = omega_str(3) + "0" + delta_str(5) + delta_str(4) + delta_str(1)
    with pytest.raises(DecodeError, match="out of range"):
        decode_indices(_bits_to_bytes(past_end), d)
    # a gap code announcing a value >= 2**31
    huge = omega_str(2) + "0" + "00000" + "1" + "00000" + "0" * 40
    with pytest.raises(DecodeError):
        decode_indices(_bits_to_bytes(huge), d)


def test_rejects_count_above_d_truncation_and_trailing_data():
    with pytest.raises(DecodeError, match="count"):
        decode_indices(_bits_to_bytes(omega_str(10) + "1" + "0" * 40), 8)
    # an end gap that does not reach d
    with pytest.raises(DecodeError, match="inconsistent header"):
        decode_indices(_bits_to_bytes(omega_str(2) + "1" + "011" + delta_str(4)), 8)
    data, nbits = encode_indices(np.array([1, 5, 7, 100]), 1000)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_indices(data[:cut], 1000)
    with pytest.raises(DecodeError, match="trailing"):
        decode_indices(data + b"\x00", 1000)
    if nbits % 8:
        flipped = bytearray(data)
        flipped[-1] |= 1  # a padding bit set
        with pytest.raises(DecodeError, match="trailing"):
            decode_indices(bytes(flipped), 1000)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="idx"):
        encode_indices(np.array([3, 2]), 8)
    with pytest.raises(ValueError, match="idx"):
        encode_indices(np.array([1, 1]), 8)
    with pytest.raises(ValueError, match="idx"):
        encode_indices(np.array([8]), 8)
    with pytest.raises(ValueError, match="idx"):
        encode_indices(np.array([-1]), 8)
    with pytest.raises(TypeError, match="idx"):
        encode_indices(np.array([0.5]), 8)
    with pytest.raises(ValueError, match="d must be in"):
        encode_indices(np.array([0]), 0)
    with pytest.raises(ValueError, match="d must be in"):
        decode_indices(b"\x00", MAX_DIM + 1)


# --- fuzz -----------------------------------------------------------------------------------


def _check_decode(data: bytes, d: int) -> None:
    try:
        out = decode_indices(data, d)
    except DecodeError:
        try:
            ref_decode_indices(data, d)
        except DecodeError:
            return
        raise AssertionError(f"kernel rejected what the reference accepts: {data.hex()}")
    assert out.ndim == 1 and out.size <= d
    assert np.all(np.diff(out) > 0) and (out.size == 0 or (out[0] >= 0 and out[-1] < d))
    assert out.tolist() == ref_decode_indices(data, d)  # and it is what the reference reads


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 300))
def test_fuzz_random_bytes(data, d):
    _check_decode(data, d)


@settings(max_examples=200, deadline=None)
@given(index_sets(max_d=2000), st.integers(0, 2**32 - 1), st.sampled_from(["cut", "flip", "append"]))
def test_fuzz_mutations(case, seed, kind):
    idx, d = case
    data = bytearray(encode_indices(idx, d)[0])
    rng = np.random.default_rng(seed)
    if kind == "cut":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "flip":
        i = int(rng.integers(0, 8 * len(data)))
        data[i // 8] ^= 1 << (7 - i % 8)
    else:
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
    _check_decode(bytes(data), d)


# --- the Numba sequential reader/writer against bitio --------------------------------------


@njit(cache=True)
def _write_codes(values, widths):
    buf = np.zeros(8 * values.shape[0] + 8, np.uint8)
    bp, acc, nacc = sink_open(buf, 0)
    for j in range(values.shape[0]):
        bp, acc, nacc = sink_put(buf, bp, acc, nacc, values[j], widths[j])
    return buf, sink_close(buf, bp, acc, nacc)


@njit(cache=True)
def _read_codes(buf, limit, widths, start):
    out = np.empty(widths.shape[0], np.int64)
    bp, acc, nacc = source_open(buf, start, limit >> 3)
    for j in range(widths.shape[0]):
        v, bp, acc, nacc = source_get(buf, bp, acc, nacc, limit >> 3, widths[j])
        out[j] = v
    return out, bp * 8 - nacc


@njit(cache=True)
def _read_bits(buf, limit, widths, start):
    out = np.empty(widths.shape[0], np.int64)
    pos = start
    for j in range(widths.shape[0]):
        v, pos = get_bits(buf, limit, pos, widths[j])
        out[j] = v
    return out, pos


@njit(cache=True)
def _read_deltas(buf, limit, count):
    out = np.empty(count, np.int64)
    bp, acc, nacc = source_open(buf, 0, limit >> 3)
    for j in range(count):
        v, bp, acc, nacc = source_delta(buf, bp, acc, nacc, limit >> 3)
        out[j] = v
    return out


def test_sink_and_source_match_bitio():
    rng = np.random.default_rng(3)
    widths = rng.integers(0, 57, 500)
    values = np.array([int(rng.integers(0, 1 << int(w))) if w else 0 for w in widths], np.int64)
    buf, nbits = _write_codes(values, widths)
    assert nbits == widths.sum()
    bits = "".join(format(int(v), "b").zfill(int(w)) if w else "" for v, w in zip(values, widths))
    assert bytes(buf[: (nbits + 7) // 8]) == _bits_to_bytes(bits)
    limit = 8 * ((nbits + 7) // 8)
    for start in (0, 3):
        shifted = _bits_to_bytes("1" * start + bits)
        b = np.frombuffer(shifted, np.uint8)
        lim = 8 * len(shifted)
        got, end = _read_codes(b, lim, widths, start)
        ref, ref_end = _read_bits(b, lim, widths, start)
        assert np.array_equal(got, ref) and np.array_equal(got, values) and end == ref_end
    assert limit >= nbits
    # past the end: -1 instead of reading out of bounds (16 bits available, 17 and 56 asked)
    two = np.array([0xAB, 0xCD], np.uint8)
    assert _read_codes(two, 16, np.array([16], np.int64), 0)[0][0] == 0xABCD
    assert _read_codes(two, 16, np.array([17], np.int64), 0)[0][0] == -1
    assert _read_codes(two, 16, np.array([56], np.int64), 0)[0][0] == -1
    assert _read_codes(two, 8, np.array([9], np.int64), 0)[0][0] == -1  # the limit, not the buffer


def test_delta_code_and_source_delta_match_elias():
    values = np.concatenate([np.arange(1, 300), 2 ** np.arange(31) - 1 + (2 ** np.arange(31) == 1), [2**31 - 1]])
    values = values[values >= 1].astype(np.int64)
    for v in values[:50]:
        code, n = delta_code(int(v))
        assert format(int(code), "b").zfill(int(n)) == delta_str(int(v))
    bits = "".join(delta_str(int(v)) for v in values)
    data = np.frombuffer(_bits_to_bytes(bits), np.uint8)
    assert np.array_equal(_read_deltas(data, 8 * data.size, values.size), values)
    # truncated final code (9 bits missing: more than the padding) -> -1, no read past the end
    short = np.frombuffer(_bits_to_bytes(delta_str(2**20 + 5)[:-9]), np.uint8)
    assert _read_deltas(short, 8 * short.size, 1)[0] == -1
