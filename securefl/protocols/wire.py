"""The canonical wire format of every protocol message, and party ids.

Every message has exactly one byte encoding, so byte counts are real and the
server's inputs are exactly the bytes of its transcript:

    msgpack([kind, [field values in declaration order]]) || vector bytes

The msgpack is in its shortest form, as ``msgpack.packb(..., use_bin_type=True)``
writes it: integers, strings, byte strings, arrays and maps with the smallest
header that holds them; ``bytes`` as bin, ``str`` as UTF-8 str, floats as
float64; map keys in increasing order, each once; a :class:`Record` as an
array of its fields in declaration order. A ring-vector field is a msgpack
extension (type = ring bits k, data = its byte length as 8 bytes
little-endian) standing for its packed coordinates (ceil(k/8) bytes each,
little-endian, unused high bits zero), which follow the header in field order.

Byte-string fields declare their lengths in the schema,
``Annotated[bytes, Size(32)]`` (``Size(0, 64)``: empty or 64 bytes). A message
or record holding another length cannot be built (``InvalidMessage`` from the
constructor), and neither the encoder nor the decoder lets one through.

``decode_message`` accepts the canonical bytes and nothing else: it checks the
kind, every field's type and size, that the vector bytes are exactly those the
header announces, and that re-encoding the decoded header gives back the very
bytes it read. A second spelling of one message (an integer in a wider form,
map keys out of order or repeated, a short string in a long header) is thus
refused, at the cost of packing the header once more, never the vectors.
Vectors of byte-aligned rings come back as zero-copy read-only views.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import struct
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NamedTuple

import msgpack
import numpy as np
import numpy.typing as npt

from securefl import ring
from securefl.errors import ConfigurationError, InvalidMessage

__all__ = [
    "SERVER",
    "SESSION_BYTES",
    "Message",
    "Record",
    "RingVector",
    "SessionId",
    "Size",
    "decode_message",
    "message_types",
    "client_id",
    "client_index",
]

SERVER = "server"
SESSION_BYTES = 16
_CLIENT_PREFIX = "client/"
_VECTOR_LENGTH = struct.Struct("<Q")
_WORD_BITS = frozenset({8, 16, 32, 64})
_FIRST_READ = 1 << 16  # bytes of a message fed to the header parser at first; most headers fit


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


# -- the schema vocabulary ---------------------------------------------------------------


@dataclass(frozen=True, init=False)
class Size:
    """The byte lengths a ``bytes`` field may have: ``Annotated[bytes, Size(32)]``.

    ``Size(0, 64)`` admits exactly the empty string and 64 bytes (a signature
    that only one mode of a protocol carries).
    """

    lengths: frozenset[int]

    def __init__(self, *lengths: int) -> None:
        if not lengths or any(type(n) is not int or n < 0 for n in lengths):
            raise ConfigurationError(f"Size takes one or more byte lengths >= 0; found {lengths!r}")
        object.__setattr__(self, "lengths", frozenset(lengths))

    def __str__(self) -> str:
        return " or ".join(str(n) for n in sorted(self.lengths)) + " bytes"


class _RingVectorField:
    """Metadata of :data:`RingVector` (one instance)."""

    def __repr__(self) -> str:
        return "RingVector"


_RING_VECTOR = _RingVectorField()

RingVector = Annotated[npt.NDArray[np.unsignedinteger[Any]], _RING_VECTOR]
"""A field holding a vector of Z_2^k: a 1-D numpy array of the ring dtype.

