"""Known-answer vectors of every protocol message (protocols/vectors/messages.json).

Canonical cases: the fields encode to exactly the vector's bytes, and the bytes
decode to exactly the fields; the bytes are also re-derived by hand from the
fields with plain msgpack and ``int.to_bytes``, without securefl's codec.
Adversarial cases: every one is refused with ``InvalidMessage``.
"""

import typing
from typing import Annotated

import msgpack
import pytest

from securefl.errors import InvalidMessage
from securefl.protocols.wire import Record, RingVector, decode_message, message_types
from tests.protocols.message_json import field_types, from_json, protocol_kinds, to_json
from tests.vectors import load_vectors

CASES = load_vectors("messages")
CANONICAL = [case for case in CASES if case["section"] == "canonical"]
ADVERSARIAL = [case for case in CASES if case["section"] == "adversarial"]


def _id(case):
    return f"{case['kind']}: {case['comment']}"


def test_every_case_is_in_a_known_section():
    assert {case["section"] for case in CASES} == {"canonical", "adversarial"}
    assert len(CANONICAL) + len(ADVERSARIAL) == len(CASES)


def test_every_protocol_message_kind_has_a_canonical_vector():
    covered = {case["kind"] for case in CANONICAL}
    missing = sorted(set(protocol_kinds()) - covered)
    assert not missing, f"message kinds without a vector in protocols/vectors/messages.json: {missing}"
    assert covered <= set(message_types())


@pytest.mark.parametrize("case", CANONICAL, ids=_id)
def test_fields_encode_to_the_vector(case):
    assert from_json(case["kind"], case["fields"]).to_bytes().hex() == case["encoding"]


@pytest.mark.parametrize("case", CANONICAL, ids=_id)
def test_the_vector_decodes_to_the_fields(case):
    message = decode_message(bytes.fromhex(case["encoding"]))
    assert message.KIND == case["kind"]
    assert to_json(message) == case["fields"]
    from_frames = decode_message(message.to_frames())
    assert to_json(from_frames) == case["fields"]


def _by_hand(annotation, value, ring_bits, payloads):
    """The msgpack form of one JSON field value, read off its declared type alone."""
    if annotation == RingVector:
        width = (ring_bits + 7) // 8
        packed = b"".join(int(v).to_bytes(width, "little") for v in value)
        payloads.append(packed)
        return msgpack.ExtType(ring_bits, len(packed).to_bytes(8, "little"))
    if typing.get_origin(annotation) is Annotated:  # a sized byte string
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if annotation is bytes:
        return bytes.fromhex(value)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return [_by_hand(item, v, ring_bits, payloads) for v in value]
    if origin is dict:
        key_type, item = typing.get_args(annotation)
        keys = sorted(key_type(k) for k in value)
        return {k: _by_hand(item, value[str(k)], ring_bits, payloads) for k in keys}
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return [_by_hand(kind, value[name], ring_bits, payloads) for name, kind in field_types(annotation)]
    assert type(value) in (int, str, bool)
    return value


@pytest.mark.parametrize("case", CANONICAL, ids=_id)
def test_the_vector_follows_the_documented_format(case):
    """msgpack([kind, [fields in declaration order]]) || packed vectors (protocols/wire.md)."""
    fields = case["fields"]
    payloads = []
    declared = field_types(message_types()[case["kind"]])
    values = [_by_hand(kind, fields[name], fields.get("ring_bits"), payloads) for name, kind in declared]
    expected = msgpack.packb([case["kind"], values], use_bin_type=True) + b"".join(payloads)
    assert expected.hex() == case["encoding"]


@pytest.mark.parametrize("case", ADVERSARIAL, ids=_id)
def test_adversarial_encodings_are_refused(case):
    assert case["kind"] in message_types()
    with pytest.raises(InvalidMessage):
        decode_message(bytes.fromhex(case["encoding"]))
