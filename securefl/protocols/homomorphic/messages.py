"""The message schema every homomorphic-summation protocol shares, and its wire constants.

Phases: ``upload`` (server -> client request; client -> server
ciphertexts) and ``decrypt`` (server -> key holder: the aggregate and the
included clients; key holder -> server: the ring sum). The key holder
plays the party ``decryptor``.

The classes here carry no ``KIND`` and are never sent: each protocol
subclasses them with its own kind and the wire type of its ciphertexts
(``ciphertexts``), so a Paillier message never decodes as a BFV one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from securefl.protocols.homomorphic.keyholder import KEY_ID_BYTES
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
"""The key holder's ``key_id`` a message is under."""


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: encrypt and send your input."""


@dataclass(frozen=True)
class EncryptedUpload(Message):
    """Client -> server: the encryptions of D coordinates and a contribution counter 1."""

    key_id: KeyId
    length: int
    ciphertexts: Any


@dataclass(frozen=True)
class DecryptRequest(Message):
    """Server -> key holder: the homomorphic sum of the included clients' ciphertexts, and who they are."""

    key_id: KeyId
    included: tuple[int, ...]
    length: int
    ciphertexts: Any


@dataclass(frozen=True)
class DecryptedSum(Message):
    """Key holder -> server: sum over the included clients of their vectors, in Z_2^k."""

    ring_bits: int
    vector: RingVector