On the wire it is (k, packed coordinates), k taken from the message's
``ring_bits`` field when it has one, else the dtype's width.
"""

SessionId = Annotated[bytes, Size(SESSION_BYTES)]
"""The 16 random bytes naming one aggregation."""

_REGISTRY: dict[str, type[Message]] = {}


def message_types() -> dict[str, type[Message]]:
    """Every registered message class, by ``KIND``."""
    return dict(_REGISTRY)


# -- compiled codecs, one per annotation ------------------------------------------------

class _WireVector:
    """A vector placeholder from the header: its bits and where its bytes lie after the header."""

    __slots__ = ("ring_bits", "start", "nbytes")

    def __init__(self, ring_bits: int, start: int, nbytes: int) -> None:
        self.ring_bits, self.start, self.nbytes = ring_bits, start, nbytes


def _repacked(placeholder: Any) -> msgpack.ExtType:
    """The extension a placeholder was read from (``default`` of the canonical re-pack)."""
    if type(placeholder) is not _WireVector:
        raise TypeError(f"cannot re-pack {type(placeholder).__name__}")
    return msgpack.ExtType(placeholder.ring_bits, _VECTOR_LENGTH.pack(placeholder.nbytes))


class _VectorReader:
    """Hands out the vector payloads that follow a message header, in order."""

    __slots__ = ("total", "sizes", "frames", "body")

    def __init__(self) -> None:
        self.total = 0
        self.sizes: list[int] = []
        self.frames: dict[int, memoryview] | None = None
        self.body: memoryview | None = None

    def payload(self, placeholder: _WireVector) -> memoryview:
        if self.frames is not None:
            return self.frames[placeholder.start]
        if self.body is None:
            raise InvalidMessage("a vector placeholder has no bytes behind it")
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


_Payloads = list[bytes | memoryview]  # where encoders put the vector bytes, in order
_Encode = Callable[[Any, int | None, _Payloads, str], Any]
_Check = Callable[[Any, str, _DecodeContext], Any]
_EncodeMany = Callable[[list[Any], int | None, _Payloads, str], list[Any]]
_CheckMany = Callable[[list[Any], str, _DecodeContext], list[Any]]
_Validate = Callable[[Any, str], None]


class _Codec(NamedTuple):
    """How one annotation travels: to its msgpack form, back with checks, and its check at construction.

    ``encode(value, ring_bits, payloads, path)`` appends vector bytes to
    ``payloads``; ``check(value, path, context)`` tests a decoded value and
    returns it typed, leaving the decoded value itself as it was, and accepts
    only what ``encode`` writes, so that re-packing the decoded header gives
    the canonical bytes (map keys in increasing order, each once; floats as
    floats). ``encode_many`` / ``check_many`` do the same for the items of a
    container, with their type and size tests run over all items at once
    where they can; ``validate`` is ``None`` when construction has nothing to
    check.
    """

    encode: _Encode
    check: _Check
    encode_many: _EncodeMany
    check_many: _CheckMany
    validate: _Validate | None
    vectors: bool  # holds ring vectors
    immutable: bool  # a value cannot change after construction (scalars and byte strings)
    size: Size | None = None  # the lengths of a sized byte string
    record: type | None = None  # the class of a record
    scalar: type | None = None  # the exact type of a scalar that travels as it is (int, bool, bytes, str)


_CODECS: dict[Any, _Codec] = {}
_PLANS: dict[type, list[tuple[str, str, _Codec]]] = {}


def _describe(value: Any) -> str:
    if type(value) is bytes:
        return "1 byte" if len(value) == 1 else f"{len(value)} bytes"
    if isinstance(value, _WireVector):
        return "a ring vector"
    return type(value).__name__


def _fields_of(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _plan_of(cls: type) -> list[tuple[str, str, _Codec]]:
    """(name, path for errors, codec) of every field of a message or record class, in declaration order."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = [(name, f"{cls.__name__}.{name}", _codec(annotation)) for name, annotation in _fields_of(cls)]
        _PLANS[cls] = plan
    return plan


def _validate_fields(instance: Any) -> None:
    """The construction checks of a message or record: every size inline, then the other validators."""
    cls = type(instance)
    layout = _LAYOUTS.get(cls) or _layout_of(cls)
    if layout.checked_on_build:
        values = layout.getter(instance)
        for index, lengths, path in layout.sized:
            value = values[index]
            if type(value) is not bytes or len(value) not in lengths:
                raise InvalidMessage(f"{path} must be {layout.sizes[index]}; found {_describe(value)}")
        for index, path, validate in layout.validators:
            validate(values[index], path)


class _Layout(NamedTuple):
    """The compiled plan of one message or record class, for its per-message paths.

    ``getter(instance)`` gives every field value in declaration order;
    ``sized`` lists (index, lengths, path) of the sized byte strings and
    ``scalars`` (index, type, path) of the exact-type scalars, both tested
    inline; ``encoders`` / ``checkers`` (index, function, path) are the fields
    that need a codec call on the way out / in; ``validators`` the
    construction checks other than sizes.
    """

    names: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]
    sized: tuple[tuple[int, frozenset[int], str], ...]
    sizes: tuple[Size | None, ...]
    scalars: tuple[tuple[int, type, str], ...]
    encoders: tuple[tuple[int, _Encode, str], ...]
    checkers: tuple[tuple[int, _Check, str], ...]
    validators: tuple[tuple[int, str, _Validate], ...]
    checked_on_build: bool
    ring_bits: int | None  # the index of a ``ring_bits`` field


