"""Bit writer/reader and fixed-width packing: kernels against the plain-Python reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from simdist import DecodeError
from simdist.coding import BitReader, BitWriter, nbytes_for
from simdist.coding.bitio import check_padding, get_bits, put_bits
from simdist.coding.packing import pack, unpack, width_for


@njit(cache=True)
def _write_all(values, widths, nbits):
    buf = np.zeros((nbits + 7) >> 3, dtype=np.uint8)
    pos = 0
    for i in range(values.shape[0]):
        pos = put_bits(buf, pos, values[i], widths[i])
    return buf, pos


@njit(cache=True)
def _read_all(buf, widths, limit):
    out = np.empty(widths.shape[0], dtype=np.int64)
    pos = 0
    for i in range(widths.shape[0]):
        v, pos = get_bits(buf, limit, pos, widths[i])
        if pos < 0:
            return out, pos
        out[i] = v
    return out, pos


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 2**63 - 1)), max_size=40))
def test_put_get_bits_match_reference(fields):
    widths = np.array([w for w, _ in fields], dtype=np.int64)
    values = np.array([v & ((1 << w) - 1) for w, v in fields], dtype=np.int64)
    nbits = int(widths.sum())
    buf, pos = _write_all(values, widths, nbits)
    ref = BitWriter()
    for v, w in zip(values.tolist(), widths.tolist()):
        ref.write(v, w)
    assert pos == nbits == ref.nbits
    assert buf.tobytes() == ref.to_bytes()
    assert check_padding(buf, nbits)
    out, end = _read_all(buf, widths, nbits)
    assert end == nbits and out.tolist() == values.tolist()
    r = BitReader(ref.to_bytes(), nbits)
    assert [r.read(w) for w in widths.tolist()] == values.tolist()


def test_reader_never_reads_past_limit():
    buf = np.frombuffer(b"\xff\xff", dtype=np.uint8)
    out, pos = _read_all(buf, np.array([9, 9], dtype=np.int64), 16)
    assert pos == -1
    with pytest.raises(DecodeError):
        BitReader(b"\xff", 8).read(9)


def test_padding_check():
    assert check_padding(np.array([0b10100000], np.uint8), 3)
    assert not check_padding(np.array([0b10100001], np.uint8), 3)
    assert not check_padding(np.array([0, 0], np.uint8), 3)  # an extra byte
    assert nbytes_for(0) == 0 and nbytes_for(1) == 1 and nbytes_for(8) == 1 and nbytes_for(9) == 2


def test_pack_golden_and_roundtrip():
    data, nbits = pack(np.array([3, 0, 2, 1, 1]), 2)
    assert (data.hex(), nbits) == ("c940", 10)
    assert unpack(data, 2, 5).tolist() == [3, 0, 2, 1, 1]
    assert width_for(0) == 1 and width_for(1) == 1 and width_for(2) == 2 and width_for(32) == 6


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 20), data=st.data())
def test_pack_property(width, data):
    values = data.draw(st.lists(st.integers(0, (1 << width) - 1), max_size=50))
    msg, nbits = pack(np.array(values, dtype=np.int64), width)
    assert nbits == width * len(values)
    assert unpack(msg, width, len(values)).tolist() == values


def test_pack_errors():
    with pytest.raises(ValueError, match="width"):
        pack(np.array([1]), 0)
    with pytest.raises(ValueError, match=r"values must be in \[0, 3\]"):
        pack(np.array([4]), 2)
    with pytest.raises(DecodeError):
        unpack(b"\xc9", 2, 5)
    with pytest.raises(DecodeError):
        unpack(b"\xc9\x40\x00", 2, 5)
