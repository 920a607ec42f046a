"""Message field values as JSON (the form of ``protocols/vectors/messages.json``) and back.

Read from each message class's declared field types: byte strings as
lowercase hex, ring vectors and tuples as lists of integers, maps as objects
with decimal keys in increasing order, records as objects of their fields.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any

import numpy as np

import securefl.protocols.paillier  # noqa: F401 - registers the message kinds
import securefl.protocols.plaintext  # noqa: F401
import securefl.protocols.secagg  # noqa: F401
import securefl.protocols.secret_sharing  # noqa: F401
from securefl import ring
from securefl.protocols.wire import Message, Record, RingVector, message_types

__all__ = ["protocol_kinds", "field_types", "to_json", "from_json"]


def protocol_kinds() -> dict[str, type[Message]]:
    """Every message kind the protocols of ``securefl`` register (test-only kinds left out)."""
    return {kind: cls for kind, cls in message_types().items() if cls.__module__.startswith("securefl.")}


def field_types(cls: type) -> list[tuple[str, Any]]:
    """(name, declared type) of each field of a message or record class, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(field.name, hints[field.name]) for field in dataclasses.fields(cls)]


def _base(annotation: Any) -> Any:
    """``bytes`` for a sized byte string; the annotation itself otherwise (a ring vector stays as it is)."""
    if annotation != RingVector and typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _to_json(annotation: Any, value: Any) -> Any:
    annotation = _base(annotation)
    origin = typing.get_origin(annotation)
    if annotation == RingVector:
        return [int(v) for v in value]
    if annotation is bytes:
        return value.hex()
    if origin is tuple:
        (item, _) = typing.get_args(annotation)
        return [_to_json(item, v) for v in value]
    if origin is dict:
        key_type, item = typing.get_args(annotation)
        return {str(k): _to_json(item, value[k]) for k in sorted(value)}
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return {name: _to_json(kind, getattr(value, name)) for name, kind in field_types(annotation)}
    return value


def _from_json(annotation: Any, value: Any, ring_bits: int | None) -> Any:
    annotation = _base(annotation)
    origin = typing.get_origin(annotation)
    if annotation == RingVector:
        return np.array(value, dtype=np.uint64).astype(ring.ring_dtype(ring_bits if ring_bits is not None else 64))
    if annotation is bytes:
        return bytes.fromhex(value)
    if origin is tuple:
        (item, _) = typing.get_args(annotation)
        return tuple(_from_json(item, v, ring_bits) for v in value)
    if origin is dict:
        key_type, item = typing.get_args(annotation)
        return {key_type(k): _from_json(item, v, ring_bits) for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return annotation(**{name: _from_json(kind, value[name], ring_bits) for name, kind in field_types(annotation)})
    return value


def to_json(message: Message) -> dict[str, Any]:
    """Every field of ``message`` (header first), JSON-friendly, in declaration order."""
    return {name: _to_json(kind, getattr(message, name)) for name, kind in field_types(type(message))}


def from_json(kind: str, fields: dict[str, Any]) -> Message:
    """The message of ``kind`` with the JSON ``fields`` (exactly its declared fields)."""
    cls = message_types()[kind]
    declared = field_types(cls)
    if set(fields) != {name for name, _ in declared}:
        raise ValueError(f"{kind} has fields {[name for name, _ in declared]}; the vector gives {sorted(fields)}")
    ring_bits = fields.get("ring_bits")
    return cls(**{name: _from_json(annotation, fields[name], ring_bits) for name, annotation in declared})