_LAYOUTS: dict[type, _Layout] = {}


def _layout_of(cls: type) -> _Layout:
    """The :class:`_Layout` of a message or record class, compiled once from its plan."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        plan = _plan_of(cls)
        names = tuple(name for name, _, _ in plan)
        getter: Callable[[Any], tuple[Any, ...]] = (
            operator.attrgetter(*names) if len(names) > 1 else lambda instance: (getattr(instance, names[0]),)
        )
        scalars, sized, encoders, checkers, validators = [], [], [], [], []
        for index, (_, path, codec) in enumerate(plan):
            if codec.size is not None:
                sized.append((index, codec.size.lengths, path))
                continue
            if codec.scalar is not None:
                scalars.append((index, codec.scalar, path))
            else:
                encoders.append((index, codec.encode, path))
                checkers.append((index, codec.check, path))
            if codec.validate is not None:
                validators.append((index, path, codec.validate))
        layout = _LAYOUTS[cls] = _Layout(
            names, getter, tuple(sized), tuple(codec.size for _, _, codec in plan), tuple(scalars),
            tuple(encoders), tuple(checkers), tuple(validators), bool(sized or validators),
            names.index("ring_bits") if "ring_bits" in names else None,
        )
    return layout


def _assemble(cls: type, values: dict[str, Any]) -> Any:
    """An instance of a message or record class from values the decoder has already checked."""
    instance: Any = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


def _codec(annotation: Any) -> _Codec:
    cached = _CODECS.get(annotation)
    if cached is None:
        cached = _CODECS[annotation] = _compile(annotation)
    return cached


def _compile(annotation: Any) -> _Codec:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        if metadata == [_RING_VECTOR]:
            return _with_loops(_vector_to_wire, _vector_from_wire, None, vectors=True, immutable=False)
        if base is bytes and len(metadata) == 1 and isinstance(metadata[0], Size):
            return _sized_codec(metadata[0])
    elif origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return _tuple_codec(_codec(args[0]))
    elif origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if key_type in (int, str, bytes):
            return _dict_codec(key_type, _codec(value_type))
    elif isinstance(annotation, type) and issubclass(annotation, Record) and annotation is not Record:
        return _record_codec(annotation)
    elif annotation is float:
        return _with_loops(_encode_float, _check_float, None, vectors=False, immutable=True)
    elif annotation in (int, bool, bytes, str):
        return _scalar_codec(annotation)
    raise ConfigurationError(f"unsupported message field type {annotation!r}")


def _with_loops(encode: _Encode, check: _Check, validate: _Validate | None, *, vectors: bool,
                immutable: bool) -> _Codec:
    """A codec whose container forms call ``encode`` / ``check`` item by item."""

    def encode_many(values: list[Any], ring_bits: int | None, payloads: _Payloads, path: str) -> list[Any]:
        return [encode(v, ring_bits, payloads, path) for v in values]

    def check_many(values: list[Any], path: str, context: _DecodeContext) -> list[Any]:
        return [check(v, path, context) for v in values]

    return _Codec(encode, check, encode_many, check_many, validate, vectors, immutable)


def _scalar_codec(expected: type) -> _Codec:
    only = {expected}

    def encode(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
        return value

    def check(value: Any, path: str, context: _DecodeContext) -> Any:
        if type(value) is not expected:  # exact: a bool is not an int here
            raise InvalidMessage(f"{path}: expected {expected.__name__}; found {_describe(value)}")
        return value

    def encode_many(values: list[Any], ring_bits: int | None, payloads: _Payloads, path: str) -> list[Any]:
        return values

    def check_many(values: list[Any], path: str, context: _DecodeContext) -> list[Any]:
        if not set(map(type, values)) <= only:
            for v in values:
                check(v, path, context)
        return values

    return _Codec(encode, check, encode_many, check_many, None, False, True, scalar=expected)


def _encode_float(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
    if type(value) not in (float, int):
        raise InvalidMessage(f"{path}: expected float; found {_describe(value)}")
    return float(value)  # always float64 on the wire


def _check_float(value: Any, path: str, context: _DecodeContext) -> Any:
    if type(value) is not float:
        raise InvalidMessage(f"{path}: expected float; found {_describe(value)}")
    return value


def _sized_codec(size: Size) -> _Codec:
    lengths = size.lengths
    only_bytes = {bytes}

    def validate(value: Any, path: str) -> None:
        if type(value) is not bytes or len(value) not in lengths:
            raise InvalidMessage(f"{path} must be {size}; found {_describe(value)}")

    def encode(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
        if type(value) is not bytes or len(value) not in lengths:
            validate(value, path)
        return value

    def check(value: Any, path: str, context: _DecodeContext) -> Any:
        if type(value) is not bytes or len(value) not in lengths:
            validate(value, path)
        return value

    def check_all(values: list[Any], path: str) -> None:
        if not (set(map(type, values)) <= only_bytes and set(map(len, values)) <= lengths):
            for v in values:
                validate(v, path)

    def encode_many(values: list[Any], ring_bits: int | None, payloads: _Payloads, path: str) -> list[Any]:
        check_all(values, path)
        return values

    def check_many(values: list[Any], path: str, context: _DecodeContext) -> list[Any]:
        check_all(values, path)
        return values

    return _Codec(encode, check, encode_many, check_many, validate, False, True, size)


def _tuple_codec(item: _Codec) -> _Codec:
    encode_items, check_items, validate_item = item.encode_many, item.check_many, item.validate

    def encode(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
        return encode_items(list(value), ring_bits, payloads, path)

    def check(value: Any, path: str, context: _DecodeContext) -> Any:
        if type(value) is not list:
            raise InvalidMessage(f"{path}: expected a sequence; found {_describe(value)}")
        return tuple(check_items(value, path, context))

    validate: _Validate | None = None
    if validate_item is not None:
        validate_items = _validate_all(item)

        def validate(value: Any, path: str) -> None:
            validate_items(list(value), path)

    return _with_loops(encode, check, validate, vectors=item.vectors, immutable=False)


def _dict_codec(key_type: type, item: _Codec) -> _Codec:
    encode_items, check_items, validate_item = item.encode_many, item.check_many, item.validate
    key_name = key_type.__name__
    only_key = {key_type}

    def encode(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
        if type(value) is dict and not value:
            return value
        keys = list(value)
        if not set(map(type, keys)) <= only_key:
            raise InvalidMessage(f"{path}: map keys must all be {key_name}")
        ordered = sorted(keys)
        if ordered == keys and type(value) is dict:  # already in canonical order (the usual case)
            items = list(value.values())
            encoded = encode_items(items, ring_bits, payloads, path)
            return value if encoded is items else dict(zip(keys, encoded, strict=True))
        return dict(zip(ordered, encode_items([value[k] for k in ordered], ring_bits, payloads, path), strict=True))

    def check(value: Any, path: str, context: _DecodeContext) -> Any:
        if type(value) is not dict:
            raise InvalidMessage(f"{path}: expected a map; found {_describe(value)}")
        if not value:
            return value
        keys = list(value)
        if not set(map(type, keys)) <= only_key:
            raise InvalidMessage(f"{path}: expected {key_name} keys")
        if keys != sorted(keys):
            raise InvalidMessage(f"{path}: map keys out of order")
        items = list(value.values())
        checked = check_items(items, path, context)
        return value if checked is items else dict(zip(value, checked, strict=True))

    validate: _Validate | None = None
    if validate_item is not None:
        validate_items = _validate_all(item)

        def validate(value: Any, path: str) -> None:
            validate_items(list(value.values()), path)

    return _with_loops(encode, check, validate, vectors=item.vectors, immutable=False)


def _record_codec(cls: type[Record]) -> _Codec:
    plan = _plan_of(cls)
    if any(codec.vectors for _, _, codec in plan):
        raise ConfigurationError(f"record {cls.__name__} holds a ring vector; vectors are message fields")
    names = tuple(name for name, _, _ in plan)
    getter: Callable[[Any], Any] = (operator.attrgetter(*names) if len(names) > 1
                                    else lambda record: (getattr(record, names[0]),))
    immutable = all(codec.immutable for _, _, codec in plan)
    count = len(names)
    type_name = cls.__name__
    only_record, only_list, only_count, only_bytes = {cls}, {list}, {count}, {bytes}
    sizes = [codec.size for _, _, codec in plan]
    all_sized = all(size is not None for size in sizes)
    lengths = [size.lengths for size in sizes if size is not None]

    def validate(value: Any, path: str) -> None:
        if type(value) is not cls:
            raise InvalidMessage(f"{path}: expected {type_name}; found {_describe(value)}")

    def encode(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
        validate(value, path)
        if immutable:  # checked when it was built, and it cannot change since
            return getter(value)  # a tuple: msgpack writes it as the array a list makes
        return [codec.encode(getattr(value, name), ring_bits, payloads, field) for name, field, codec in plan]

    def check(value: Any, path: str, context: _DecodeContext) -> Any:
        if type(value) is not list or len(value) != count:
            raise InvalidMessage(f"{path}: expected {type_name}, an array of {count} fields; found {_describe(value)}")
        return _assemble(cls, {name: codec.check(v, field, context)
                               for (name, field, codec), v in zip(plan, value, strict=True)})

    def encode_many(values: list[Any], ring_bits: int | None, payloads: _Payloads, path: str) -> list[Any]:
        if immutable and set(map(type, values)) <= only_record:
            return list(map(getter, values))  # tuples: msgpack writes them as the arrays lists make
        return [encode(v, ring_bits, payloads, path) for v in values]

    def check_many(values: list[Any], path: str, context: _DecodeContext) -> list[Any]:
        # Records of sized byte strings only: every test is one pass over a column.
        if (all_sized and set(map(type, values)) <= only_list and set(map(len, values)) <= only_count
                and all(set(map(type, column)) <= only_bytes and set(map(len, column)) <= allowed
                        for column, allowed in zip(zip(*values), lengths))):
            records = list(map(object.__new__, itertools.repeat(cls, len(values))))
            for record, fields in zip(records, values, strict=True):
                record.__dict__.update(zip(names, fields))
            return records
        return [check(v, path, context) for v in values]  # raises, naming the field

    return _Codec(encode, check, encode_many, check_many, validate, False, immutable, record=cls)


def _validate_all(item: _Codec) -> Callable[[list[Any], str], None]:
    """The construction checks of a container's items, in one pass over them where the item allows it."""
    validate = item.validate
    if validate is None:
        raise ConfigurationError("container items without a construction check")
    expected: set[type] = {bytes} if item.size is not None else {item.record} if item.record is not None else set()
    lengths = item.size.lengths if item.size is not None else None

    def validate_all(values: list[Any], path: str) -> None:
        if expected and set(map(type, values)) <= expected and (lengths is None or set(map(len, values)) <= lengths):
            return
        for v in values:
            validate(v, path)

    return validate_all


