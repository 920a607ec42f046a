"""The messages of BFV summation and its wire constants.

Phases: ``upload`` (server -> client request; client -> server ciphertexts)
and ``decrypt`` (server -> key holder: the aggregate and the included
clients; key holder -> server: the ring sum). The key holder plays the
party ``decryptor``, as Paillier's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from securefl.protocols.lattice.keys import KEY_ID_BYTES
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
"""``keys.key_id`` of the published public context a message is under."""


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: encrypt and send your input."""

    KIND = "bfv/upload-request"


@dataclass(frozen=True)
class EncryptedUpload(Message):
    """Client -> server: ceil((D + 1) / N) serialized BFV ciphertexts (D coordinates and a counter 1)."""

    KIND = "bfv/encrypted-upload"
    key_id: KeyId
    length: int
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class DecryptRequest(Message):
    """Server -> key holder: the sum of the included clients' ciphertexts, and who they are."""

    KIND = "bfv/decrypt-request"
    key_id: KeyId
    included: tuple[int, ...]
    length: int
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class DecryptedSum(Message):
    """Key holder -> server: sum over the included clients of their vectors, in Z_2^k."""

    KIND = "bfv/decrypted-sum"
    ring_bits: int
    vector: RingVector
