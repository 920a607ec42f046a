"""The messages of packed Paillier summation: the shared homomorphic schema, ciphertexts as one byte string."""

from __future__ import annotations

from dataclasses import dataclass

from securefl.protocols.homomorphic import messages as shared
from securefl.protocols.homomorphic.messages import DECRYPT, DECRYPTOR, UPLOAD, KeyId

__all__ = ["UPLOAD", "DECRYPT", "DECRYPTOR", "KeyId", "UploadRequest", "EncryptedUpload", "DecryptRequest",
           "DecryptedSum"]


@dataclass(frozen=True)
class UploadRequest(shared.UploadRequest):
    KIND = "paillier/upload-request"


@dataclass(frozen=True)
class EncryptedUpload(shared.EncryptedUpload):
    """``ciphertexts``: ceil((D + 1) / slots) packed ciphertexts, each |n^2| bytes big-endian."""

    KIND = "paillier/encrypted-upload"
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptRequest(shared.DecryptRequest):
    """``ciphertexts``: the product of the included clients' ciphertexts, in the upload's form."""

    KIND = "paillier/decrypt-request"
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptedSum(shared.DecryptedSum):
    KIND = "paillier/decrypted-sum"
