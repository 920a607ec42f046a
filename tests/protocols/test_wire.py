"""The message codec: typed, sized and canonical (decode then re-encode gives the same bytes)."""

import dataclasses
import os
from dataclasses import dataclass
from typing import Annotated

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.crypto import aead, shamir
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.secagg import messages as secagg
from securefl.protocols.wire import (
    Message,
    Record,
    RingVector,
    Size,
    client_id,
    client_index,
    decode_message,
    message_types,
)

Bytes4 = Annotated[bytes, Size(4)]
MaybeBytes8 = Annotated[bytes, Size(0, 8)]


@dataclass(frozen=True)
class _Pair(Record):
    tag: Bytes4
    note: MaybeBytes8


@dataclass(frozen=True)
class _Sample(Message):
    KIND = "test/sample"
    ring_bits: int
    vector: RingVector
    names: tuple[str, ...]
    blobs: dict[str, bytes]
    flag: bool
    tags: dict[int, Bytes4]
    pairs: dict[int, _Pair]
    weight: float


@dataclass(frozen=True)
class _Bare(Message):
    """A message without ring_bits: its vectors travel at their dtype's width."""

    KIND = "test/bare"
    vector: RingVector


def _sample(**overrides):
    fields = dict(
        session=os.urandom(16), round=3, phase="p", sender="client/1", recipient="server",
        ring_bits=20, vector=np.array([1, 2, (1 << 20) - 1], dtype=np.uint32),
        names=("a", "b"), blobs={"y": b"2", "x": b"1"}, flag=True,
        tags={2: b"tag2", 1: b"tag1"}, pairs={5: _Pair(b"pair", b""), 0: _Pair(b"zero", b"12345678")},
        weight=0.5,
    )
    fields.update(overrides)
    return _Sample(**fields)


# Field positions in the header of a _Sample.
SESSION, ROUND, PHASE, SENDER, RECIPIENT, RING_BITS, VECTOR, NAMES, BLOBS, FLAG, TAGS, PAIRS, WEIGHT = range(13)