# -- ring vectors ---------------------------------------------------------------------


def _vector_to_wire(value: Any, ring_bits: int | None, payloads: _Payloads, path: str) -> Any:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "u":
        raise InvalidMessage(f"{path}: expected a 1-D unsigned ring vector; found {type(value).__name__}")
    bits = ring_bits if ring_bits is not None else value.dtype.itemsize * 8
    if type(bits) is not int or not 1 <= bits <= ring.MAX_RING_BITS:
        raise InvalidMessage(f"{path}: ring_bits must be an integer in [1, {ring.MAX_RING_BITS}]; found {bits!r}")
    width = ring.ring_dtype(bits).itemsize
    if value.dtype.itemsize != width:
        raise InvalidMessage(f"{path}: a vector of Z_2^{bits} has {8 * width}-bit coordinates; found {value.dtype}")
    if bits != 8 * width and value.size and int(value.max()) >> bits:
        raise InvalidMessage(f"{path} holds a value >= 2^{bits}: reduce it mod 2^{bits} first")
    packed: bytes | memoryview
    if value.base is None and value.flags.c_contiguous and value.dtype.isnative:
        # Zero copy: the frame is a view of the array, which is frozen so
        # that the sender cannot change a message after sending it.
        value.flags.writeable = False
        packed = ring.pack_buffer(value, bits)
    else:
        packed = ring.pack(value, bits)
    payloads.append(packed)
    return msgpack.ExtType(bits, _VECTOR_LENGTH.pack(packed.nbytes if isinstance(packed, memoryview) else len(packed)))


