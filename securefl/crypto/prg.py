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

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from securefl import validation
from securefl.crypto.keys import derive32
from securefl.errors import ConfigurationError
from securefl.ring import CHUNK_BYTES, reduce, ring_dtype

__all__ = ["SEED_BYTES", "expand", "keystream_bytes", "accumulate", "generator"]

SEED_BYTES = 32
_PRG_INFO = b"securefl/prg/v1"
_CTR_FROM_ZERO = modes.CTR(bytes(16))  # immutable: one mode object serves every key
_BLOCK = 16
_OPEN_STREAMS = 256  # accumulate keeps at most this many AES contexts alive at once
_zeros = np.zeros(0, dtype=np.uint8)
_scratch = threading.local()


def _zero_input(nbytes: int) -> np.ndarray:
    """A cached run of zero bytes (read-only, shared): CTR encrypts zeros into the keystream."""
    global _zeros
    if _zeros.size < nbytes:
        zeros = np.zeros(max(nbytes, 2 * _zeros.size), dtype=np.uint8)
        zeros.flags.writeable = False
        _zeros = zeros
    return _zeros[:nbytes]


def _scratch_buffer(nbytes: int) -> np.ndarray:
    """This thread's reused keystream buffer, at least ``nbytes`` long.

    Reusing one buffer per thread keeps it paged in and warm in cache across
    calls; each thread has its own, so engines on different threads are safe.
    """
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < nbytes:
        buffer = _scratch.buffer = np.empty(nbytes, dtype=np.uint8)
    return buffer


