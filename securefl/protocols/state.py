"""Plain-data engine state: the values a stored state may hold and the reader that validates them.

An engine's ``state_dict()`` is a flat mapping from field names to

    int | bool | str | bytes | list[int] | list[str] | list[bytes] | 1-D numpy array

and nothing else: no Python object, no pickle. A flat mapping of these maps
one-to-one onto Flower's records (scalars and lists of one scalar type in a
``ConfigRecord``, arrays in an ``ArrayRecord``) and onto msgpack or JSON. A
map such as ``{peer: key}`` is stored as two lists in increasing key order,
several equal-length vectors as one concatenated array, "none" as an
empty value of the field's type (b"", [], an empty array), so every field
is always present.

Threat model: a stored state is the party's own (it holds its secrets) and
is read back only by that party; ``from_state_dict`` still treats it as
untrusted input. :class:`StateReader` refuses a missing field, a field of
the wrong type, length or range, and any field it was not asked for, with
``InvalidMessage``, so a tampered or truncated state never builds an engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn, TypeAlias

import numpy as np

from securefl.errors import InvalidMessage

__all__ = ["StateValue", "StateDict", "StateReader", "check_plain", "keyed", "nested"]

StateValue: TypeAlias = int | bool | str | bytes | list[int] | list[str] | list[bytes] | np.ndarray
"""One field of a stored state (lists hold one scalar type; arrays are 1-D)."""
StateDict: TypeAlias = dict[str, StateValue]
"""A stored state: a flat mapping of field names to plain values."""

def check_plain(state: object, *, what: str = "state") -> None:
    """``InvalidMessage`` unless ``state`` is a flat ``StateDict`` (str keys, plain values only).

    Exact types are required (a ``bytes`` subclass or a numpy scalar is refused).
    """
    if type(state) is not dict:
        raise InvalidMessage(f"{what} must be a dict; found {type(state).__name__}")
    for key, value in state.items():
        if type(key) is not str:
            raise InvalidMessage(f"{what} has a field name of type {type(key).__name__}")
        if type(value) in (int, bool, str, bytes):
            continue
        if type(value) is list:
            kinds = {type(item) for item in value}
            if len(kinds) > 1 or not kinds <= {int, str, bytes}:
                raise InvalidMessage(f"{what} field {key!r} must be a list of one of int, str, bytes")
            continue
        if type(value) is np.ndarray and value.ndim == 1 and value.dtype.kind in "biuf" and not value.dtype.hasobject:
            continue
        raise InvalidMessage(f"{what} field {key!r} holds a {type(value).__name__}, which is not plain data")


def keyed(mapping: Mapping[int, bytes]) -> tuple[list[int], list[bytes]]:
    """``{k: v}`` as (keys in increasing order, values in that order): how a stored state holds a map."""
    keys = sorted(mapping)
    return keys, [mapping[key] for key in keys]


def nested(mapping: Mapping[int, Mapping[int, bytes]]) -> tuple[list[int], list[int], list[int], list[bytes]]:
    """``{k: {j: v}}`` as (outer keys, sizes of the inner maps, inner keys, values), all in increasing key order."""
    outer = sorted(mapping)
    inner = [sorted(mapping[key]) for key in outer]
    return (outer, [len(keys) for keys in inner], [j for keys in inner for j in keys],
            [mapping[key][j] for key, keys in zip(outer, inner) for j in keys])


class StateReader:
    """Reads the fields of one stored state, each checked; ``finish`` refuses any field left unread.

    Every failure raises ``InvalidMessage`` naming ``what`` and the field.
    """

    def __init__(self, state: object, *, what: str) -> None:
        self.what = what
        if not isinstance(state, Mapping):
            self.fail(f"must be a mapping of fields; found {type(state).__name__}")
        for key in state:
            if not isinstance(key, str):
                self.fail(f"has a field name of type {type(key).__name__}")
        self._state: Mapping[str, object] = state
        self._read: set[str] = set()

    def fail(self, detail: str) -> NoReturn:
        raise InvalidMessage(f"stored {self.what} {detail}")

    def has(self, key: str) -> bool:
        return key in self._state

    def _take(self, key: str) -> object:
        if key not in self._state:
            self.fail(f"lacks the field {key!r} (truncated?)")
        self._read.add(key)
        return self._state[key]

    def finish(self) -> None:
        """``InvalidMessage`` if the state holds a field nobody read (an extra or foreign field)."""
        extra = sorted(set(self._state) - self._read)
        if extra:
            self.fail(f"has unknown field(s) {', '.join(map(repr, extra))}")

    # -- scalars ----------------------------------------------------------------------

    def integer(self, key: str, *, minimum: int, maximum: int) -> int:
        value = self._take(key)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.fail(f"field {key!r} must be an integer in [{minimum}, {maximum}]; found {value!r}")
        return int(value)

    def boolean(self, key: str) -> bool:
        value = self._take(key)
        if not isinstance(value, bool):
            self.fail(f"field {key!r} must be a bool; found {type(value).__name__}")
        return value

    def text(self, key: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = self._take(key)
        if not isinstance(value, str):
            self.fail(f"field {key!r} must be a str; found {type(value).__name__}")
        if choices is not None and value not in choices:
            self.fail(f"field {key!r} must be one of {', '.join(map(repr, choices))}; found {value!r}")
        return str(value)

    def blob(self, key: str, *, sizes: tuple[int, ...] | None = None) -> bytes:
        """Bytes whose length is one of ``sizes`` (0 in ``sizes``: the field may be empty, i.e. unset; None: any)."""
        value = self._take(key)
        if not isinstance(value, bytes):
            self.fail(f"field {key!r} must be bytes; found {type(value).__name__}")
        if sizes is not None and len(value) not in sizes:
            expected = " or ".join(str(size) for size in sizes)
            self.fail(f"field {key!r} must be {expected} bytes; found {len(value)}")
        return bytes(value)

    def optional_blob(self, key: str, *, size: int) -> bytes | None:
        """``size`` bytes, or the empty string for "none"."""
        value = self.blob(key, sizes=(0, size))
        return value or None

    # -- lists ---------------------------------------------------------------------------

    def _list(self, key: str) -> list[object]:
        value = self._take(key)
        if not isinstance(value, list):
            self.fail(f"field {key!r} must be a list; found {type(value).__name__}")
        return value

    def integers(self, key: str, *, minimum: int, maximum: int, increasing: bool = True) -> list[int]:
        """A list of integers in [minimum, maximum]; strictly increasing unless ``increasing=False``."""
        values = self._list(key)
        previous = minimum - 1
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
                self.fail(f"field {key!r} must list integers in [{minimum}, {maximum}]")
            if increasing and value <= previous:
                self.fail(f"field {key!r} must list distinct integers in increasing order")
            previous = value
        return [int(value) for value in values]  # type: ignore[call-overload]  # checked above

    def texts(self, key: str) -> list[str]:
        values = self._list(key)
        if not all(isinstance(value, str) for value in values):
            self.fail(f"field {key!r} must be a list of str")
        return [str(value) for value in values]

    def blobs(self, key: str, *, size: int | None = None) -> list[bytes]:
        """A list of byte strings, each ``size`` bytes long when ``size`` is given."""
        values = self._list(key)
        out = []
        for value in values:
            if not isinstance(value, bytes) or (size is not None and len(value) != size):
                self.fail(f"field {key!r} must be a list of {size if size is not None else 'some'}-byte strings")
            out.append(bytes(value))
        return out

    def keyed_blobs(self, keys: str, values: str, *, maximum: int, size: int | None = None) -> dict[int, bytes]:
        """The map stored as ``keys`` (increasing integers in [0, maximum]) and ``values`` (as many byte strings)."""
        indices = self.integers(keys, minimum=0, maximum=maximum)
        blobs = self.blobs(values, size=size)
        if len(indices) != len(blobs):
            self.fail(f"fields {keys!r} and {values!r} must have the same length")
        return dict(zip(indices, blobs))

    def nested_blobs(self, outer: str, sizes: str, inner: str, values: str, *, maximum: int,
                     size: int | None = None) -> dict[int, dict[int, bytes]]:
        """The map of maps stored by :func:`nested` in these four fields (keys in [0, maximum])."""
        keys = self.integers(outer, minimum=0, maximum=maximum)
        counts = self.integers(sizes, minimum=0, maximum=maximum + 1, increasing=False)
        inner_keys = self.integers(inner, minimum=0, maximum=maximum, increasing=False)
        blobs = self.blobs(values, size=size)
        if len(counts) != len(keys) or sum(counts) != len(inner_keys) or len(blobs) != len(inner_keys):
            self.fail(f"fields {outer!r}, {sizes!r}, {inner!r} and {values!r} do not describe one map of maps")
        out: dict[int, dict[int, bytes]] = {}
        start = 0
        for key, count in zip(keys, counts):
            members = inner_keys[start : start + count]
            if members != sorted(set(members)):
                self.fail(f"field {inner!r} must list each inner map's keys once, in increasing order")
            out[key] = dict(zip(members, blobs[start : start + count]))
            start += count
        return out

    # -- arrays --------------------------------------------------------------------------

    def vector(self, key: str, *, dtype: np.dtype[np.generic] | type[np.generic], length: int) -> np.ndarray:
        """A 1-D array of exactly ``dtype`` and ``length`` (a private, writeable copy)."""
        value = self._take(key)
        expected = np.dtype(dtype)
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype != expected:
            found = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else \
                type(value).__name__
            self.fail(f"field {key!r} must be a 1-D {expected} array; found {found}")
        if value.size != length:
            self.fail(f"field {key!r} must have {length} coordinates; found {value.size}")
        return np.array(value, dtype=expected, copy=True, order="C")

    def optional_vector(self, key: str, *, dtype: np.dtype[np.generic] | type[np.generic],
                        length: int) -> np.ndarray | None:
        """As :meth:`vector`, or None for an empty array of ``dtype`` (how a state stores "no vector")."""
        value = self._state.get(key)
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.size == 0 and value.dtype == np.dtype(dtype):
            self._read.add(key)
            return None
        return self.vector(key, dtype=dtype, length=length)

    def require(self, condition: bool, detail: str) -> None:
        """``InvalidMessage`` with ``detail`` unless ``condition`` (cross-field consistency)."""
        if not condition:
            self.fail(detail)

