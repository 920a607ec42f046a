"""The canonical wire format of every protocol message, and party ids.

Every message has a canonical byte encoding, so byte counts are real and the
server's inputs are exactly the bytes of its transcript:

    msgpack([kind, [field values in declaration order]]) || vector bytes

where each ring-vector field is a msgpack extension (type = ring bits,
data = its byte length, 8 bytes little-endian) standing for the raw packed
coordinates (ceil(k/8) bytes each) that follow the header, in field order.
Big vectors are thus written once and read back as zero-copy read-only views. ``Message.from_bytes`` validates the kind and every
field's type before any engine sees the message.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import msgpack
import numpy as np

from securefl import ring
from securefl.errors import ConfigurationError, InvalidMessage

__all__ = [
    "SERVER",
    "SESSION_BYTES",
    "Message",
    "RingVector",
    "decode_message",
    "client_id",
    "client_index",
]

SERVER = "server"
SESSION_BYTES = 16
_CLIENT_PREFIX = "client/"
_VECTOR_LENGTH = struct.Struct("<Q")


def client_id(index: int) -> str:
    """The party id of client ``index`` (0-based)."""
    return f"{_CLIENT_PREFIX}{int(index)}"


def client_index(party: str) -> int:
    """Inverse of :func:`client_id`; ``InvalidMessage`` for anything else."""
    if not isinstance(party, str) or not party.startswith(_CLIENT_PREFIX):
        raise InvalidMessage(f"{party!r} is not a client id")
    digits = party[len(_CLIENT_PREFIX) :]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        raise InvalidMessage(f"{party!r} is not a client id")
    return int(digits)


class RingVector(np.ndarray):
    """Type marker for message fields holding a vector of Z_2^k.

    Fields annotated ``RingVector`` carry a plain numpy array of the ring
    dtype; on the wire it is (k, packed coordinates), k taken from the
    message's ``ring_bits`` field when it has one.
    """


_ANNOTATION_CACHE: dict[type, list[tuple[str, Any]]] = {}
_PLAN_CACHE: dict[type, list[tuple[str, Any, Any]]] = {}
_REGISTRY: dict[str, type["Message"]] = {}


def _fields_of(cls: type) -> list[tuple[str, Any]]:
    cached = _ANNOTATION_CACHE.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
        _ANNOTATION_CACHE[cls] = cached
    return cached


def _plan_of(cls: type) -> list[tuple[str, Any, Any]]:
    """(name, encoder, checker) of every field of a message class, in declaration order."""
    plan = _PLAN_CACHE.get(cls)
    if plan is None:
        plan = [(name, _encoder(annotation), _checker(annotation)) for name, annotation in _fields_of(cls)]
        _PLAN_CACHE[cls] = plan
    return plan


def _vector_to_wire(value: Any, ring_bits: int | None, payloads: list) -> Any:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "u":
        raise InvalidMessage(f"expected a 1-D unsigned ring vector; found {type(value).__name__}")
    bits = ring_bits if ring_bits is not None else value.dtype.itemsize * 8
    if value.base is None and value.flags.c_contiguous and value.dtype.isnative:
        # Zero copy: the frame is a view of the array, which is frozen so
        # that the sender cannot change a message after sending it.
        value.flags.writeable = False
        packed = ring.pack_buffer(value, bits)
    else:
        packed = ring.pack(value, bits)
    payloads.append(packed)
    return msgpack.ExtType(bits, _VECTOR_LENGTH.pack(len(packed) if isinstance(packed, bytes) else packed.nbytes))


_Encoder = Callable[[Any, "int | None", list], Any]
_ENCODERS: dict[Any, _Encoder] = {}


def _encoder(annotation: Any) -> _Encoder:
    """A function turning a field value into its msgpack form (compiled once per annotation)."""
    cached = _ENCODERS.get(annotation)
    if cached is not None:
        return cached
    origin = typing.get_origin(annotation)
    if annotation is RingVector:
        encode: _Encoder = _vector_to_wire
    elif origin is tuple and typing.get_args(annotation)[0] is RingVector:
        def encode(value, ring_bits, payloads):
            return [_vector_to_wire(v, ring_bits, payloads) for v in value]
    elif origin is dict and typing.get_args(annotation)[1] is RingVector:
        def encode(value, ring_bits, payloads):
            return {k: _vector_to_wire(value[k], ring_bits, payloads) for k in sorted(value)}
    elif origin is tuple:
        def encode(value, ring_bits, payloads):
            return list(value)
    elif origin is dict:
        def encode(value, ring_bits, payloads):
            return {k: value[k] for k in sorted(value)}
    else:
        def encode(value, ring_bits, payloads):
            return value
    _ENCODERS[annotation] = encode
    return encode


class _WireVector(typing.NamedTuple):
    """A vector placeholder from the header: its bits and where its bytes lie after the header."""

    ring_bits: int
    start: int
    nbytes: int


class _VectorReader:
    """Hands out the vector payloads that follow a message header, in order."""

    def __init__(self) -> None:
        self.total = 0
        self.sizes: list[int] = []
        self.frames: dict[int, memoryview] | None = None
        self.body: memoryview | None = None

    def payload(self, placeholder: "_WireVector") -> memoryview:
        if self.frames is not None:
            return self.frames[placeholder.start]
        return self.body[placeholder.start : placeholder.start + placeholder.nbytes]

    def ext_hook(self, code: int, data: bytes) -> Any:
        if not 1 <= code <= ring.MAX_RING_BITS or len(data) != _VECTOR_LENGTH.size:
            raise InvalidMessage(f"unknown extension type {code}")
        (nbytes,) = _VECTOR_LENGTH.unpack(data)
        placeholder = _WireVector(code, self.total, nbytes)
        self.total += nbytes
        self.sizes.append(nbytes)
        return placeholder


class _DecodeContext:
    """Per-message state of a decode: the ring widths seen and the vector payloads."""

    __slots__ = ("bits_seen", "reader")

    def __init__(self, reader: _VectorReader) -> None:
        self.bits_seen: set[int] = set()
        self.reader = reader


_Checker = Callable[[Any, str, _DecodeContext], Any]
_CHECKERS: dict[Any, _Checker] = {}


def _type_name(value: Any) -> str:
    return "ring vector" if isinstance(value, _WireVector) else type(value).__name__


def _checker(annotation: Any) -> _Checker:
    """A validator for decoded values of one field annotation (compiled once per annotation).

    It returns the typed value or raises ``InvalidMessage`` naming the field
    and what was found there.
    """
    cached = _CHECKERS.get(annotation)
    if cached is not None:
        return cached
    origin = typing.get_origin(annotation)
    if annotation is RingVector:
        def check(value, path, context):
            if type(value) is not _WireVector:
                raise InvalidMessage(f"{path}: expected a ring vector; found {_type_name(value)}")
            context.bits_seen.add(value.ring_bits)
            return ring.unpack(context.reader.payload(value), value.ring_bits)
    elif origin is tuple:
        item = _checker(typing.get_args(annotation)[0])

        def check(value, path, context):
            if type(value) is not list:
                raise InvalidMessage(f"{path}: expected a sequence; found {_type_name(value)}")
            return tuple([item(v, path, context) for v in value])
    elif origin is dict and all(kind in (int, bytes, str) for kind in typing.get_args(annotation)):
        key_type, value_type = typing.get_args(annotation)

        def check(value, path, context):  # scalar keys and values: one pass of exact type tests
            if type(value) is not dict:
                raise InvalidMessage(f"{path}: expected a map; found {_type_name(value)}")
            for k, v in value.items():
                if type(k) is not key_type:
                    raise InvalidMessage(f"{path}: expected {key_type.__name__}; found {_type_name(k)}")
                if type(v) is not value_type:
                    raise InvalidMessage(f"{path}: expected {value_type.__name__}; found {_type_name(v)}")
            return value
    elif origin is dict:
        key_type, value_type = typing.get_args(annotation)
        check_key, check_value = _checker(key_type), _checker(value_type)

        def check(value, path, context):
            if type(value) is not dict:
                raise InvalidMessage(f"{path}: expected a map; found {_type_name(value)}")
            return {check_key(k, path, context): check_value(v, path, context) for k, v in value.items()}
    elif annotation is float:
        def check(value, path, context):
            kind = type(value)
            if kind is float:
                return value
            if kind is int:
                return float(value)
            raise InvalidMessage(f"{path}: expected float; found {_type_name(value)}")
    elif annotation in (int, bool, bytes, str):
        expected = annotation

        def check(value, path, context):
            if type(value) is not expected:  # exact: a bool is not an int here
                raise InvalidMessage(f"{path}: expected {expected.__name__}; found {_type_name(value)}")
            return value
    else:  # pragma: no cover - message classes use only the types above
        raise ConfigurationError(f"unsupported message field type {annotation!r}")
    _CHECKERS[annotation] = check
    return check


@dataclass(frozen=True)
class Message:
    """Header every message carries; subclasses add typed body fields.

    ``session`` (16 random bytes) and ``round`` bind a message to one
    aggregation; ``phase`` names the protocol phase it belongs to; ``sender``
    and ``recipient`` are party ids ("server", "client/3", "aggregator/0").
    """

    KIND: ClassVar[str] = ""

    session: bytes
    round: int
    phase: str
    sender: str
    recipient: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("KIND")
        if kind:
            if kind in _REGISTRY and _REGISTRY[kind] is not cls:
                raise ConfigurationError(f"message kind {kind!r} registered twice")
            _REGISTRY[kind] = cls

    def to_bytes(self) -> bytes:
        """Canonical encoding: the header, then every vector's packed bytes.

        Ring vectors are packed at ``self.ring_bits`` bits when the message
        has that field, else at their dtype's width.
        """
        return b"".join(self.to_frames())

    def to_frames(self) -> list[bytes | memoryview]:
        """The canonical encoding as frames: [msgpack header, vector bytes, ...].

        Joined, the frames are exactly :meth:`to_bytes`; a transport that can
        send several buffers (or the in-process simulator) avoids the copy.
        Vectors are passed as zero-copy read-only views where possible.
        """
        ring_bits = getattr(self, "ring_bits", None)
        payloads: list = []
        values = [encode(getattr(self, name), ring_bits, payloads) for name, encode, _ in _plan_of(type(self))]
        return [msgpack.packb([self.KIND, values], use_bin_type=True), *payloads]

    @classmethod
    def from_bytes(cls, data: bytes) -> "Message":
        message = decode_message(data)
        if not isinstance(message, cls):
            raise InvalidMessage(f"expected a {cls.KIND or cls.__name__} message; found {message.KIND}")
        return message

    def vectors(self) -> Iterator[np.ndarray]:
        """Every ring vector this message carries (for audits and byte accounting)."""
        for name, annotation in _fields_of(type(self)):
            value = getattr(self, name)
            if annotation is RingVector:
                yield value
            elif typing.get_origin(annotation) in (tuple, dict):
                items = value.values() if isinstance(value, dict) else value
                for item in items:
                    if isinstance(item, np.ndarray):
                        yield item


def decode_message(data: bytes | Sequence[bytes | memoryview]) -> Message:
    """Parse and type-check any registered message; ``InvalidMessage`` on anything malformed.

    ``data`` is the canonical byte string, or its frames (``Message.to_frames``).
    """
    frames: list[memoryview] | None = None
    if isinstance(data, (list, tuple)):
        if not data:
            raise InvalidMessage("a message needs at least a header frame")
        try:
            header = data[0] if type(data[0]) is bytes else bytes(memoryview(data[0]).cast("B"))
            frames = [header, *(memoryview(frame).cast("B") for frame in data[1:])]
        except TypeError:
            raise InvalidMessage("message frames must be bytes-like") from None
        data = header
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidMessage(f"a message must be bytes; found {type(data).__name__}")
    data = bytes(data) if not isinstance(data, bytes) else data
    reader = _VectorReader()
    try:
        if frames is not None:  # the header is exactly the first frame
            decoded = msgpack.unpackb(data, raw=False, ext_hook=reader.ext_hook, strict_map_key=False)
            header_length = len(data)
        else:
            unpacker = msgpack.Unpacker(
                raw=False, ext_hook=reader.ext_hook, strict_map_key=False, max_buffer_size=max(len(data), 1)
            )
            unpacker.feed(data)
            decoded = unpacker.unpack()
            header_length = unpacker.tell()
    except InvalidMessage:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise InvalidMessage(f"undecodable message: {type(exc).__name__}") from None
    if frames is not None:
        sizes = [frame.nbytes for frame in frames[1:]]
        if header_length != len(data) or sizes != reader.sizes:
            raise InvalidMessage(f"message frames of {sizes} bytes do not match its header's vectors {reader.sizes}")
        if sizes:
            starts = [sum(reader.sizes[:i]) for i in range(len(reader.sizes))]
            reader.frames = dict(zip(starts, frames[1:]))
    elif header_length + reader.total != len(data):
        raise InvalidMessage(
            f"message is {len(data)} bytes; its header ({header_length}) and vectors ({reader.total}) "
            f"account for {header_length + reader.total}"
        )
    else:
        reader.body = memoryview(data)[header_length:]
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[0], str) and isinstance(decoded[1], list)):
        raise InvalidMessage("a message must be [kind, fields]")
    kind, values = decoded
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise InvalidMessage(f"unknown message kind {kind!r}")
    plan = _plan_of(cls)
    if len(values) != len(plan):
        raise InvalidMessage(f"{kind} has {len(values)} fields; expected {len(plan)}")
    context = _DecodeContext(reader)
    typed = {name: check(value, f"{kind}.{name}", context) for (name, _, check), value in zip(plan, values)}
    declared = typed.get("ring_bits")
    if declared is not None and context.bits_seen - {declared}:
        raise InvalidMessage(
            f"{kind} declares ring_bits={declared} but carries vectors of {sorted(context.bits_seen)} bits"
        )
    if len(typed["session"]) != SESSION_BYTES:
        raise InvalidMessage(f"session id must be {SESSION_BYTES} bytes; found {len(typed['session'])}")
    return cls(**typed)