def _vector_from_wire(value: Any, path: str, context: _DecodeContext) -> Any:
    if type(value) is not _WireVector:
        raise InvalidMessage(f"{path}: expected a ring vector; found {_describe(value)}")
    context.bits_seen.add(value.ring_bits)
    return ring.unpack(context.reader.payload(value), value.ring_bits)


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A structured value inside a message: a frozen dataclass of typed fields.

    On the wire it is an array of its field values in declaration order.
    Fields follow the message rules (sized byte strings are checked when the
    record is built); a record holds no ring vector.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in cls.__dict__:
            raise ConfigurationError(f"{cls.__name__}: a record declares fields only; its checks live in the schema")

    def __post_init__(self) -> None:
        _validate_fields(self)


@dataclass(frozen=True)
class Message:
    """Header every message carries; subclasses add typed body fields.

    ``session`` (16 random bytes) and ``round`` bind a message to one
    aggregation; ``phase`` names the protocol phase it belongs to; ``sender``
    and ``recipient`` are party ids ("server", "client/3", "aggregator/0").
    Construction checks the size of every sized field (``InvalidMessage``).
    """

    KIND: ClassVar[str] = ""

    session: SessionId
    round: int
    phase: str
    sender: str
    recipient: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in cls.__dict__:
            raise ConfigurationError(f"{cls.__name__}: a message declares fields only; its checks live in the schema")
        kind = cls.__dict__.get("KIND")
        if kind:
            if kind in _REGISTRY and _REGISTRY[kind] is not cls:
                raise ConfigurationError(f"message kind {kind!r} registered twice")
            _REGISTRY[kind] = cls

    def __post_init__(self) -> None:
        _validate_fields(self)

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
        payloads: list[bytes | memoryview] = []
        header = _encode_header(self, payloads)
        return [header, *payloads]

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        message = decode_message(data)
        if not isinstance(message, cls):
            raise InvalidMessage(f"expected a {cls.KIND or cls.__name__} message; found {message.KIND}")
        return message

    def vectors(self) -> Iterator[np.ndarray]:
        """Every ring vector this message carries (for audits and byte accounting)."""
        for name, _, codec in _plan_of(type(self)):
            if not codec.vectors:
                continue
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                yield value
            else:
                for item in value.values() if isinstance(value, dict) else value:
                    if isinstance(item, np.ndarray):
                        yield item


