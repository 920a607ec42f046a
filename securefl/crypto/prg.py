"""32-byte seed + domain label -> uniform vector of Z_2^k, from the AES-CTR keystream.

    key    = HKDF-SHA256(ikm=seed, salt=None, info="securefl/prg/v1" || label)
    stream = AES-256-CTR(key, counter block 0^128)
    vector = stream read as little-endian words of the ring dtype, reduced mod 2^k

Each word is uniform over 2^8, 2^16, 2^32 or 2^64 values and 2^k divides
that, so every coordinate is exactly uniform mod 2^k for any k <= 64. The
label gives domain separation: one seed never feeds two expansions with the
same key. Security rests on AES as a PRF and HKDF as a KDF.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securefl.errors import ConfigurationError
from securefl.ring import CHUNK_BYTES, reduce, ring_dtype

__all__ = ["SEED_BYTES", "expand", "keystream_bytes", "accumulate"]

SEED_BYTES = 32
_PRG_INFO = b"securefl/prg/v1"
_ZERO_COUNTER = bytes(16)
_BLOCK = 16
_zeros = np.zeros(0, dtype=np.uint8)


def _zero_input(nbytes: int) -> memoryview:
    """A cached read-only run of zero bytes: CTR encrypts zeros into the keystream."""
    global _zeros
    if _zeros.size < nbytes:
        _zeros = np.zeros(max(nbytes, 2 * _zeros.size), dtype=np.uint8)
    return memoryview(_zeros[:nbytes])


def _stream_key(seed: bytes, label: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        length = len(seed) if isinstance(seed, (bytes, bytearray)) else type(seed).__name__
        raise ConfigurationError(f"PRG seed must be {SEED_BYTES} bytes; found {length}")
    if not isinstance(label, (bytes, bytearray)):
        raise ConfigurationError(f"PRG label must be bytes; found {type(label).__name__}")
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PRG_INFO + bytes(label))
    return kdf.derive(bytes(seed))


def _encryptor(seed: bytes, label: bytes):
    return Cipher(algorithms.AES(_stream_key(seed, label)), modes.CTR(_ZERO_COUNTER)).encryptor()


def keystream_bytes(seed: bytes, label: bytes, nbytes: int) -> np.ndarray:
    """``nbytes`` of keystream as a uint8 array (written in place, no extra copy)."""
    if nbytes < 0:
        raise ConfigurationError(f"keystream length must be >= 0; found {nbytes}")
    encryptor = Cipher(algorithms.AES(_stream_key(seed, label)), modes.CTR(_ZERO_COUNTER)).encryptor()
    out = np.empty(nbytes + _BLOCK - 1, dtype=np.uint8)
    written = encryptor.update_into(_zero_input(nbytes), out)
    if written != nbytes:  # pragma: no cover - CTR is a stream mode
        raise RuntimeError("AES-CTR wrote a short keystream")
    return out[:nbytes]


def expand(seed: bytes, label: bytes, length: int, ring_bits: int) -> np.ndarray:
    """A uniform vector of ``length`` elements of Z_2^k derived from ``seed`` and ``label``."""
    dtype = ring_dtype(ring_bits)
    if length < 0:
        raise ConfigurationError(f"vector length must be >= 0; found {length}")
    stream = keystream_bytes(seed, label, length * dtype.itemsize)
    vector = stream.view(dtype.newbyteorder("<"))
    if not vector.dtype.isnative:  # pragma: no cover - big-endian hosts
        vector = vector.astype(dtype)
    return reduce(vector, ring_bits)


def accumulate(
    out: np.ndarray,
    streams: Sequence[tuple[bytes, bytes]],
    ring_bits: int,
    *,
    subtract: bool = False,
    start_from: np.ndarray | None = None,
) -> np.ndarray:
    """out +/-= sum over (seed, label) of expand(seed, label) (mod 2^k), in place.

    With ``start_from``, ``out`` is first overwritten by it (so
    ``out = start_from +/- masks`` costs no separate copy pass).

    Equal to adding each :func:`expand` output in turn, but computed chunk by
    chunk: every stream's keystream for a chunk is written to a small scratch
    buffer and folded into ``out`` while both are in cache, so the cost stays
    close to that of the AES-CTR keystream itself.
    """
    dtype = ring_dtype(ring_bits)
    if out.dtype != dtype or out.ndim != 1 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ConfigurationError(f"accumulator must be a writeable contiguous 1-D {dtype} array")
    if start_from is not None and (start_from.shape != out.shape or start_from.dtype != dtype):
        raise ConfigurationError(f"start_from must be a {dtype} vector of {out.size} coordinates")
    encryptors = [_encryptor(seed, label) for seed, label in streams]
    if out.size == 0:
        return out
    step = max(1, CHUNK_BYTES // dtype.itemsize)
    scratch = np.empty(step * dtype.itemsize + _BLOCK - 1, dtype=np.uint8)
    fold = np.subtract if subtract else np.add
    for start in range(0, out.size, step):
        window = out[start : start + step]
        nbytes = window.size * dtype.itemsize
        zeros = _zero_input(nbytes)
        keystream = scratch[:nbytes].view(dtype.newbyteorder("<"))
        if start_from is not None:
            window[...] = start_from[start : start + step]
        for encryptor in encryptors:
            encryptor.update_into(zeros, scratch)
            fold(window, keystream, out=window)
    return reduce(out, ring_bits)
