"""The messages of SecAgg / SecAgg+, one request and one reply per phase.

Client-to-client traffic (the encrypted Shamir shares) travels through the
server: a client hands its ciphertexts to the server in ShareKeys, and the
server forwards each recipient's ciphertexts in the next phase's request.
Clients are named by index in message bodies (``client_id(i)`` in headers).
Every fixed-size byte string is declared with its size (``wire.Size``), so the
decoder refuses another length before an engine sees the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from securefl.crypto import aead, shamir
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from securefl.protocols.wire import Message, Record, RingVector, Size

__all__ = [
    "COMMIT_COINS",
    "ADVERTISE_KEYS",
    "SHARE_KEYS",
    "MASKED_INPUT",
    "CONSISTENCY_CHECK",
    "UNMASKING",
    "COMMITMENT_BYTES",
    "COIN_BYTES",
    "SHARE_BYTES",
    "SEALED_SHARES_BYTES",
    "SEALED_NOISE_SHARES_BYTES",
    "PublicKey",
    "Signature",
    "SignatureOrEmpty",
    "Commitment",
    "Coin",
    "CoinOrEmpty",
    "SealedShares",
    "ShareBytes",
    "AdvertisedKeys",
    "CoinCommitRequest",
    "CoinCommitment",
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

COMMIT_COINS = "commit-coins"
ADVERTISE_KEYS = "advertise-keys"
SHARE_KEYS = "share-keys"
MASKED_INPUT = "masked-input"
CONSISTENCY_CHECK = "consistency-check"
UNMASKING = "unmasking"

COMMITMENT_BYTES = 32
"""SHA-256 of the self-mask seed (``labels.self_mask_commitment``) or of a graph coin (``labels.coin_commitment``)."""
COIN_BYTES = 32
"""A client's graph coin r_u (malicious-server SecAgg+): 32 bytes from the OS CSPRNG."""
SHARE_BYTES = 4 + shamir.ELEMENT_BYTES
"""``Share.to_bytes()`` of a 32-byte secret: x (2 bytes), secret length (2 bytes), one field element."""
SEALED_SHARES_BYTES = 2 * SHARE_BYTES + aead.OVERHEAD_BYTES
"""``aead.seal`` of a mask-key share followed by a self-mask share: nonce, 2 shares, tag."""

PublicKey = Annotated[bytes, Size(PUBLIC_KEY_BYTES)]
"""A raw X25519 public key."""
Signature = Annotated[bytes, Size(SIGNATURE_BYTES)]
"""A raw Ed25519 signature."""
SignatureOrEmpty = Annotated[bytes, Size(0, SIGNATURE_BYTES)]
"""An Ed25519 signature in malicious-server mode; empty in semi-honest mode."""
Commitment = Annotated[bytes, Size(COMMITMENT_BYTES)]
Coin = Annotated[bytes, Size(COIN_BYTES)]
CoinOrEmpty = Annotated[bytes, Size(0, COIN_BYTES)]
"""A revealed graph coin in malicious-server SecAgg+; empty in every other mode."""
SEALED_NOISE_SHARES_BYTES = SEALED_SHARES_BYTES + SHARE_BYTES
"""Exact noise: the same, followed by the share of the owner's noise seed (three shares sealed)."""

SealedShares = Annotated[bytes, Size(SEALED_SHARES_BYTES, SEALED_NOISE_SHARES_BYTES)]
"""The sealed shares of one client for one neighbour: ``SEALED_NOISE_SHARES_BYTES`` exactly with exact noise."""
ShareBytes = Annotated[bytes, Size(SHARE_BYTES)]
RevealedShares = Annotated[bytes, Size(SHARE_BYTES, 2 * SHARE_BYTES)]
"""A self-mask share, followed (exact noise, the owner in D(U)) by the share of the owner's noise seed."""
CommitmentWithAnchor = Annotated[bytes, Size(COMMITMENT_BYTES, 2 * COMMITMENT_BYTES)]
"""The self-mask commitment, followed (exact noise) by the noise anchor a_u (32 bytes)."""


@dataclass(frozen=True)
class AdvertisedKeys(Record):
    """What client v advertised, as the server forwards it: C_v, S_v and v's signature over them.

    On the wire: [share_public, mask_public, signature]. ``signature`` is
    empty in semi-honest mode.
    """

    share_public: PublicKey
    mask_public: PublicKey
    signature: SignatureOrEmpty