def _split(data):
    """(kind, values, vector bytes) of an encoded message, read with plain msgpack."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    kind, values = unpacker.unpack()
    return kind, values, data[unpacker.tell():]


def _repack(kind, values, tail):
    return msgpack.packb([kind, values], use_bin_type=True) + tail


def _with(message, position, value):
    """The encoding of ``message`` with header field ``position`` replaced by ``value`` (packed by msgpack)."""
    kind, values, tail = _split(message.to_bytes())
    values[position] = value
    return _repack(kind, values, tail)


def _with_raw(message, position, raw):
    """The encoding of ``message`` with header field ``position`` written as the msgpack bytes ``raw``."""
    kind, values, tail = _split(message.to_bytes())
    parts = [msgpack.packb(v, use_bin_type=True) for v in values]
    parts[position] = raw
    assert len(values) < 16
    return b"\x92" + msgpack.packb(kind) + bytes([0x90 | len(values)]) + b"".join(parts) + tail


# --- round trip ----------------------------------------------------------------------------------------


def test_roundtrip_is_canonical_and_typed():
    message = _sample()
    data = message.to_bytes()
    decoded = decode_message(data)
    assert isinstance(decoded, _Sample)
    assert decoded.to_bytes() == data
    np.testing.assert_array_equal(decoded.vector, message.vector)
    assert decoded.names == ("a", "b") and decoded.blobs == {"x": b"1", "y": b"2"}
    assert decoded.pairs == {0: _Pair(b"zero", b"12345678"), 5: _Pair(b"pair", b"")}
    assert isinstance(decoded.pairs[0], _Pair)
    # 20-bit ring: three bytes per coordinate on the wire
    assert len(data) < len(_sample(ring_bits=32).to_bytes())


def test_map_keys_are_written_in_increasing_order():
    _, values, _ = _split(_sample().to_bytes())
    assert list(values[BLOBS]) == ["x", "y"] and list(values[TAGS]) == [1, 2] and list(values[PAIRS]) == [0, 5]


def test_a_record_is_an_array_of_its_fields():
    _, values, _ = _split(_sample().to_bytes())
    assert values[PAIRS][5] == [b"pair", b""]


def test_registry_lists_every_kind_once():
    types = message_types()
    assert types["test/sample"] is _Sample
    assert types["secagg/share-keys-request"] is secagg.ShareKeysRequest
    assert all(cls.KIND == kind for kind, cls in types.items())


# --- types ---------------------------------------------------------------------------------------------


def test_unknown_kind_and_wrong_field_count_refused():
    kind, values, tail = _split(_sample().to_bytes())
    with pytest.raises(InvalidMessage, match="unknown message kind"):
        decode_message(_repack("nope", values, tail))
    with pytest.raises(InvalidMessage, match="fields"):
        decode_message(_repack(kind, values[:-1], tail))


@pytest.mark.parametrize(
    "position, bad",
    [(SESSION, "not-bytes"), (ROUND, "3"), (ROUND, True), (ROUND, 3.0), (RING_BITS, 20.5), (NAMES, "ab"),
     (NAMES, [1]), (BLOBS, {"x": "1"}), (BLOBS, {1: b"1"}), (FLAG, 1), (TAGS, {"1": b"tag1"}),
     (PAIRS, {0: {"tag": b"zero", "note": b""}}), (PAIRS, {0: [b"zero"]}), (PAIRS, {0: [b"zero", b"", b""]}),
     (WEIGHT, 1), (VECTOR, b"\x00" * 9)],
)
def test_field_types_are_checked(position, bad):
    with pytest.raises(InvalidMessage):
        decode_message(_with(_sample(), position, bad))


def test_decoded_vectors_are_read_only_views():
    decoded = decode_message(_sample(ring_bits=32).to_bytes())
    with pytest.raises(ValueError):
        decoded.vector[0] = 7


def test_ring_bits_mismatch_refused():
    # declares 32 bits but packs the vector at 20 bits
    with pytest.raises(InvalidMessage, match="declares ring_bits=32"):
        decode_message(_with(_sample(), RING_BITS, 32))


@pytest.mark.parametrize("bits", [0, 65, -1, True])
def test_a_vector_under_an_impossible_ring_is_an_invalid_message(bits):
    with pytest.raises(InvalidMessage, match="ring_bits must be an integer in"):
        _sample(ring_bits=bits, vector=np.array([1], dtype=np.uint64)).to_bytes()


def test_vectors_without_ring_bits_travel_at_their_dtype_width():
    message = _Bare(os.urandom(16), 0, "p", "client/0", "server", vector=np.arange(4, dtype=np.uint16))
    decoded = decode_message(message.to_bytes())
    assert decoded.vector.dtype == np.uint16 and decoded.to_bytes() == message.to_bytes()
    kind, values, tail = _split(message.to_bytes())
    values[-1] = msgpack.ExtType(12, values[-1].data)  # 12-bit coordinates, two bytes each
    with pytest.raises(InvalidMessage, match="no ring_bits"):
        decode_message(_repack(kind, values, tail))


@pytest.mark.parametrize(
    "vector, ring_bits",
    [
        (np.array([1, 2], dtype=np.uint64), 20),  # wider dtype than the ring's
        (np.array([1, 2], dtype=np.uint16), 20),  # narrower
        (np.array([1, 1 << 20], dtype=np.uint32), 20),  # a value outside Z_2^20
        (np.array([[1, 2]], dtype=np.uint32), 20),  # not 1-D
        (np.array([1, 2], dtype=np.int32), 20),  # signed
    ],
)
def test_encoder_refuses_vectors_that_would_not_decode_to_themselves(vector, ring_bits):
    with pytest.raises(InvalidMessage):
        _sample(vector=vector, ring_bits=ring_bits).to_bytes()


# --- sizes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        dict(session=os.urandom(15)), dict(session=os.urandom(17)), dict(session=bytearray(16)),
        dict(tags={1: b"abc"}), dict(tags={1: b"abcde"}), dict(tags={1: "abcd"}),
        dict(pairs={0: b"abcd"}), dict(pairs={0: (b"abcd", b"")}),
    ],
)
def test_a_message_with_a_wrong_size_cannot_be_built(overrides):
    with pytest.raises(InvalidMessage):
        _sample(**overrides)


@pytest.mark.parametrize("tag, note", [(b"abc", b""), (b"abcde", b""), (b"abcd", b"1234567"), (b"abcd", b"123456789"),
                                       (b"abcd", b"1"), ("abcd", b"")])
def test_a_record_with_a_wrong_size_cannot_be_built(tag, note):
    with pytest.raises(InvalidMessage, match="_Pair"):
        _Pair(tag, note)


def test_size_sets_admit_exactly_their_lengths():
    assert _Pair(b"abcd", b"").note == b"" and _Pair(b"abcd", b"12345678").note == b"12345678"
    assert str(Size(0, 64)) == "0 or 64 bytes"
    for bad in [(), (-1,), (1.5,), ("32",)]:
        with pytest.raises(ConfigurationError):
            Size(*bad)


def test_encoder_rechecks_sizes_in_containers():
    message = _sample()
    message.tags[3] = b"toolong"  # a dict can change after construction; the encoder checks again
    with pytest.raises(InvalidMessage, match="_Sample.tags must be 4 bytes; found 7 bytes"):
        message.to_bytes()


def test_session_size_is_named_in_the_error():
    with pytest.raises(InvalidMessage, match="session must be 16 bytes; found 5 bytes"):
        _sample(session=b"short")


@pytest.mark.parametrize(
    "position, bad",
    [(SESSION, b"\x00" * 15), (SESSION, b"\x00" * 17), (TAGS, {1: b"abc"}), (TAGS, {1: b"abcde"}),
     (PAIRS, {0: [b"abc", b""]}), (PAIRS, {0: [b"abcd", b"1234567"]}), (PAIRS, {0: [b"abcd", b"1"]})],
)
def test_decoder_refuses_wrong_sizes(position, bad):
    with pytest.raises(InvalidMessage, match="must be"):
        decode_message(_with(_sample(), position, bad))


def test_secagg_sizes_are_those_of_the_shares_the_client_seals():
    share = shamir.split(bytes(32), threshold=2, shares=3)[0].to_bytes()
    assert secagg.SHARE_BYTES == len(share) == 37
    assert secagg.SEALED_SHARES_BYTES == len(aead.seal(bytes(32), share + share, associated=b"")) == 102


def test_schema_refuses_what_it_cannot_encode():
    with pytest.raises(ConfigurationError):
        @dataclass(frozen=True)
        class _Checked(Message):
            KIND = "test/checked"

            def __post_init__(self):
                pass

    @dataclass(frozen=True)
    class _VectorRecord(Record):
        vector: RingVector

    @dataclass(frozen=True)
    class _Holder(Message):
        KIND = "test/holder"
        items: dict[int, _VectorRecord]

    with pytest.raises(ConfigurationError, match="ring vector"):
        _Holder(os.urandom(16), 0, "p", "server", "client/0", items={})


# --- canonical form -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "position, raw",
    [
        (ROUND, b"\xcf" + (3).to_bytes(8, "big")),  # uint64
        (ROUND, b"\xcc\x03"),  # uint8
        (ROUND, b"\xd0\x03"),  # int8
        (PHASE, b"\xd9\x01p"),  # str8
        (PHASE, b"\xc4\x01p"),  # bin, not str
        (SESSION, b"\xc6\x00\x00\x00\x10" + bytes(16)),  # bin32
        (RING_BITS, b"\xcd\x00\x14"),  # uint16
        (NAMES, b"\xdc\x00\x02\xa1a\xa1b"),  # array16
        (BLOBS, b"\x82\xa1y\xc4\x012\xa1x\xc4\x011"),  # keys out of order
        (BLOBS, b"\xde\x00\x02\xa1x\xc4\x011\xa1y\xc4\x012"),  # map16
        (BLOBS, b"\x82\xa1x\xc4\x011\xa1x\xc4\x011"),  # a key twice
        (TAGS, b"\x81\xcc\x01\xc4\x04tag1"),  # key as uint8
        (WEIGHT, b"\xca" + np.float32(0.5).tobytes()[::-1]),  # float32
        (VECTOR, b"\xc7\x08\x14" + (9).to_bytes(8, "little")),  # ext8, not fixext8
    ],
)
def test_a_second_spelling_of_a_message_is_refused(position, raw):
    message = _sample(tags={1: b"tag1"})
    # the same splice with the canonical bytes decodes: only the spelling differs
    kind, values, _ = _split(message.to_bytes())
    assert decode_message(_with_raw(message, position, msgpack.packb(values[position], use_bin_type=True)))
    with pytest.raises(InvalidMessage):
        decode_message(_with_raw(message, position, raw))


def test_the_reported_uint64_round_is_refused():
    message = secagg.MaskedInput(os.urandom(16), 3, "masked-input", "client/1", "server", ring_bits=32,
                                 vector=np.arange(4, dtype=np.uint32))
    data = message.to_bytes()
    kind, values, tail = _split(data)
    parts = [msgpack.packb(v, use_bin_type=True) for v in values]
    parts[ROUND] = b"\xcf" + (3).to_bytes(8, "big")
    wide = b"\x92" + msgpack.packb(kind) + bytes([0x90 | len(values)]) + b"".join(parts) + tail
    assert len(wide) == len(data) + 8
    with pytest.raises(InvalidMessage, match="canonical"):
        decode_message(wide)


def test_unused_high_bits_of_packed_coordinates_are_refused():
    data = bytearray(_sample(vector=np.array([1, 2, 3], dtype=np.uint32)).to_bytes())
    data[-1] |= 0x10  # bit 20 of the last coordinate: outside Z_2^20
    with pytest.raises(InvalidMessage, match=">= 2\\^20"):
        decode_message(bytes(data))


def test_vector_bytes_must_match_the_header():
    data = _sample().to_bytes()
    with pytest.raises(InvalidMessage, match="account for"):
        decode_message(data + b"\x00")
    with pytest.raises(InvalidMessage, match="account for"):
        decode_message(data[:-1])
    header_only = _sample(vector=np.zeros(0, dtype=np.uint32)).to_bytes()
    with pytest.raises(InvalidMessage, match="account for"):
        decode_message(header_only + b"\x00")


def test_a_header_longer_than_the_first_read_decodes():
    message = _sample(blobs={f"{i:05d}": os.urandom(100) for i in range(2000)})  # about 220 kB of header
    assert decode_message(message.to_bytes()).to_bytes() == message.to_bytes()
    with pytest.raises(InvalidMessage):
        decode_message(message.to_bytes()[:150_000])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_decodes_silently(data):
    try:
        message = decode_message(data)
    except InvalidMessage:
        return
    assert message.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_whatever_decodes_re_encodes_to_the_same_bytes(data):
    """Flip, insert or delete bytes of a valid encoding: anything the decoder still accepts is canonical."""
    encoded = bytearray(_sample().to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            encoded[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            encoded.insert(position, data.draw(st.integers(0, 255)))
        else:
            del encoded[position]
    try:
        message = decode_message(bytes(encoded))
    except InvalidMessage:
        return
    assert message.to_bytes() == bytes(encoded)


@settings(max_examples=100, deadline=None)
@given(
    round=st.integers(0, 2**64 - 1),
    ring_bits=st.integers(1, 64),
    values=st.lists(st.integers(0, 2**64 - 1), max_size=8),
    tags=st.dictionaries(st.integers(-(2**63), 2**64 - 1), st.binary(min_size=4, max_size=4), max_size=5),
    names=st.lists(st.text(max_size=40), max_size=4),
    weight=st.floats(allow_nan=False),
)
def test_roundtrip_of_random_messages(round, ring_bits, values, tags, names, weight):
    from securefl import ring

    reduced = np.array(values, dtype=np.uint64) & np.uint64(ring.ring_mask(ring_bits))
    vector = reduced.astype(ring.ring_dtype(ring_bits))
    message = _sample(round=round, ring_bits=ring_bits, vector=vector, tags=tags, names=tuple(names), weight=weight)
    data = message.to_bytes()
    decoded = decode_message(data)
    assert decoded.to_bytes() == data
    assert decoded.tags == tags and decoded.names == tuple(names) and decoded.round == round
    np.testing.assert_array_equal(decoded.vector, vector)


# --- party ids and frames -------------------------------------------------------------------------------


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


def test_frames_are_held_to_the_canonical_form_too():
    message = _sample(tags={1: b"tag1"})
    frames = message.to_frames()
    wide = _with_raw(message, ROUND, b"\xcf" + (3).to_bytes(8, "big"))
    header = wide[: len(wide) - sum(len(bytes(f)) for f in frames[1:])]
    with pytest.raises(InvalidMessage, match="canonical"):
        decode_message([header, *frames[1:]])


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
    with pytest.raises(InvalidMessage):
        decode_message([frames[0] + b"\x00", frames[1]])


def test_replace_goes_through_the_size_checks():
    message = _sample()
    with pytest.raises(InvalidMessage, match="session"):
        dataclasses.replace(message, session=b"\x00" * 15)
