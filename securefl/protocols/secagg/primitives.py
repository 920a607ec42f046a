"""Batched fast paths of the crypto SecAgg leans on, byte-for-byte equal to ``securefl.crypto``.

    agree_many(key, peers, ...)[v] == keys.agree(key, peers[v], ...)     (X25519 + HKDF-SHA256)
    MaskAccumulator: add(seed, label, sign) for each mask, then finish():
        total <- total + sum of sign * prg.expand(seed, label, d, k)   (mod 2^k)

Why they exist: with n = 100 clients on the complete graph one round makes
about 2*10^4 X25519 agreements and 10^4 mask expansions of d words, so the
per-call cost around the primitives matters. ``agree_many`` builds the HKDF
info from a precomputed prefix around ``keys.derive32``; ``MaskAccumulator``
collects a party's masks and folds them all in one ``prg.accumulate`` pass
(keystream and sum stay in cache). The tests check every output against
``securefl.crypto``.

``counters`` tallies the primitive work done (agreements, keystream bytes,
Ed25519 signatures and verifications through :func:`sign` / :func:`verify`) so
a benchmark can time the same amount of bare primitive work; it never affects
results and is not thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securefl import ring
from securefl.crypto import prg
from securefl.crypto.keys import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, SigningKey, context, derive32, verify_signature
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.secagg.labels import party

__all__ = ["AgreementKey", "MaskAccumulator", "WorkCounters", "agree_many", "counters", "sign", "verify"]

_AGREE_INFO = "securefl/agree/v1"  # securefl.crypto.keys: info = context(this, label, session, round, ...)


@dataclass
class WorkCounters:
    """Primitive work done since the last :meth:`reset` (benchmark instrumentation)."""

    agreements: int = 0
    expansions: int = 0
    keystream_bytes: int = 0
    signatures: int = 0
    verifications: int = 0
    signed_bytes: int = 0
    verified_bytes: int = 0

    def reset(self) -> None:
        self.agreements = self.expansions = self.keystream_bytes = 0
        self.signatures = self.verifications = self.signed_bytes = self.verified_bytes = 0


counters = WorkCounters()


def sign(key: SigningKey, statement: bytes) -> bytes:
    """``key.sign(statement)`` (Ed25519), counted."""
    counters.signatures += 1
    counters.signed_bytes += len(statement)
    return key.sign(statement)


def verify(public: bytes, signature: bytes, statement: bytes) -> None:
    """``keys.verify_signature(public, signature, statement)`` (Ed25519; ``InvalidMessage`` if bad), counted."""
    counters.verifications += 1
    counters.verified_bytes += len(statement)
    verify_signature(public, signature, statement)


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


@lru_cache(maxsize=64)
def _agree_prefix(label: str, session: bytes, round: int) -> bytes:
    """The first four of the eight ``context`` fields of an agreement's info: fixed for one round and label."""
    return b"\x00\x08" + context(_AGREE_INFO, label, session, round)[2:]


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
    own_party, own_field = party(own)
    own_public = key.public_bytes
    own_public_field = _PUBLIC_FIELD + own_public
    # info = context(_AGREE_INFO, label, session, round, party_low, party_high, public_low, public_high):
    # a cached encoding of the first four fields, then the four per-peer fields.
    prefix = _agree_prefix(label, bytes(session), round)
    exchange, load_public = key._private.exchange, X25519PublicKey.from_public_bytes
    out: dict[int, bytes] = {}
    for peer, public in peers.items():
        if len(public) != PUBLIC_KEY_BYTES:
            raise InvalidMessage(f"client/{peer}'s public key is {len(public)} bytes; expected {PUBLIC_KEY_BYTES}")
        try:
            shared = exchange(load_public(public))
        except ValueError:
            raise InvalidMessage(f"client/{peer}'s public key is a low-order point") from None
        peer_party, peer_field = party(peer)
        if peer_party == own_party:
            raise InvalidMessage(f"client/{peer} cannot agree a key with itself")
        parties = own_field + peer_field if own_party < peer_party else peer_field + own_field
        peer_public_field = _PUBLIC_FIELD + public
        publics = (own_public_field + peer_public_field if own_public < public
                   else peer_public_field + own_public_field)
        out[peer] = derive32(shared, prefix + parties + publics)
    counters.agreements += len(peers)
    return out


class MaskAccumulator:
    """total <- total + sum of sign * PRG(seed, label) in Z_2^k, over every mask added before ``finish``.

    The PRG is ``securefl.crypto.prg.expand``: AES-256-CTR (counter 0) under
    key HKDF-SHA256(seed, info="securefl/prg/v1" || label), read as
    little-endian words of the ring dtype. ``add`` only records a mask;
    ``finish`` folds them all into ``total`` in place with one
    ``prg.accumulate`` pass, reduces mod 2^k and hands ``total`` back.
    """

    __slots__ = ("total", "ring_bits", "_start", "_streams", "_signs")

    def __init__(self, total: np.ndarray, ring_bits: int) -> None:
        dtype = ring.ring_dtype(ring_bits)
        if not isinstance(total, np.ndarray) or total.dtype != dtype or total.ndim != 1 or not total.flags.c_contiguous:
            raise ConfigurationError(f"accumulator must be a contiguous 1-D {dtype} array")
        if not total.flags.writeable:
            raise ConfigurationError("accumulator must be writeable")
        self.total = total
        self.ring_bits = ring_bits
        self._start: np.ndarray | None = None
        self._streams: list[tuple[bytes, bytes]] = []
        self._signs: list[int] = []

    @classmethod
    def starting_from(cls, vector: np.ndarray, ring_bits: int) -> MaskAccumulator:
        """An accumulator whose total starts as ``vector`` (which is left untouched).

        The copy is fused into the first fold (total = vector +/- mask in one
        pass), saving a pass over the vector.
        """
        accumulator = cls(np.empty(np.shape(vector), dtype=ring.ring_dtype(ring_bits)), ring_bits)
        accumulator._start = vector
        return accumulator

    def add(self, seed: bytes, label: bytes, sign: int = 1) -> None:
        """Record total += PRG(seed, label) for sign = +1, total -= PRG(seed, label) for sign = -1."""
        if len(seed) != prg.SEED_BYTES:
            raise ConfigurationError(f"PRG seed must be {prg.SEED_BYTES} bytes; found {len(seed)}")
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ConfigurationError(f"mask sign must be +1 or -1; found {sign!r}")
        self._streams.append((seed, label))
        self._signs.append(sign)

    def finish(self) -> np.ndarray:
        """Fold every recorded mask into the total, reduce mod 2^k and hand the total back."""
        streams, signs, start = self._streams, self._signs, self._start
        self._streams, self._signs, self._start = [], [], None
        prg.accumulate(self.total, streams, self.ring_bits, signs=signs, start_from=start)
        counters.expansions += len(streams)
        counters.keystream_bytes += len(streams) * self.total.nbytes
        return self.total
