"""The random ternary projection R (ROWS x d) that bounds ||q|| through a few thousand digits.

Entry R_{j,i} = a - b for two independent uniform bits, so it is 0 with
probability 1/2 and +-1 with probability 1/4 each (E r = 0, E r^2 = E r^4 = 1/2).
Column i is 64 bytes of AES-CTR keystream from the round's projection seed
(bits 0..255 the a's of its ROWS entries, bits 256..511 the b's, most
significant bit of each byte first). The keystream (64 d bytes) is drawn at
once; R is unpacked from it to float64 one block of 8,192 columns at a time.

Both products are exact mod p for any input: the field operand is split
into four 16-bit limbs, each limb product is summed in float64 (at most
d 2^16 < 2^53 for R q, d < 2^36 checked; 256 2^16 for R^T gamma), and the
limbs are recombined in F_p.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from securefl.crypto import prg
from securefl.errors import ConfigurationError
from securefl.protocols.validated import field

__all__ = ["ROWS", "project", "transpose_apply", "matrix"]

ROWS = 256
_COLUMN_BYTES = 2 * ROWS // 8
_BLOCK_COLUMNS = 8192
_LIMBS = 4
_LIMB_BITS = 16
_LABEL = b"projection"
_MAX_LENGTH = 1 << 36  # d 2^16 limb sums stay below 2^53


def _limbs(elements: np.ndarray) -> np.ndarray:
    """(n, 4) float64: the 16-bit limbs of canonical field elements, low first."""
    shifts = np.arange(_LIMBS, dtype=np.uint64) * np.uint64(_LIMB_BITS)
    limbs: np.ndarray = ((elements[:, None] >> shifts[None, :]) & np.uint64(0xFFFF)).astype(np.float64)
    return limbs


def _recombine(limb_sums: np.ndarray) -> np.ndarray:
    """sum_l 2^(16 l) S_l mod p for exact integer limb sums S (float64, shape (n, 4))."""
    total = np.zeros(limb_sums.shape[0], dtype=field.DTYPE)
    for limb in range(_LIMBS):
        part = field.from_signed(limb_sums[:, limb].astype(np.int64))
        field.add(total, field.mul(part, np.uint64(1 << (_LIMB_BITS * limb))), out=total)
    return total


def _blocks(seed: bytes, length: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first column, R^T block as float64 of shape (columns, ROWS)), one block held at a time."""
    if length >= _MAX_LENGTH:
        raise ConfigurationError(f"a projection of {length} coordinates could lose float64 exactness (limit 2^36)")
    stream = prg.keystream_bytes(seed, _LABEL, _COLUMN_BYTES * length).reshape(length, _COLUMN_BYTES)
    for start in range(0, length, _BLOCK_COLUMNS):
        bits = np.unpackbits(stream[start : start + _BLOCK_COLUMNS], axis=1)
        block = bits[:, :ROWS].astype(np.float64)
        block -= bits[:, ROWS:]
        yield start, block


def project(seed: bytes, vector: np.ndarray) -> np.ndarray:
    """R q mod p for a field vector q of length d (ROWS elements)."""
    limbs = _limbs(vector)
    sums = np.zeros((ROWS, _LIMBS), dtype=np.float64)
    for start, block in _blocks(seed, vector.size):
        sums += block.T @ limbs[start : start + block.shape[0]]
    return _recombine(sums)


def transpose_apply(seed: bytes, weights: np.ndarray, length: int) -> np.ndarray:
    """R^T gamma mod p for ROWS field elements gamma (``length`` = d elements)."""
    limbs = _limbs(weights)
    out = np.empty(length, dtype=field.DTYPE)
    for start, block in _blocks(seed, length):
        out[start : start + block.shape[0]] = _recombine(block @ limbs)
    return out


def matrix(seed: bytes, length: int) -> np.ndarray:
    """R itself as int64 (ROWS x length): for tests against a direct computation."""
    return np.concatenate([block.T for _, block in _blocks(seed, length)], axis=1).astype(np.int64) \
        if length else np.zeros((ROWS, 0), dtype=np.int64)
