"""Batched fast paths of the crypto SecAgg leans on, byte-for-byte equal to ``securefl.crypto``.

    agree_many(key, peers, ...)[v] == keys.agree(key, peers[v], ...)     (X25519 + HKDF-SHA256)
    hkdf32(secret, info)           == keys.hkdf(secret, info=info)        (32 bytes, no salt)
    MaskAccumulator.add(seed, label, sign):
        total <- total + sign * prg.expand(seed, label, d, k)   (mod 2^k)

Why they exist: with n = 100 clients on the complete graph one round makes
about 2*10^4 X25519 agreements and 10^4 mask expansions of d words, so the
per-call cost around the primitives matters. ``agree_many`` builds the HKDF
info from a precomputed prefix, and ``hkdf32`` runs HMAC-SHA256 on hashlib
with the fixed extract key's states precomputed; ``MaskAccumulator`` writes
each AES-CTR keystream into one per-thread reused buffer (no fresh
allocation, no page faults, warm in cache) and adds it in place, reducing
mod 2^k once at the end (exact: 2^k divides the word size, so reduction
commutes with the additions). The tests check every output against
``securefl.crypto``.

``counters`` tallies the primitive work done (agreements, keystream bytes) so
a benchmark can time the same amount of bare primitive work; it never affects
results and is not thread-safe.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl import ring
from securefl.crypto.keys import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, context
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.base import client_id

__all__ = ["AgreementKey", "MaskAccumulator", "WorkCounters", "agree_many", "counters", "hkdf32"]

_AGREE_INFO = "securefl/agree/v1"  # securefl.crypto.keys: info = context(this, label, session, round, ...)
_PRG_INFO = b"securefl/prg/v1"  # securefl.crypto.prg: key = HKDF(seed, info=this || label)
_CTR_FROM_ZERO = modes.CTR(bytes(16))  # immutable; one mode object serves every key
_BLOCK = 16
SEED_BYTES = 32


@dataclass
class WorkCounters:
    """Primitive work done since the last :meth:`reset` (benchmark instrumentation)."""

    agreements: int = 0
    expansions: int = 0
    keystream_bytes: int = 0

    def reset(self) -> None:
        self.agreements = self.expansions = self.keystream_bytes = 0


counters = WorkCounters()


# HMAC-SHA256 (RFC 2104) by hand on hashlib: H((K ^ opad) || H((K ^ ipad) || m)), K zero-padded to
# 64 bytes. The extract step's key is the fixed all-zero salt, so its two padded-key states are hashed
# once here and copied per call; that halves the cost of hmac.digest on these short inputs.
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))
_EXTRACT_INNER = hashlib.sha256(bytes(64).translate(_IPAD))
_EXTRACT_OUTER = hashlib.sha256(bytes(64).translate(_OPAD))
_KEY_PADDING = bytes(32)


def hkdf32(secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with no salt and 32 bytes of output.

    PRK = HMAC(0^32, secret); OKM = T(1) = HMAC(PRK, info || 0x01).
    """
    inner = _EXTRACT_INNER.copy()
    inner.update(secret)
    outer = _EXTRACT_OUTER.copy()
    outer.update(inner.digest())
    key = outer.digest() + _KEY_PADDING
    expanded = hashlib.sha256(key.translate(_IPAD) + info + b"\x01").digest()
    return hashlib.sha256(key.translate(_OPAD) + expanded).digest()


class AgreementKey:
    """An X25519 key pair whose raw private bytes can be secret-shared.

    ``generate`` draws the private key from the OS CSPRNG (``os.urandom``), like
    ``securefl.crypto.keys.KeyPair.generate``. ``repr`` shows the public key only.
    """

    __slots__ = ("private_bytes", "public_bytes", "_private")

    def __init__(self, private_bytes: bytes) -> None:
        if not isinstance(private_bytes, (bytes, bytearray)) or len(private_bytes) != PRIVATE_KEY_BYTES:
            raise ConfigurationError(f"X25519 private key must be {PRIVATE_KEY_BYTES} bytes")
        self.private_bytes = bytes(private_bytes)
        self._private = X25519PrivateKey.from_private_bytes(self.private_bytes)
        self.public_bytes = self._private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> AgreementKey:
        return cls(os.urandom(PRIVATE_KEY_BYTES))

    def __repr__(self) -> str:
        return f"AgreementKey(public={self.public_bytes.hex()})"


_PUBLIC_FIELD = b"\x01" + PUBLIC_KEY_BYTES.to_bytes(4, "big")  # context's tag and length of a public key


@lru_cache(maxsize=4096)
def _party_field(client: int) -> bytes:
    """The text field of ``keys.context`` for ``client_id(client)`` (tag 0x02, u32 length, UTF-8 body)."""
    body = client_id(client).encode("utf-8")
    return b"\x02" + len(body).to_bytes(4, "big") + body