@dataclass(frozen=True)
class CoinCommitRequest(Message):
    """Server -> client (malicious-server SecAgg+): commit to a fresh graph coin."""

    KIND = "secagg/coin-commit-request"


@dataclass(frozen=True)
class CoinCommitment(Message):
    """Client u -> server: h_u = ``labels.coin_commitment`` of u's graph coin r_u (SHA-256, 32 bytes)."""

    KIND = "secagg/coin-commitment"
    commitment: Commitment


@dataclass(frozen=True)
class AdvertiseRequest(Message):
    """Server -> client: advertise your two public keys.

    ``coin_commitments`` (malicious-server SecAgg+) is the list of every
    committed client's h_v, by index, the same for every client; empty in
    every other mode.
    """

    KIND = "secagg/advertise-request"
    coin_commitments: dict[int, Commitment]


@dataclass(frozen=True)
class KeyAdvertisement(Message):
    """Client -> server: the share-channel and mask X25519 public keys (32 bytes each).

    ``signature`` is Ed25519 over ``labels.advertise_statement`` with the key
    registered at setup (malicious-server mode; in SecAgg+ the statement also
    binds the digest of the coin-commitment list); empty otherwise. ``coin``
    reveals r_u (malicious-server SecAgg+); empty otherwise.
    """

    KIND = "secagg/key-advertisement"
    share_public: PublicKey
    mask_public: PublicKey
    signature: SignatureOrEmpty
    coin: CoinOrEmpty


@dataclass(frozen=True)
class ShareKeysRequest(Message):
    """Server -> client u: what each of u's neighbours advertised, by client index.

    ``coins`` (malicious-server SecAgg+) are the revealed coins of every
    committed client, by index, from which u draws the graph; empty in every
    other mode.
    """

    KIND = "secagg/share-keys-request"
    keys: dict[int, AdvertisedKeys]
    coins: dict[int, Coin]


@dataclass(frozen=True)
class EncryptedShares(Message):
    """Client u -> server: AES-GCM ciphertexts of u's shares, by recipient index, and a commitment to b_u.

    With exact noise (``Parameters.noise``) each ciphertext also carries u's
    share of its noise seed s_u, and the commitment is followed by the noise
    anchor a_u (``noise.noise_anchor``).
    """

    KIND = "secagg/encrypted-shares"
    ciphertexts: dict[int, SealedShares]
    self_mask_commitment: CommitmentWithAnchor


@dataclass(frozen=True)
class MaskedInputRequest(Message):
    """Server -> client u: the ciphertexts addressed to u, by sender index; send your masked input."""

    KIND = "secagg/masked-input-request"
    ciphertexts: dict[int, SealedShares]


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
    signature: Signature


@dataclass(frozen=True)
class UnmaskRequest(Message):
    """Server -> client u: survivors (send self-mask shares) and dropped clients (send mask-key shares).

    Semi-honest mode lists only members of u's neighbourhood (the whole
    survivor set with exact noise: each client counts m itself). In
    malicious-server mode ``survivors`` is the whole signed survivor set and
    ``signatures`` are the consistency signatures of u's neighbourhood over
    it, by signer index.
    """

    KIND = "secagg/unmask-request"
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: dict[int, Signature]


@dataclass(frozen=True)
class UnmaskShares(Message):
    """Client -> server: Shamir shares (``Share.to_bytes``) by owner index: of b_v for survivors,
    of the mask private key for dropped clients. Never both for one owner.

    With exact noise the self-mask share of each survivor in D(U) (the m - t
    whose noise shares go, computed by the client from the survivor set it
    checked) is followed by the share of that survivor's noise seed."""

    KIND = "secagg/unmask-shares"
    self_mask_shares: dict[int, RevealedShares]
    mask_key_shares: dict[int, ShareBytes]


REQUESTS: dict[str, type[Message]] = {
    COMMIT_COINS: CoinCommitRequest,
    ADVERTISE_KEYS: AdvertiseRequest,
    SHARE_KEYS: ShareKeysRequest,
    MASKED_INPUT: MaskedInputRequest,
    CONSISTENCY_CHECK: ConsistencyRequest,
    UNMASKING: UnmaskRequest,
}
"""The request that opens each phase."""
