"""The rules of a key holder that decrypts only aggregates: one home for every homomorphic protocol.

A homomorphic-summation protocol (``Paillier``, ``BFV``) has a key holder,
a party that is not the server, holding the secret key. It is only ever sent
an aggregate and the list of clients the server says it sums. It decrypts

- only a list of distinct clients of the run, at least ``min_clients`` and
  at most ``max_clients`` of them (the sum of more could wrap the plaintext
  slots), and
- once per (session, round): the use is claimed *before* decrypting, so a
  request that then fails a check (an inconsistent plaintext) uses it up and
  the server gets no retries to probe with.

After decrypting, the protocol checks that the plaintext is consistent with
a sum of ``count`` bounded inputs (a contribution counter equal to ``count``)
and releases nothing otherwise. None of this binds a malicious server, which
can encrypt under the public key itself (see protocols/paillier.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from securefl.errors import InvalidMessage, ProtocolViolation
from securefl.protocols.wire import SESSION_BYTES

__all__ = [
    "KEY_ID_BYTES",
    "DecryptionRecord",
    "Claims",
    "admit_aggregate",
    "claim_decryption",
    "INCONSISTENT_AGGREGATE",
]

INCONSISTENT_AGGREGATE = "the aggregate does not decrypt to a sum of {count} {what}; nothing is released"
"""The one refusal of a plaintext that is not a sum of ``count`` bounded inputs (formatted by the protocol)."""

_TOKEN_BYTES = SESSION_BYTES + 8

KEY_ID_BYTES = 16
"""Bytes of a key id: the fingerprint of the public key a message is under."""


def admit_aggregate(*, included: Sequence[int], clients: int, min_clients: int, max_clients: int,
                    capacity: str) -> int:
    """The number of clients an aggregate sums, if the key holder may decrypt it; ``ProtocolViolation`` if not.

    ``included`` must list distinct clients of [0, clients), at least
    ``min_clients`` and at most ``max_clients`` of them; ``capacity`` names
    what limits a sum to ``max_clients`` (in the refusal).
    """
    count = len(included)
    if len(set(included)) != count:
        raise ProtocolViolation("decryption request lists a client twice")
    if any(not 0 <= i < clients for i in included):
        raise ProtocolViolation(f"decryption request names clients outside [0, {clients})")
    if count < min_clients:
        raise ProtocolViolation(f"refusing to decrypt an aggregate of {count} client(s); min_clients={min_clients}")
    if count > max_clients:
        raise ProtocolViolation(
            f"refusing to decrypt an aggregate of {count} clients; {capacity} hold sums of at most "
            f"max_clients={max_clients}"
        )
    return count


class Claims(Protocol):
    """What holds a key holder's record: ``claim(session, round)`` is False for a second claim."""

    def claim(self, session: bytes, round: int) -> bool: ...


def claim_decryption(holder: Claims, session: bytes, round: int) -> None:
    """Use up the one decryption of (session, round) before decrypting; ``ProtocolViolation`` if it is used.

    Claimed first, so that a request failing a later check still uses it up:
    the server gets no retries to probe with.
    """
    if not holder.claim(session, round):
        raise ProtocolViolation("already decrypted an aggregate for this session and round")


class DecryptionRecord:
    """The (session, round) pairs a key holder has decrypted: at most one aggregate each."""

    def __init__(self) -> None:
        self._decrypted: set[tuple[bytes, int]] = set()

    def claim(self, session: bytes, round: int) -> bool:
        """Record one decryption for (session, round); False if one was already made."""
        token = (bytes(session), int(round))
        if token in self._decrypted:
            return False
        self._decrypted.add(token)
        return True

    def tokens(self) -> list[bytes]:
        """The record as plain data: session || round (8 bytes big-endian), sorted."""
        return sorted(session + round.to_bytes(8, "big") for session, round in self._decrypted)

    @classmethod
    def from_tokens(cls, tokens: Iterable[bytes]) -> DecryptionRecord:
        """Inverse of :meth:`tokens`; ``InvalidMessage`` for a token of the wrong size."""
        record = cls()
        for token in tokens:
            if not isinstance(token, bytes) or len(token) != _TOKEN_BYTES:
                raise InvalidMessage(f"a decryption record entry must be {_TOKEN_BYTES} bytes")
            record._decrypted.add((token[:-8], int.from_bytes(token[-8:], "big")))
        return record

    def __len__(self) -> int:
        return len(self._decrypted)
