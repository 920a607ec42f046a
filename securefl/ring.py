"""The ring Z_2^k as numpy unsigned integers, and its canonical byte packing.

An element of Z_2^k (1 <= k <= 64) is stored in the narrowest unsigned dtype
holding k bits; arithmetic wraps modulo the dtype width and is then reduced
modulo 2^k by masking. On the wire each coordinate takes ceil(k/8) bytes,
little-endian, so a 32-bit ring costs exactly 4 bytes per coordinate.
"""

from __future__ import annotations

import numpy as np

from securefl import validation
from securefl.errors import InvalidMessage

__all__ = [
    "MAX_RING_BITS",
    "ring_dtype",
    "ring_mask",
    "reduce",
    "add",
    "sub",
    "neg",
    "accumulate",
    "to_signed",
    "from_signed",
    "packed_size",
    "pack",
    "unpack",
]

MAX_RING_BITS = 64


def _check_bits(ring_bits: int) -> None:
    validation.integer(ring_bits, "ring_bits", minimum=1, maximum=MAX_RING_BITS)


def ring_dtype(ring_bits: int) -> np.dtype:
    """The narrowest unsigned dtype that holds ``ring_bits`` bits."""
    _check_bits(ring_bits)
    for width, dtype in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if ring_bits <= width:
            return np.dtype(dtype)
    raise AssertionError("unreachable")  # pragma: no cover


def ring_mask(ring_bits: int) -> int:
    """2^k - 1."""
    _check_bits(ring_bits)
    return (1 << ring_bits) - 1


def _needs_mask(ring_bits: int) -> bool:
    return ring_bits != ring_dtype(ring_bits).itemsize * 8


def reduce(vector: np.ndarray, ring_bits: int) -> np.ndarray:
    """Reduce ``vector`` (already of the ring dtype) modulo 2^k, in place."""
    if _needs_mask(ring_bits):
        np.bitwise_and(vector, vector.dtype.type(ring_mask(ring_bits)), out=vector)
    return vector


def add(accumulator: np.ndarray, term: np.ndarray, ring_bits: int) -> np.ndarray:
    """accumulator += term (mod 2^k), in place; returns the accumulator."""
    np.add(accumulator, term, out=accumulator)
    return reduce(accumulator, ring_bits)


def sub(accumulator: np.ndarray, term: np.ndarray, ring_bits: int) -> np.ndarray:
    """accumulator -= term (mod 2^k), in place; returns the accumulator."""
    np.subtract(accumulator, term, out=accumulator)
    return reduce(accumulator, ring_bits)


CHUNK_BYTES = 1 << 18  # 256 KiB: a chunk of a vector and a scratch buffer stay in the L2 cache


def accumulate(accumulator: np.ndarray, terms: list[np.ndarray], ring_bits: int) -> np.ndarray:
    """accumulator += sum of ``terms`` (mod 2^k), chunk by chunk so the partial sum stays in cache."""
    if not terms:
        return accumulator
    step = max(1, CHUNK_BYTES // accumulator.dtype.itemsize)
    for start in range(0, accumulator.size, step):
        window = accumulator[start : start + step]
        for term in terms:
            np.add(window, term[start : start + step], out=window)
    return reduce(accumulator, ring_bits)


def neg(vector: np.ndarray, ring_bits: int) -> np.ndarray:
    """-vector (mod 2^k), as a new array."""
    out = np.zeros_like(vector)
    np.subtract(out, vector, out=out)
    return reduce(out, ring_bits)


def to_signed(vector: np.ndarray, ring_bits: int) -> np.ndarray:
    """Map Z_2^k to the signed range [-2^(k-1), 2^(k-1)) as int64 (sign extension)."""
    _check_bits(ring_bits)
    shift = 64 - ring_bits
    widened = np.asarray(vector).astype(np.uint64) << np.uint64(shift)
    return widened.view(np.int64) >> np.int64(shift)


def from_signed(values: np.ndarray, ring_bits: int) -> np.ndarray:
    """Map int64 values to Z_2^k (two's complement, reduced mod 2^k)."""
    out = np.asarray(values, dtype=np.int64).astype(ring_dtype(ring_bits))
    return reduce(out, ring_bits)


def packed_size(length: int, ring_bits: int) -> int:
    """Bytes on the wire for ``length`` coordinates of Z_2^k."""
    return length * ((ring_bits + 7) // 8)


def pack_buffer(vector: np.ndarray, ring_bits: int) -> bytes | memoryview:
    """Canonical little-endian packing, ceil(k/8) bytes per coordinate.

    Returns a zero-copy buffer over ``vector`` when the coordinate width is
    the dtype's width (8/16/32/64-bit rings on little-endian hosts).
    """
    dtype = ring_dtype(ring_bits).newbyteorder("<")
    vector = np.ascontiguousarray(vector, dtype=dtype)
    width = (ring_bits + 7) // 8
    if width == dtype.itemsize:
        return vector.data.cast("B")
    return vector.view(np.uint8).reshape(-1, dtype.itemsize)[:, :width].tobytes()


def pack(vector: np.ndarray, ring_bits: int) -> bytes:
    """:func:`pack_buffer` as ``bytes``."""
    return bytes(pack_buffer(vector, ring_bits))


def unpack(data: bytes | memoryview, ring_bits: int, length: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack`; checks the length and that every value is < 2^k.

    For byte-aligned rings the result is a read-only view of ``data`` (no copy).
    """
    dtype = ring_dtype(ring_bits)
    width = (ring_bits + 7) // 8
    if len(data) % width:
        raise InvalidMessage(
            f"ring vector of {len(data)} bytes is not a whole number of {width}-byte coordinates"
        )
    count = len(data) // width
    if length is not None and count != length:
        raise InvalidMessage(f"ring vector has {count} coordinates; expected {length}")
    raw = np.frombuffer(data, dtype=np.uint8)
    if width == dtype.itemsize:
        vector = raw.view(dtype.newbyteorder("<"))
        if not vector.dtype.isnative:  # pragma: no cover - big-endian hosts
            vector = vector.astype(dtype)
    else:
        wide = np.zeros((count, dtype.itemsize), dtype=np.uint8)
        wide[:, :width] = raw.reshape(count, width)
        vector = wide.view(dtype.newbyteorder("<")).reshape(count).astype(dtype)
    if _needs_mask(ring_bits) and count and int(vector.max()) > ring_mask(ring_bits):
        raise InvalidMessage(f"ring vector holds a value >= 2^{ring_bits}")
    return vector