def _encode_header(message: Message, payloads: _Payloads) -> bytes:
    """The msgpack header of ``message``; its vectors' packed bytes go to ``payloads``."""
    cls = type(message)
    layout = _LAYOUTS.get(cls) or _layout_of(cls)
    values: Any = layout.getter(message)  # a tuple: msgpack writes it as the array a list makes
    for index, lengths, path in layout.sized:  # checked when it was built; a frozen message keeps them
        value = values[index]
        if type(value) is not bytes or len(value) not in lengths:
            raise InvalidMessage(f"{path} must be {layout.sizes[index]}; found {_describe(value)}")
    if layout.encoders:
        values = list(values)
        ring_bits = values[layout.ring_bits] if layout.ring_bits is not None else None
        for index, encode, path in layout.encoders:
            values[index] = encode(values[index], ring_bits, payloads, path)
    try:
        header: bytes = _PACKERS.plain.pack((cls.KIND, values))
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidMessage(f"{cls.KIND} cannot be encoded: {error}") from None
    return header


class _Packers(threading.local):
    """This thread's msgpack packers, reused from message to message (a packer is not shared between threads)."""

    def __init__(self) -> None:
        self.plain = msgpack.Packer(use_bin_type=True)
        self.repacking = msgpack.Packer(use_bin_type=True, default=_repacked)


_PACKERS = _Packers()


def _unpack_prefix(data: bytes) -> tuple[Any, int, _VectorReader]:
    """(header object, header length, vector reader) of a whole message, parsing only the header's bytes.

    The parser is fed a prefix of the message, longer ones until the header
    fits, so the vector bytes after it are never copied.
    """
    view = memoryview(data)
    limit = max(len(data), 1)
    size = min(len(data), _FIRST_READ)
    while True:
        reader = _VectorReader()
        unpacker = msgpack.Unpacker(
            raw=False, ext_hook=reader.ext_hook, strict_map_key=False, max_buffer_size=max(size, 1),
            max_str_len=limit, max_bin_len=limit, max_array_len=limit, max_map_len=limit, max_ext_len=limit,
        )
        unpacker.feed(view[:size])
        try:
            return unpacker.unpack(), unpacker.tell(), reader
        except msgpack.OutOfData:
            if size == len(data):
                raise InvalidMessage("message ends inside its header") from None
            size = min(len(data), size * 16)