def agree_many(
    key: AgreementKey,
    peers: Mapping[int, bytes],
    *,
    own: int,
    label: str,
    session: bytes,
    round: int,
) -> dict[int, bytes]:
    """``keys.agree(key, peers[v], label, session, round, parties=(client own, client v))`` for every v.

    Raises ``InvalidMessage`` naming the peer whose public key is malformed or
    of low order (the all-zero shared secret, RFC 7748 section 6.1).
    """
    own_party = client_id(own)
    own_field = _party_field(own)
    own_public = key.public_bytes
    own_public_field = _PUBLIC_FIELD + own_public
    # info = context(_AGREE_INFO, label, session, round, party_low, party_high, public_low, public_high):
    # a cached encoding of the first four fields, then the four per-peer fields.
    prefix = b"\x00\x08" + context(_AGREE_INFO, label, bytes(session), round)[2:]
    private = key._private
    out: dict[int, bytes] = {}
    for peer, public in peers.items():
        if len(public) != PUBLIC_KEY_BYTES:
            raise InvalidMessage(f"client/{peer}'s public key is {len(public)} bytes; expected {PUBLIC_KEY_BYTES}")
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:
            raise InvalidMessage(f"client/{peer}'s public key is a low-order point") from None
        peer_party = client_id(peer)
        if peer_party == own_party:
            raise InvalidMessage(f"client/{peer} cannot agree a key with itself")
        peer_field = _party_field(peer)
        parties = own_field + peer_field if own_party < peer_party else peer_field + own_field
        peer_public_field = _PUBLIC_FIELD + public
        publics = (own_public_field + peer_public_field if own_public < public
                   else peer_public_field + own_public_field)
        out[peer] = hkdf32(shared, prefix + parties + publics)
    counters.agreements += len(peers)
    return out


_zeros = np.zeros(0, dtype=np.uint8)
_scratch = threading.local()


def _zero_input(nbytes: int) -> np.ndarray:
    """A cached run of zero bytes (read-only, shared): AES-CTR encrypts zeros into its keystream."""
    global _zeros
    if _zeros.size < nbytes:
        zeros = np.zeros(max(nbytes, 2 * _zeros.size), dtype=np.uint8)
        zeros.flags.writeable = False
        _zeros = zeros
    return _zeros[:nbytes]


def _keystream_buffer(nbytes: int) -> np.ndarray:
    """This thread's reused keystream buffer, at least ``nbytes`` long.

    Every accumulator on a thread writes its keystreams into the same buffer,
    so a round of many clients touches (and page-faults) it once, and it stays
    in cache. Each thread has its own, so engines on different threads are safe.
    """
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < nbytes:
        buffer = _scratch.buffer = np.empty(max(nbytes, 2 * (0 if buffer is None else buffer.size)), dtype=np.uint8)
    return buffer


class MaskAccumulator:
    """total <- total +/- PRG(seed, label) in Z_2^k, one reused keystream buffer for all masks.

    The PRG is ``securefl.crypto.prg.expand``: AES-256-CTR (counter 0) under
    key HKDF-SHA256(seed, info="securefl/prg/v1" || label), read as
    little-endian words of the ring dtype. ``total`` is updated in place and
    reduced mod 2^k by :meth:`finish`.
    """

    __slots__ = ("total", "ring_bits", "_nbytes", "_dtype", "_start")

    def __init__(self, total: np.ndarray, ring_bits: int) -> None:
        dtype = ring.ring_dtype(ring_bits)
        if not isinstance(total, np.ndarray) or total.dtype != dtype or total.ndim != 1 or not total.flags.c_contiguous:
            raise ConfigurationError(f"accumulator must be a contiguous 1-D {dtype} array")
        if not total.flags.writeable:
            raise ConfigurationError("accumulator must be writeable")
        self.total = total
        self.ring_bits = ring_bits
        self._nbytes = total.size * dtype.itemsize
        self._dtype = dtype.newbyteorder("<")
        self._start: np.ndarray | None = None

    @classmethod
    def starting_from(cls, vector: np.ndarray, ring_bits: int) -> MaskAccumulator:
        """An accumulator whose total starts as a copy of ``vector`` (which is left untouched).

        The copy is fused into the first :meth:`add` (total = vector +/- mask in
        one pass), saving a pass over the vector.
        """
        accumulator = cls(np.empty(np.shape(vector), dtype=ring.ring_dtype(ring_bits)), ring_bits)
        accumulator._start = vector
        return accumulator

    def add(self, seed: bytes, label: bytes, sign: int = 1) -> None:
        """total += PRG(seed, label) for sign = +1, total -= PRG(seed, label) for sign = -1."""
        if len(seed) != SEED_BYTES:
            raise ConfigurationError(f"PRG seed must be {SEED_BYTES} bytes; found {len(seed)}")
        nbytes = self._nbytes
        zeros = _zeros if _zeros.size >= nbytes else _zero_input(nbytes)
        # CTR's update_into wants room for one block more than it writes.
        buffer = getattr(_scratch, "buffer", None)
        if buffer is None or buffer.size < nbytes + _BLOCK - 1:
            buffer = _keystream_buffer(nbytes + _BLOCK - 1)
        encryptor = Cipher(algorithms.AES(hkdf32(seed, _PRG_INFO + label)), _CTR_FROM_ZERO).encryptor()
        encryptor.update_into(zeros[:nbytes], buffer)
        words = buffer[:nbytes].view(self._dtype)
        base, self._start = (self.total, None) if self._start is None else (self._start, None)
        if sign > 0:
            np.add(base, words, out=self.total)
        else:
            np.subtract(base, words, out=self.total)
        counters.expansions += 1
        counters.keystream_bytes += nbytes

    def finish(self) -> np.ndarray:
        """Reduce mod 2^k and hand back the total."""
        if self._start is not None:  # no mask was added: the total is the starting vector
            np.copyto(self.total, self._start)
            self._start = None
        return ring.reduce(self.total, self.ring_bits)
