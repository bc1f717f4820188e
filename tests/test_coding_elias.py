"""Elias gamma/delta/omega codes: known lengths, the string references, golden bytes, fuzzing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdist import DecodeError
from simdist.coding import elias

CODES = ["gamma", "delta", "omega"]
REF = {"gamma": elias.gamma_str, "delta": elias.delta_str, "omega": elias.omega_str}


def test_omega_known_lengths():
    # QSGD Section 3.2 / the known values.
    values = [1, 2, 4, 8, 16, 100, 1000]
    assert elias.code_lengths("omega", np.array(values)).tolist() == [1, 3, 6, 7, 11, 13, 17]
    assert [len(elias.omega_str(v)) for v in values] == [1, 3, 6, 7, 11, 13, 17]


def test_reference_strings_textbook():
    assert elias.omega_str(1) == "0"
    assert elias.omega_str(2) == "100"
    assert elias.omega_str(16) == "10100100000"
    assert elias.gamma_str(1) == "1"
    assert elias.gamma_str(5) == "00101"
    assert elias.delta_str(1) == "1"
    assert elias.delta_str(10) == "00100010"


@pytest.mark.parametrize("code", CODES)
def test_golden_bytes(code):
    golden = {"gamma": ("a67007d0", 31), "delta": ("a2bc57a0", 30), "omega": ("4d773f40", 30)}
    data, nbits = elias.encode(code, np.array([1, 2, 3, 7, 1000]))
    assert (data.hex(), nbits) == golden[code]


@pytest.mark.parametrize("code", CODES)
def test_kernel_matches_reference(code):
    rng = np.random.default_rng(1)
    v = np.concatenate([np.arange(1, 600), rng.integers(1, elias.MAX_VALUE, 400), [elias.MAX_VALUE]])
    data, nbits = elias.encode(code, v)
    bits = "".join(REF[code](int(k)) for k in v)
    assert nbits == len(bits)
    padded = bits + "0" * (-len(bits) % 8)
    assert data == int(padded, 2).to_bytes(len(padded) // 8, "big")
    assert np.array_equal(elias.decode(code, data, v.size), v)
    assert np.array_equal(elias.code_lengths(code, v), [len(REF[code](int(k))) for k in v])


@pytest.mark.parametrize("code", CODES)
def test_decode_rejects_truncation_and_trailing(code):
    data, nbits = elias.encode(code, np.array([5, 77, 1000]))
    with pytest.raises(DecodeError):
        elias.decode(code, data[:-1], 3)
    with pytest.raises(DecodeError):
        elias.decode(code, data + b"\x00", 3)
    # asking for more values than the bytes hold: a 1-valued code fits in padding, 64 of them cannot
    with pytest.raises(DecodeError):
        elias.decode(code, data, 64)


def test_omega_overlong_prefix_is_malformed_not_a_hang():
    # '1' followed by ones keeps growing the group length; must stop with a clear error.
    with pytest.raises(DecodeError, match="malformed|truncated"):
        elias.decode("omega", b"\xff" * 64, 1)
    with pytest.raises(DecodeError, match="malformed|truncated"):
        elias.decode("gamma", b"\x00" * 64, 1)


def test_encode_rejects_bad_values():
    with pytest.raises(ValueError, match="values must be in"):
        elias.encode("omega", np.array([0]))
    with pytest.raises(TypeError, match="integer"):
        elias.encode("omega", np.array([1.5]))
    with pytest.raises(ValueError, match="code must be one of"):
        elias.encode("rice", np.array([1]))


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(CODES), data=st.binary(max_size=40), count=st.integers(0, 40))
def test_fuzz_decode_never_crashes(code, data, count):
    try:
        out = elias.decode(code, data, count)
    except DecodeError:
        return
    assert out.shape == (count,) and (out >= 1).all()
    # a successful decode re-encodes to the same bytes (the code is a bijection on valid messages)
    assert elias.encode(code, out)[0] == data


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(CODES), values=st.lists(st.integers(1, elias.MAX_VALUE), max_size=30))
def test_roundtrip_property(code, values):
    v = np.array(values, dtype=np.int64)
    data, nbits = elias.encode(code, v)
    assert len(data) == (nbits + 7) // 8
    assert np.array_equal(elias.decode(code, data, v.size), v)
