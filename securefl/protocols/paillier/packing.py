"""Many signed integers per Paillier plaintext: the slot layout.

A value v in [-B, B] is stored with offset B, as v + B in [0, 2B], in a slot
of w bits; plaintext t carries ``slots`` values, slot j at bits [j w, (j+1) w):

    m_t = sum_{j < slots} (v_{t slots + j} + B) 2^(j w)        (unused slots hold 0)

Adding T <= T_max plaintexts adds slot by slot without carries as long as
2 B T_max < 2^w, so w = bitlength(2 B T_max); and the sum stays below
2^(slots w) <= 2^(|n| - 1) < n when slots = floor((|n| - 1) / w), so Paillier's
addition mod n never wraps either. Both are fixed when the layout is made:
overflow between slots is impossible by construction, not detected after the
fact. Decoding a sum of T plaintexts subtracts T B from every slot.

Packing is numpy end to end (bits of all values at once, then one
``int.from_bytes`` per plaintext); there is no Python loop per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from securefl import validation
from securefl.errors import ConfigurationError

__all__ = ["SlotLayout", "MAX_SLOT_BITS"]

MAX_SLOT_BITS = 64
# Plaintexts per numpy batch: bounds the bit matrices to ~(batch x slots x 64) bytes.
_BATCH = 2048


@dataclass(frozen=True)
class SlotLayout:
    """Offset encoding of values in [-bound, bound] into w-bit slots of a plaintext.

    ``bound`` is B, ``max_terms`` the most plaintexts ever added (the number
    of clients), ``plaintext_bits`` the bits usable below n (|n| - 1).
    ``slot_bits`` = bitlength(2 B max_terms) and ``slots`` = floor(plaintext_bits
    / slot_bits) are derived; a layout with no room for one slot is refused.
    """

    bound: int
    max_terms: int
    plaintext_bits: int
    slot_bits: int = field(init=False)
    slots: int = field(init=False)

    def __post_init__(self) -> None:
        bound = validation.positive_int(self.bound, "bound")
        max_terms = validation.positive_int(self.max_terms, "max_terms")
        plaintext_bits = validation.positive_int(self.plaintext_bits, "plaintext_bits")
        slot_bits = (2 * bound * max_terms).bit_length()
        if slot_bits > MAX_SLOT_BITS:
            raise ConfigurationError(
                f"slot width {slot_bits} bits (a sum of max_clients={max_terms} values in "
                f"[-{bound}, {bound}]) exceeds the {MAX_SLOT_BITS}-bit limit of the packing"
            )
        if slot_bits > plaintext_bits:
            raise ConfigurationError(
                f"slot width {slot_bits} bits (a sum of max_clients={max_terms} values in "
                f"[-{bound}, {bound}]) does not fit the {plaintext_bits}-bit plaintext of a "
                f"{plaintext_bits + 1}-bit key; use a larger key or fewer value bits / clients"
            )
        object.__setattr__(self, "slot_bits", slot_bits)
        object.__setattr__(self, "slots", plaintext_bits // slot_bits)

    @classmethod
    def for_key(cls, *, bound: int, max_terms: int, key_bits: int) -> SlotLayout:
        """The layout for an n of exactly ``key_bits`` bits (plaintexts below 2^(key_bits-1) <= n)."""
        return cls(bound=bound, max_terms=max_terms, plaintext_bits=validation.positive_int(key_bits, "key_bits") - 1)

    @property
    def used_bits(self) -> int:
        """slots x slot_bits: every packed plaintext, and every sum of them, is below 2^used_bits."""
        return self.slots * self.slot_bits

    @property
    def _bytes(self) -> int:
        return (self.used_bits + 7) // 8

    def plaintexts(self, count: int) -> int:
        """Plaintexts (ciphertexts) needed for ``count`` values: ceil(count / slots)."""
        return -(-validation.non_negative_int(count, "value count") // self.slots)

    def check(self, values: np.ndarray, *, what: str = "value") -> np.ndarray:
        """``values`` as a 1-D int64 array, or ``ConfigurationError`` naming the first out of [-B, B]."""
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise ConfigurationError(
                f"{what}s must be a 1-D integer array; found {values.dtype} of shape {values.shape}"
            )
        if values.dtype.kind == "u":
            outside = values > self.bound
        else:
            outside = (values < -self.bound) | (values > self.bound)
        if outside.any():
            index = int(np.flatnonzero(outside)[0])
            raise ConfigurationError(
                f"{what} {index} is {int(values[index])}, outside [-{self.bound}, {self.bound}], the "
                f"range the slots are sized for"
            )
        return values.astype(np.int64, copy=False)

    def encode(self, values: np.ndarray) -> list[int]:
        """Pack signed ``values`` (each in [-B, B]) into ceil(len / slots) plaintext integers."""
        values = self.check(values)
        count = self.plaintexts(values.size)
        raw = np.zeros(count * self.slots, dtype=np.uint64)
        raw[: values.size] = (values + self.bound).astype(np.uint64)
        rows = raw.reshape(count, self.slots)
        out: list[int] = []
        for start in range(0, count, _BATCH):
            out.extend(self._pack(rows[start : start + _BATCH]))
        return out

    def decode(self, plaintexts: list[int], *, length: int, terms: int) -> np.ndarray | None:
        """The int64 slot sums of ``terms`` packed inputs, minus ``terms`` x B; ``None`` if inconsistent.

        Returns ``None`` (one uniform answer, no hint which check failed) when
        a plaintext has bits above slots x slot_bits, a slot exceeds
        2 B terms, or a padding slot is non-zero: none of that can come from
        ``terms`` honest inputs of ``length`` values.
        """
        length = int(length)
        if not 1 <= terms <= self.max_terms or len(plaintexts) != self.plaintexts(length):
            return None
        limit = 1 << self.used_bits
        if any(not 0 <= int(p) < limit for p in plaintexts):
            return None
        raw = np.concatenate(
            [self._unpack(plaintexts[start : start + _BATCH]) for start in range(0, len(plaintexts), _BATCH)]
        ) if plaintexts else np.zeros(0, dtype=np.uint64)
        if raw[length:].any() or (raw[:length] > np.uint64(2 * self.bound * terms)).any():
            return None
        shifted = raw[:length] - np.uint64(terms * self.bound)  # wraps below zero in uint64 ...
        signed: np.ndarray = shifted.view(np.int64)  # ... and two's complement reads it back: |sum| <= T B < 2^63
        return signed

    # -- bit plumbing: slots <-> big-endian bytes of each plaintext ---------------------------

    def _pack(self, raw: np.ndarray) -> list[int]:
        count, width = raw.shape[0], self.slot_bits
        octets = raw.astype(">u8").view(np.uint8).reshape(count, self.slots, 8)
        bits = np.unpackbits(octets, axis=2)[:, ::-1, 64 - width :]  # slot slots-1 first, w low bits
        pad = 8 * self._bytes - self.used_bits
        flat = np.zeros((count, 8 * self._bytes), dtype=np.uint8)
        flat[:, pad:] = bits.reshape(count, self.used_bits)
        blob = np.packbits(flat, axis=1).tobytes()
        size = self._bytes
        return [int.from_bytes(blob[i * size : (i + 1) * size], "big") for i in range(count)]

    def _unpack(self, plaintexts: list[int]) -> np.ndarray:
        count, width, size = len(plaintexts), self.slot_bits, self._bytes
        blob = b"".join(int(p).to_bytes(size, "big") for p in plaintexts)
        bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8).reshape(count, size), axis=1)
        bits = bits[:, 8 * size - self.used_bits :].reshape(count, self.slots, width)[:, ::-1, :]
        full = np.zeros((count, self.slots, 64), dtype=np.uint8)
        full[:, :, 64 - width :] = bits
        return np.packbits(full, axis=2).reshape(count * self.slots, 8).view(">u8").reshape(-1).astype(np.uint64)
