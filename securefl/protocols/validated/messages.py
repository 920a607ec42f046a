"""Messages of validated sharing: shares of the witness and the proof, signed randomness, verifier shares.

A vector of F_p travels as a ring vector with ``ring_bits`` = 32 holding
each element as two little-endian 32-bit words, low word first: exactly the
8 little-endian bytes of each element (:func:`to_wire`, :func:`from_wire`).
A receiver checks ``ring_bits``, the length and that every element is below
p. Seeds are 32 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from securefl.crypto import prg
from securefl.crypto.keys import SIGNATURE_BYTES
from securefl.protocols.wire import Message, RingVector, Size

__all__ = ["UploadRequest", "WitnessShare", "WitnessSeed", "ChallengeRequest", "ChallengeSeed", "ProveRequest",
           "ProofShare", "ProofSeed", "QueryRequest", "QuerySeed", "VerifyRequest", "VerifierShare", "VerifyReport",
           "AggregateRequest", "AggregateShare", "Seed", "Signature", "WORD_BITS", "to_wire", "from_wire"]

Seed = Annotated[bytes, Size(prg.SEED_BYTES)]
Signature = Annotated[bytes, Size(SIGNATURE_BYTES)]
WORD_BITS = 32
"""The ``ring_bits`` of every field vector on the wire: two 32-bit words per element."""


def to_wire(elements: np.ndarray) -> np.ndarray:
    """uint64 field elements as the uint32 words (low, high) of their little-endian bytes."""
    return np.ascontiguousarray(elements, dtype="<u8").view("<u4").astype(np.uint32, copy=False)


def from_wire(words: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_wire` (``words`` of even length)."""
    return np.ascontiguousarray(words, dtype="<u4").view("<u8").astype(np.uint64, copy=False)


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: share your witness (your encoded update and the digits of your weight)."""

    KIND = "validated-sharing/upload-request"


@dataclass(frozen=True)
class WitnessShare(Message):
    """Client -> aggregator 0: z - sum_j PRG(seed_j), in F_p."""

    KIND = "validated-sharing/witness-share"
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class WitnessSeed(Message):
    """Client -> aggregator j >= 1: the seed of its witness share."""

    KIND = "validated-sharing/witness-seed"
    seed: Seed


@dataclass(frozen=True)
class ChallengeRequest(Message):
    """Server -> aggregator: which witnesses do you hold? Draw your joint-randomness seed."""

    KIND = "validated-sharing/challenge-request"


@dataclass(frozen=True)
class ChallengeSeed(Message):
    """Aggregator -> server: the clients whose witness it holds, its fresh joint-randomness seed and its
    Ed25519 signature over the seed (``randomness.joint_seed_statement``), which every client checks."""

    KIND = "validated-sharing/challenge-seed"
    clients: tuple[int, ...]
    seed: Seed
    signature: Signature


@dataclass(frozen=True)
class ProveRequest(Message):
    """Server -> client: every aggregator's joint seed and its signature (in aggregator order); prove your witness."""

    KIND = "validated-sharing/prove-request"
    joint_seeds: tuple[Seed, ...]
    signatures: tuple[Signature, ...]


@dataclass(frozen=True)
class ProofShare(Message):
    """Client -> aggregator 0: its share of the proof."""

    KIND = "validated-sharing/proof-share"
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class ProofSeed(Message):
    """Client -> aggregator j >= 1: the seed of its proof share."""

    KIND = "validated-sharing/proof-seed"
    seed: Seed


@dataclass(frozen=True)
class QueryRequest(Message):
    """Server -> aggregator: the joint seeds the clients were given; which proofs do you hold?"""

    KIND = "validated-sharing/query-request"
    joint_seeds: tuple[Seed, ...]


@dataclass(frozen=True)
class QuerySeed(Message):
    """Aggregator -> server: the clients whose proof it holds and its fresh query seed."""

    KIND = "validated-sharing/query-seed"
    clients: tuple[int, ...]
    seed: Seed


@dataclass(frozen=True)
class VerifyRequest(Message):
    """Server -> aggregator: verify these clients under these query seeds."""

    KIND = "validated-sharing/verify-request"
    included: tuple[int, ...]
    query_seeds: tuple[Seed, ...]


@dataclass(frozen=True)
class VerifierShare(Message):
    """Aggregator -> aggregator: its verifier shares of the included clients, bound to the randomness used."""

    KIND = "validated-sharing/verifier-share"
    digest: Annotated[bytes, Size(32)]
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class VerifyReport(Message):
    """Aggregator -> server: the clients it accepted, and why it rejected the others."""

    KIND = "validated-sharing/verify-report"
    accepted: tuple[int, ...]
    rejected: dict[int, str]


@dataclass(frozen=True)
class AggregateRequest(Message):
    """Server -> aggregator: sum the update shares of exactly these accepted clients."""

    KIND = "validated-sharing/aggregate-request"
    included: tuple[int, ...]


@dataclass(frozen=True)
class AggregateShare(Message):
    """Aggregator -> server: its share (in F_p) of the sum of the included clients' encoded vectors."""

    KIND = "validated-sharing/aggregate-share"
    ring_bits: int
    vector: RingVector
