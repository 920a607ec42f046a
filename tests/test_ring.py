import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl import ring
from securefl.errors import ConfigurationError, InvalidMessage


@pytest.mark.parametrize(
    "bits, dtype",
    [(1, np.uint8), (8, np.uint8), (9, np.uint16), (20, np.uint32), (32, np.uint32), (33, np.uint64), (64, np.uint64)],
)
def test_ring_dtype_is_narrowest(bits, dtype):
    assert ring.ring_dtype(bits) == np.dtype(dtype)


@pytest.mark.parametrize("bits", [0, 65, -1, 2.5, True])
def test_ring_bits_out_of_range_refused(bits):
    with pytest.raises(ConfigurationError):
        ring.ring_dtype(bits)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 64), values=st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=40))
def test_pack_roundtrip_and_size(bits, values):
    vector = np.array([v % (1 << bits) for v in values], dtype=ring.ring_dtype(bits))
    data = ring.pack(vector, bits)
    assert len(data) == ring.packed_size(vector.size, bits)
    np.testing.assert_array_equal(ring.unpack(data, bits, vector.size), vector)


def test_unpack_rejects_out_of_ring_values_and_bad_lengths():
    with pytest.raises(InvalidMessage):
        ring.unpack(bytes([0xFF, 0xFF, 0xFF]), 20)  # 2^24 - 1 >= 2^20
    with pytest.raises(InvalidMessage):
        ring.unpack(bytes(7), 32)
    with pytest.raises(InvalidMessage):
        ring.unpack(bytes(8), 32, length=3)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 64), data=st.data())
def test_signed_roundtrip_and_modular_add(bits, data):
    half = 1 << (bits - 1)
    a = data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=20))
    signed = np.array(a, dtype=np.int64)
    vector = ring.from_signed(signed, bits)
    np.testing.assert_array_equal(ring.to_signed(vector, bits), signed)
    total = vector.copy()
    ring.add(total, vector, bits)
    expected = [((2 * x + half) % (1 << bits)) - half for x in a]
    np.testing.assert_array_equal(ring.to_signed(total, bits), np.array(expected, dtype=np.int64))
    back = ring.sub(total, vector, bits)
    np.testing.assert_array_equal(back, vector)
    np.testing.assert_array_equal(ring.add(ring.neg(vector, bits), vector, bits), np.zeros_like(vector))
