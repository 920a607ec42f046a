"""The messages of packed Paillier summation and its wire constants.

Phases: ``upload`` (server -> client request; client -> server packed
ciphertexts) and ``decrypt`` (server -> decryptor: the aggregate and the
included clients; decryptor -> server: the ring sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from securefl.protocols.paillier.keys import KEY_ID_BYTES
from securefl.protocols.wire import Message, RingVector, Size

__all__ = [
    "UPLOAD",
    "DECRYPT",
    "DECRYPTOR",
    "KeyId",
    "UploadRequest",
    "EncryptedUpload",
    "DecryptRequest",
    "DecryptedSum",
]

UPLOAD, DECRYPT = "upload", "decrypt"
DECRYPTOR = "decryptor"

KeyId = Annotated[bytes, Size(KEY_ID_BYTES)]
"""``keys.key_id`` of the Paillier public key a message is under."""


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: encrypt and send your input."""

    KIND = "paillier/upload-request"


@dataclass(frozen=True)
class EncryptedUpload(Message):
    """Client -> server: ceil((D + 1) / slots) packed ciphertexts, each |n^2| bytes big-endian."""

    KIND = "paillier/encrypted-upload"
    key_id: KeyId
    length: int
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptRequest(Message):
    """Server -> decryptor: the product of the included clients' ciphertexts, and who they are."""

    KIND = "paillier/decrypt-request"
    key_id: KeyId
    included: tuple[int, ...]
    length: int
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptedSum(Message):
    """Decryptor -> server: sum over the included clients of their vectors, in Z_2^k."""

    KIND = "paillier/decrypted-sum"
    ring_bits: int
    vector: RingVector
