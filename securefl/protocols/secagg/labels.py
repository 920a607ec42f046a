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
from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np

from securefl.crypto.keys import context
from securefl.protocols.wire import client_id

__all__ = [
    "SHARE_CHANNEL_LABEL",
    "PAIRWISE_SEED_LABEL",
    "SHARES_AEAD_LABEL",
    "party",
    "pairwise_mask_label",
    "pairwise_mask_labels",
    "self_mask_label",
    "shares_associated_data",
    "shares_associated_data_to",
    "shares_associated_data_from",
    "self_mask_commitment",
    "coin_commitment",
    "coin_list_digest",
    "indexed_concatenation",
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
_COIN_COMMITMENT = f"{_VERSION}/graph-coin-commitment"
_COIN_LIST = f"{_VERSION}/graph-coin-list"
_ADVERTISE_WITH_COINS = f"{_VERSION}/advertise-with-coin-list"
_CONSISTENCY = f"{_VERSION}/consistency"
# securefl.crypto.aead.associated_data: context(this, label, session, round, sender, recipient)
_AEAD_INFO = "securefl/aead/v1"
_INT_FIELD = b"\x03\x00\x00\x00\x08"  # context's tag and length of an unsigned 64-bit integer
_BYTES_TAG = b"\x01"  # context's tag of a byte string


@lru_cache(maxsize=64)
def _prefix(total_fields: int, *fixed: bytes | str | int) -> bytes:
    """context(*fixed, ...) up to the first per-peer field, for a list of ``total_fields`` fields."""
    return total_fields.to_bytes(2, "big") + context(*fixed)[2:]


def _bytes_field(value: bytes) -> bytes:
    return _BYTES_TAG + len(value).to_bytes(4, "big") + value


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


def pairwise_mask_labels(session: bytes, round: int, client: int, peers: Iterable[int]) -> list[bytes]:
    """``[pairwise_mask_label(session, round, client, peer) for peer in peers]``, the fixed fields encoded once."""
    prefix, own = _prefix(5, _PAIRWISE_MASK, session, round), _int(client)
    return [prefix + own + _int(peer) if client < peer else prefix + _int(peer) + own for peer in peers]


def self_mask_label(session: bytes, round: int, client: int) -> bytes:
    """PRG label of ``client``'s self mask."""
    return _prefix(4, _SELF_MASK, session, round) + _int(client)


def shares_associated_data(session: bytes, round: int, sender: int, recipient: int) -> bytes:
    """AES-GCM associated data of the shares ``sender`` encrypts to ``recipient`` (directional).

    Equal to ``aead.associated_data(session=session, round=round, sender=client_id(sender),
    recipient=client_id(recipient), label=SHARES_AEAD_LABEL)``.
    """
    return _prefix(6, _AEAD_INFO, SHARES_AEAD_LABEL, session, round) + party(sender)[1] + party(recipient)[1]


def shares_associated_data_to(session: bytes, round: int, sender: int, recipients: Iterable[int]) -> list[bytes]:
    """``[shares_associated_data(session, round, sender, r) for r in recipients]``, the fixed fields encoded once."""
    head = _prefix(6, _AEAD_INFO, SHARES_AEAD_LABEL, session, round) + party(sender)[1]
    return [head + party(recipient)[1] for recipient in recipients]


def shares_associated_data_from(session: bytes, round: int, senders: Iterable[int], recipient: int) -> list[bytes]:
    """``[shares_associated_data(session, round, s, recipient) for s in senders]``, the fixed fields encoded once."""
    prefix, tail = _prefix(6, _AEAD_INFO, SHARES_AEAD_LABEL, session, round), party(recipient)[1]
    return [prefix + party(sender)[1] + tail for sender in senders]


def self_mask_commitment(session: bytes, round: int, client: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed; lets the server check what it reconstructs.

    Hiding because the seed is 256 uniform bits; binding by collision resistance.
    """
    # context(_COMMITMENT, session, round, client, seed), the fixed fields encoded once per (session, round).
    return hashlib.sha256(_prefix(5, _COMMITMENT, session, round) + _int(client) + _bytes_field(seed)).digest()


def coin_commitment(session: bytes, round: int, client: int, coin: bytes) -> bytes:
    """h_u = SHA-256(context(label, session, round, u, r_u)): client u's commitment to its graph coin.

    Hiding because r_u is 256 uniform bits; binding by collision resistance; the
    index u is inside, so a commitment cannot be moved to another client's slot.
    """
    # context(_COIN_COMMITMENT, session, round, client, coin): every client checks every reveal, so the
    # fixed fields are encoded once per (session, round).
    return hashlib.sha256(_prefix(5, _COIN_COMMITMENT, session, round) + _int(client) + _bytes_field(coin)).digest()


def indexed_concatenation(values: Mapping[int, bytes]) -> tuple[bytes, bytes]:
    """(the indices as big-endian u32, the values concatenated), both in increasing index order."""
    indices = sorted(values)
    return np.array(indices, dtype=">u4").tobytes(), b"".join(values[index] for index in indices)


def coin_list_digest(session: bytes, round: int, clients: int, commitments: Mapping[int, bytes]) -> bytes:
    """SHA-256 of the coin-commitment list {v: h_v} the server forwarded (indices and commitments, in order)."""
    indices, joined = indexed_concatenation(commitments)
    return hashlib.sha256(context(_COIN_LIST, session, round, clients, indices, joined)).digest()


def advertise_statement(session: bytes, round: int, client: int, share_public: bytes, mask_public: bytes,
                        *, coin_list: bytes = b"") -> bytes:
    """What a client signs (malicious-server mode) when it advertises its two public keys.

    In SecAgg+ (``coin_list`` = :func:`coin_list_digest` of the list the client
    received) the statement also binds that list, so two clients shown
    different lists cannot accept each other's advertisements.
    """
    # context(label, session, round, client, share_public, mask_public[, coin_list]); one per neighbour checked.
    keys = _bytes_field(share_public) + _bytes_field(mask_public)
    if coin_list:
        return _prefix(7, _ADVERTISE_WITH_COINS, session, round) + _int(client) + keys + _bytes_field(coin_list)
    return _prefix(6, _ADVERTISE, session, round) + _int(client) + keys


def consistency_statement(session: bytes, round: int, survivors: Iterable[int]) -> bytes:
    """What a client signs in ConsistencyCheck: the survivor set the server announced."""
    # context(_CONSISTENCY, session, round, *survivors), the integer fields encoded at once.
    values = np.fromiter(survivors, dtype=np.uint64)
    fields = np.empty(values.size, dtype=[("head", "V5"), ("value", ">u8")])
    fields["head"] = np.frombuffer(_INT_FIELD, dtype="V5")[0]
    fields["value"] = values
    return _prefix(3 + values.size, _CONSISTENCY, session, round) + fields.tobytes()
