"""Domain separation for SecAgg: every KDF label, PRG label, associated data and signed statement.

All of them are built with :func:`securefl.crypto.keys.context` (length-prefixed,
typed fields) and name the protocol version, the session and the round, so a
key, mask or signature from one (session, round, pair) is useless in any other.

The labels made once per peer (PRG labels, associated data) append the
per-peer fields to a cached encoding of the fixed ones; the result is the
same bytes ``context`` gives for the whole field list (the tests check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

from securefl.crypto.keys import context
from securefl.protocols.wire import client_id

__all__ = [
    "SHARE_CHANNEL_LABEL",
    "PAIRWISE_SEED_LABEL",
    "SHARES_AEAD_LABEL",
    "party",
    "pairwise_mask_label",
    "self_mask_label",
    "shares_associated_data",
    "self_mask_commitment",
    "advertise_statement",
    "consistency_statement",
]

_VERSION = "securefl/secagg/v1"
SHARE_CHANNEL_LABEL = f"{_VERSION}/share-channel"
"""``keys.agree`` label of the AES-GCM key between two clients' share-channel key pairs."""
PAIRWISE_SEED_LABEL = f"{_VERSION}/pairwise-seed"
"""``keys.agree`` label of the 32-byte pairwise mask seed between two clients' mask key pairs."""
SHARES_AEAD_LABEL = f"{_VERSION}/shares"
"""``aead.associated_data`` label of a ciphertext carrying Shamir shares from one client to another."""
_PAIRWISE_MASK = f"{_VERSION}/pairwise-mask"
_SELF_MASK = f"{_VERSION}/self-mask"
_COMMITMENT = f"{_VERSION}/self-mask-commitment"
_ADVERTISE = f"{_VERSION}/advertise"
_CONSISTENCY = f"{_VERSION}/consistency"
# securefl.crypto.aead.associated_data: context(this, label, session, round, sender, recipient)
_AEAD_INFO = "securefl/aead/v1"
_INT_FIELD = b"\x03\x00\x00\x00\x08"  # context's tag and length of an unsigned 64-bit integer


@lru_cache(maxsize=64)
def _prefix(total_fields: int, *fixed: bytes | str | int) -> bytes:
    """context(*fixed, ...) up to the first per-peer field, for a list of ``total_fields`` fields."""
    return total_fields.to_bytes(2, "big") + context(*fixed)[2:]


def _int(value: int) -> bytes:
    if not 0 <= value < 2**64:
        raise ValueError(f"context integers are in [0, 2^64); found {value}")
    return _INT_FIELD + value.to_bytes(8, "big")


@lru_cache(maxsize=4096)
def party(client: int) -> tuple[str, bytes]:
    """``client_id(client)`` and its ``context`` text field (tag 0x02, u32 length, UTF-8 body), cached."""
    name = client_id(client)
    body = name.encode("utf-8")
    return name, b"\x02" + len(body).to_bytes(4, "big") + body


def pairwise_mask_label(session: bytes, round: int, first: int, second: int) -> bytes:
    """PRG label of the mask between clients ``first`` and ``second`` (order-free: low index first)."""
    low, high = (first, second) if first < second else (second, first)
    return _prefix(5, _PAIRWISE_MASK, session, round) + _int(low) + _int(high)


def self_mask_label(session: bytes, round: int, client: int) -> bytes:
    """PRG label of ``client``'s self mask."""
    return _prefix(4, _SELF_MASK, session, round) + _int(client)


def shares_associated_data(session: bytes, round: int, sender: int, recipient: int) -> bytes:
    """AES-GCM associated data of the shares ``sender`` encrypts to ``recipient`` (directional).

    Equal to ``aead.associated_data(session=session, round=round, sender=client_id(sender),
    recipient=client_id(recipient), label=SHARES_AEAD_LABEL)``.
    """
    return _prefix(6, _AEAD_INFO, SHARES_AEAD_LABEL, session, round) + party(sender)[1] + party(recipient)[1]


def self_mask_commitment(session: bytes, round: int, client: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed; lets the server check what it reconstructs.

    Hiding because the seed is 256 uniform bits; binding by collision resistance.
    """
    return hashlib.sha256(context(_COMMITMENT, session, round, client, seed)).digest()


def advertise_statement(session: bytes, round: int, client: int, share_public: bytes, mask_public: bytes) -> bytes:
    """What a client signs (malicious-server mode) when it advertises its two public keys."""
    return context(_ADVERTISE, session, round, client, share_public, mask_public)


def consistency_statement(session: bytes, round: int, survivors: Iterable[int]) -> bytes:
    """What a client signs in ConsistencyCheck: the survivor set the server announced."""
    return context(_CONSISTENCY, session, round, *survivors)
