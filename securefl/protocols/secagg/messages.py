"""The messages of SecAgg / SecAgg+, one request and one reply per phase.

Client-to-client traffic (the encrypted Shamir shares) travels through the
server: a client hands its ciphertexts to the server in ShareKeys, and the
server forwards each recipient's ciphertexts in the next phase's request.
Clients are named by index in message bodies (``client_id(i)`` in headers).
"""

from __future__ import annotations

from dataclasses import dataclass

from securefl.protocols.wire import Message, RingVector

__all__ = [
    "ADVERTISE_KEYS",
    "SHARE_KEYS",
    "MASKED_INPUT",
    "CONSISTENCY_CHECK",
    "UNMASKING",
    "AdvertiseRequest",
    "KeyAdvertisement",
    "ShareKeysRequest",
    "EncryptedShares",
    "MaskedInputRequest",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "UnmaskRequest",
    "UnmaskShares",
    "REQUESTS",
]

ADVERTISE_KEYS = "advertise-keys"
SHARE_KEYS = "share-keys"
MASKED_INPUT = "masked-input"
CONSISTENCY_CHECK = "consistency-check"
UNMASKING = "unmasking"


@dataclass(frozen=True)
class AdvertiseRequest(Message):
    """Server -> client: advertise your two public keys."""

    KIND = "secagg/advertise-request"


@dataclass(frozen=True)
class KeyAdvertisement(Message):
    """Client -> server: the share-channel and mask X25519 public keys (32 bytes each).

    ``signature`` is Ed25519 over ``labels.advertise_statement`` with the key
    registered at setup (malicious-server mode); empty otherwise.
    """

    KIND = "secagg/key-advertisement"
    share_public: bytes
    mask_public: bytes
    signature: bytes


@dataclass(frozen=True)
class ShareKeysRequest(Message):
    """Server -> client u: what each of u's neighbours advertised, by client index.

    ``keys[v]`` = share_public (32 bytes) || mask_public (32 bytes), followed
    in malicious-server mode by v's 64-byte signature over them.
    """

    KIND = "secagg/share-keys-request"
    keys: dict[int, bytes]


@dataclass(frozen=True)
class EncryptedShares(Message):
    """Client u -> server: AES-GCM ciphertexts of u's shares, by recipient index, and a commitment to b_u."""

    KIND = "secagg/encrypted-shares"
    ciphertexts: dict[int, bytes]
    self_mask_commitment: bytes


@dataclass(frozen=True)
class MaskedInputRequest(Message):
    """Server -> client u: the ciphertexts addressed to u, by sender index; send your masked input."""

    KIND = "secagg/masked-input-request"
    ciphertexts: dict[int, bytes]


@dataclass(frozen=True)
class MaskedInput(Message):
    """Client -> server: y_u = x_u + self mask + pairwise masks (mod 2^k)."""

    KIND = "secagg/masked-input"
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class ConsistencyRequest(Message):
    """Server -> client (malicious-server mode): sign the survivor set (sorted client indices)."""

    KIND = "secagg/consistency-request"
    survivors: tuple[int, ...]


@dataclass(frozen=True)
class ConsistencySignature(Message):
    """Client -> server: Ed25519 signature over ``labels.consistency_statement``."""

    KIND = "secagg/consistency-signature"
    signature: bytes


@dataclass(frozen=True)
class UnmaskRequest(Message):
    """Server -> client u: survivors (send self-mask shares) and dropped clients (send mask-key shares).

    Semi-honest mode lists only members of u's neighbourhood. In
    malicious-server mode ``survivors`` is the whole signed survivor set and
    ``signatures`` are the consistency signatures of u's neighbourhood over
    it, by signer index.
    """

    KIND = "secagg/unmask-request"
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: dict[int, bytes]


@dataclass(frozen=True)
class UnmaskShares(Message):
    """Client -> server: Shamir shares (``Share.to_bytes``) by owner index: of b_v for survivors,
    of the mask private key for dropped clients. Never both for one owner."""

    KIND = "secagg/unmask-shares"
    self_mask_shares: dict[int, bytes]
    mask_key_shares: dict[int, bytes]


REQUESTS: dict[str, type[Message]] = {
    ADVERTISE_KEYS: AdvertiseRequest,
    SHARE_KEYS: ShareKeysRequest,
    MASKED_INPUT: MaskedInputRequest,
    CONSISTENCY_CHECK: ConsistencyRequest,
    UNMASKING: UnmaskRequest,
}
"""The request that opens each phase."""