def decode_message(data: bytes | Sequence[bytes | memoryview]) -> Message:
    """Parse and type-check any registered message; ``InvalidMessage`` on anything malformed or non-canonical.

    ``data`` is the canonical byte string, or its frames (``Message.to_frames``).
    """
    frames: list[memoryview] | None = None
    if isinstance(data, (list, tuple)):
        if not data:
            raise InvalidMessage("a message needs at least a header frame")
        try:
            first = data[0]
            header = first if type(first) is bytes else bytes(memoryview(first).cast("B"))
            frames = [memoryview(frame).cast("B") for frame in data[1:]]
        except TypeError:
            raise InvalidMessage("message frames must be bytes-like") from None
        data = header
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidMessage(f"a message must be bytes; found {type(data).__name__}")
    data = bytes(data) if not isinstance(data, bytes) else data
    try:
        if frames is not None:  # the header is exactly the first frame
            reader = _VectorReader()
            decoded = msgpack.unpackb(data, raw=False, ext_hook=reader.ext_hook, strict_map_key=False)
            header_length = len(data)
        else:
            decoded, header_length, reader = _unpack_prefix(data)
    except InvalidMessage:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise InvalidMessage(f"undecodable message: {type(exc).__name__}") from None
    if frames is not None:
        if frames or reader.sizes:
            sizes = [frame.nbytes for frame in frames]
            if sizes != reader.sizes:
                raise InvalidMessage(f"message frames of {sizes} bytes do not match its header's vectors "
                                     f"{reader.sizes}")
            starts = [sum(reader.sizes[:i]) for i in range(len(reader.sizes))]
            reader.frames = dict(zip(starts, frames, strict=True))
        else:
            reader.frames = {}
        header = data
    elif header_length + reader.total != len(data):
        raise InvalidMessage(
            f"message is {len(data)} bytes; its header ({header_length}) and vectors ({reader.total}) "
            f"account for {header_length + reader.total}"
        )
    else:
        reader.body = memoryview(data)[header_length:]
        header = data[:header_length]
    if not (type(decoded) is list and len(decoded) == 2 and type(decoded[0]) is str and type(decoded[1]) is list):
        raise InvalidMessage("a message must be [kind, fields]")
    kind, values = decoded
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise InvalidMessage(f"unknown message kind {kind!r}")
    layout = _LAYOUTS.get(cls) or _layout_of(cls)
    if len(values) != len(layout.names):
        raise InvalidMessage(f"{kind} has {len(values)} fields; expected {len(layout.names)}")
    for index, expected, path in layout.scalars:  # exact: a bool is not an int here
        value = values[index]
        if type(value) is not expected:
            raise InvalidMessage(f"{path}: expected {expected.__name__}; found {_describe(value)}")
    for index, lengths, path in layout.sized:
        value = values[index]
        if type(value) is not bytes or len(value) not in lengths:
            raise InvalidMessage(f"{path} must be {layout.sizes[index]}; found {_describe(value)}")
    context = _DecodeContext(reader)
    typed = list(values)  # ``decoded`` stays as it was read, for the canonical re-pack below
    for index, check, path in layout.checkers:
        typed[index] = check(values[index], path, context)
    declared = typed[layout.ring_bits] if layout.ring_bits is not None else None
    if declared is not None and context.bits_seen - {declared}:
        raise InvalidMessage(
            f"{kind} declares ring_bits={declared} but carries vectors of {sorted(context.bits_seen)} bits"
        )
    if declared is None and context.bits_seen - _WORD_BITS:  # without ring_bits, vectors go at their dtype's width
        raise InvalidMessage(f"{kind} has no ring_bits field but carries vectors of {sorted(context.bits_seen)} bits")
    # The checks above accept exactly the values the encoder writes, so the header is canonical
    # if and only if packing the decoded header again gives back its bytes.
    try:
        canonical = _PACKERS.repacking.pack(decoded)
    except (TypeError, ValueError, OverflowError):  # pragma: no cover - whatever unpacks packs again
        canonical = None
    if canonical != header:
        raise InvalidMessage(f"{kind} is not in canonical form: its header re-packs to other bytes")
    message: Message = object.__new__(cls)
    message.__dict__.update(zip(layout.names, typed))
    return message