def _stream_key(seed: bytes, label: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        length = f"{len(seed)} bytes" if isinstance(seed, (bytes, bytearray)) else type(seed).__name__
        raise ConfigurationError(f"PRG seed must be {SEED_BYTES} bytes; found {length}")
    if not isinstance(label, (bytes, bytearray)):
        raise ConfigurationError(f"PRG label must be bytes; found {type(label).__name__}")
    return derive32(bytes(seed), _PRG_INFO + label)


def _encryptor(seed: bytes, label: bytes) -> CipherContext:
    return Cipher(algorithms.AES(_stream_key(seed, label)), _CTR_FROM_ZERO).encryptor()


def keystream_bytes(seed: bytes, label: bytes, nbytes: int) -> np.ndarray:
    """``nbytes`` of keystream as a uint8 array (written in place, no extra copy)."""
    if nbytes < 0:
        raise ConfigurationError(f"keystream length must be >= 0; found {nbytes}")
    out = np.empty(nbytes + _BLOCK - 1, dtype=np.uint8)  # CTR's update_into wants a block of headroom
    written = _encryptor(seed, label).update_into(_zero_input(nbytes).data, out.data)
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


_UNIT_SIGNS = frozenset({1, -1})


def _signs(signs: int | Sequence[int], count: int) -> list[int]:
    if type(signs) is list and len(signs) == count and set(map(type, signs)) <= {int} and set(signs) <= _UNIT_SIGNS:
        return signs  # the common case: a list of plain +1 / -1 (a bool is not an int here)
    listed: list[int | np.integer[Any]]
    if isinstance(signs, (int, np.integer)):  # one sign for every stream (a bool is refused below)
        listed = [signs] * count
    else:
        listed = list(signs)
    if len(listed) != count or not all(validation.is_integer(sign) and sign in (1, -1) for sign in listed):
        raise ConfigurationError(f"signs must be +1 or -1, one per stream ({count}); found {signs!r}")
    return [int(sign) for sign in listed]


def accumulate(
    out: np.ndarray,
    streams: Sequence[tuple[bytes, bytes]],
    ring_bits: int,
    *,
    signs: int | Sequence[int] = 1,
    start_from: np.ndarray | None = None,
) -> np.ndarray:
    """out <- base + sum_i sign_i * expand(seed_i, label_i)  (mod 2^k), in place; returns ``out``.

    ``base`` is ``out`` itself, or ``start_from`` when given (``out`` is then
    overwritten, with no separate copy pass; ``start_from`` is not modified).
    ``signs`` is +1 or -1 for every stream, or one sign per stream.

    Equal to adding each :func:`expand` output in turn, but computed window by
    window: each stream's keystream for a window is written into one reused
    scratch buffer and folded into ``out`` while the window, the scratch and
    the zero input all sit in the L2 cache, so the cost stays close to that of
    the AES-CTR keystream itself. Words are added without reduction and
    reduced once at the end (exact: 2^k divides the word size).
    """
    dtype = ring_dtype(ring_bits)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.ndim != 1 or not out.flags.c_contiguous:
        raise ConfigurationError(f"accumulator must be a contiguous 1-D {dtype} array")
    if not out.flags.writeable:
        raise ConfigurationError("accumulator must be writeable")
    if start_from is not None and (not isinstance(start_from, np.ndarray) or start_from.shape != out.shape
                                   or start_from.dtype != dtype):
        raise ConfigurationError(f"start_from must be a {dtype} vector of {out.size} coordinates")
    signs = _signs(signs, len(streams))
    keys = [_stream_key(seed, label) for seed, label in streams]
    if start_from is not None and (not keys or out.size == 0):
        np.copyto(out, start_from)
    if not keys or out.size == 0:
        return reduce(out, ring_bits)
    itemsize = dtype.itemsize
    windows = -(-out.size * itemsize // CHUNK_BYTES)
    step = -(-out.size // windows)  # equal windows, each at most CHUNK_BYTES
    scratch = _scratch_buffer(step * itemsize + _BLOCK - 1)
    scratch_buffer = scratch.data
    word = dtype.newbyteorder("<")
    for first in range(0, len(keys), _OPEN_STREAMS):
        batch = range(first, min(first + _OPEN_STREAMS, len(keys)))
        encryptors = [(Cipher(algorithms.AES(keys[i]), _CTR_FROM_ZERO).encryptor(),
                       np.add if signs[i] > 0 else np.subtract) for i in batch]
        base = start_from if first == 0 else None
        for start in range(0, out.size, step):
            window = out[start : start + step]
            nbytes = window.size * itemsize
            zeros = _zero_input(nbytes).data
            keystream = scratch[:nbytes].view(word)
            # The first fold of a window reads the starting vector, so out needs no copy of it.
            previous = window if base is None else base[start : start + step]
            for encryptor, fold in encryptors:
                encryptor.update_into(zeros, scratch_buffer)
                fold(previous, keystream, out=window)
                previous = window
    return reduce(out, ring_bits)


_GENERATOR_INFO = b"securefl/prg-generator/v1"


def generator(seed: bytes, label: bytes) -> np.random.Generator:
    """A numpy Generator that is a deterministic function of a 32-byte ``seed`` and a domain ``label``.

        key  = HKDF-SHA256(ikm=seed, salt=None, info="securefl/prg-generator/v1" || label)
        rng  = Generator(PCG64(SeedSequence(int.from_bytes(key, "little"))))

    For noise that must be re-derived exactly by whoever learns the seed
    (SecAgg's removable noise): the same seed and label give the same draws
    on every party that runs the same numpy (PCG64 and SeedSequence are
    stable streams; the distribution methods of ``Generator`` may change
    between numpy releases, so every party of a session must run one numpy
    version). Unpredictable to anyone without the seed only as far as
    PCG64's output is: it is not a cryptographic PRG, so it serves noise
    whose privacy rests on the seed staying secret, never masks.
    """
    key = derive32(_check_seed(seed), _GENERATOR_INFO + _check_label(label))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(key, "little"))))


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        length = f"{len(seed)} bytes" if isinstance(seed, (bytes, bytearray)) else type(seed).__name__
        raise ConfigurationError(f"PRG seed must be {SEED_BYTES} bytes; found {length}")
    return bytes(seed)


def _check_label(label: bytes) -> bytes:
    if not isinstance(label, (bytes, bytearray)):
        raise ConfigurationError(f"PRG label must be bytes; found {type(label).__name__}")
    return bytes(label)
