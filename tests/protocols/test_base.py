import os
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import InvalidMessage
from securefl.protocols.base import expect
from securefl.protocols.wire import Message, RingVector, client_id, client_index, decode_message


@dataclass(frozen=True)
class _Sample(Message):
    KIND = "test/sample"
    ring_bits: int
    vector: RingVector
    names: tuple[str, ...]
    blobs: dict[str, bytes]
    flag: bool


def _sample(**overrides):
    fields = dict(
        session=os.urandom(16), round=3, phase="p", sender="client/1", recipient="server",
        ring_bits=20, vector=np.array([1, 2, (1 << 20) - 1], dtype=np.uint32),
        names=("a", "b"), blobs={"y": b"2", "x": b"1"}, flag=True,
    )
    fields.update(overrides)
    return _Sample(**fields)


def test_roundtrip_is_canonical_and_typed():
    message = _sample()
    data = message.to_bytes()
    decoded = decode_message(data)
    assert isinstance(decoded, _Sample)
    assert decoded.to_bytes() == data
    np.testing.assert_array_equal(decoded.vector, message.vector)
    assert decoded.names == ("a", "b") and decoded.blobs == {"x": b"1", "y": b"2"}
    # 20-bit ring: three bytes per coordinate on the wire
    assert len(data) < len(_sample(ring_bits=32).to_bytes())


_TAIL = {}


def _raw(message):
    """(kind, values) of the header; the vector bytes after it are kept for _repack."""
    data = message.to_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    kind, values = unpacker.unpack()
    _TAIL["last"] = data[unpacker.tell():]
    return kind, values


def _repack(kind, values):
    return msgpack.packb([kind, values], use_bin_type=True) + _TAIL["last"]


def test_unknown_kind_and_wrong_field_count_refused():
    kind, values = _raw(_sample())
    with pytest.raises(InvalidMessage, match="unknown message kind"):
        decode_message(_repack("nope", values))
    with pytest.raises(InvalidMessage, match="fields"):
        decode_message(_repack(kind, values[:-1]))


@pytest.mark.parametrize("position, bad", [(0, "not-bytes"), (1, "3"), (1, True), (5, 20.5), (7, "ab"), (9, 1)])
def test_field_types_are_checked(position, bad):
    kind, values = _raw(_sample())
    values[position] = bad
    with pytest.raises(InvalidMessage):
        decode_message(_repack(kind, values))


def test_vector_bytes_must_match_the_header():
    data = _sample().to_bytes()
    with pytest.raises(InvalidMessage, match="account for"):
        decode_message(data + b"\x00")
    with pytest.raises(InvalidMessage, match="account for"):
        decode_message(data[:-1])


def test_decoded_vectors_are_read_only_views():
    decoded = decode_message(_sample(ring_bits=32).to_bytes())
    with pytest.raises(ValueError):
        decoded.vector[0] = 7


def test_session_length_and_ring_bits_mismatch_refused():
    with pytest.raises(InvalidMessage, match="16 bytes"):
        decode_message(_sample(session=b"short").to_bytes())
    # declares 32 bits but packs the vector at 20 bits
    kind, values = _raw(_sample())
    values[5] = 32
    with pytest.raises(InvalidMessage, match="declares ring_bits=32"):
        decode_message(_repack(kind, values))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_decodes_silently(data):
    try:
        message = decode_message(data)
    except InvalidMessage:
        return
    assert isinstance(message, Message)


def test_expect_checks_every_header_field():
    message = _sample()
    expect(message, _Sample, session=message.session, round=3, phase="p", recipient="server", senders=("client/1",))
    with pytest.raises(InvalidMessage):
        expect(message, _Sample, session=message.session, round=3, phase="p", recipient="server", senders=("client/2",))


@pytest.mark.parametrize("party", ["client/01", "client/-1", "client/", "server", "client/1x", 3])
def test_client_index_refuses_non_canonical_ids(party):
    with pytest.raises(InvalidMessage):
        client_index(party)


def test_client_id_roundtrip():
    assert client_index(client_id(42)) == 42


def test_frames_join_to_the_canonical_bytes_and_decode_alike():
    message = _sample(ring_bits=32, vector=np.arange(5, dtype=np.uint32))
    frames = message.to_frames()
    assert b"".join(bytes(f) for f in frames) == message.to_bytes()
    from_frames = decode_message(frames)
    np.testing.assert_array_equal(from_frames.vector, message.vector)
    assert from_frames.to_bytes() == message.to_bytes()


def test_a_sent_vector_is_frozen_so_the_message_cannot_change():
    vector = np.arange(5, dtype=np.uint32)
    frames = _sample(ring_bits=32, vector=vector).to_frames()
    with pytest.raises(ValueError):
        vector[0] = 9
    assert decode_message(frames).vector[0] == 0


def test_frames_must_match_the_header():
    frames = _sample(ring_bits=32, vector=np.arange(5, dtype=np.uint32)).to_frames()
    with pytest.raises(InvalidMessage, match="do not match"):
        decode_message([frames[0], bytes(frames[1])[:-4]])
    with pytest.raises(InvalidMessage, match="do not match"):
        decode_message([frames[0]])
    with pytest.raises(InvalidMessage):
        decode_message([])
