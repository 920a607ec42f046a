"""The messages of BFV summation: the shared homomorphic schema, ciphertexts as SEAL serializations."""

from __future__ import annotations

from dataclasses import dataclass

from securefl.protocols.homomorphic import messages as shared
from securefl.protocols.homomorphic.messages import DECRYPT, DECRYPTOR, UPLOAD, KeyId

__all__ = ["UPLOAD", "DECRYPT", "DECRYPTOR", "KeyId", "UploadRequest", "EncryptedUpload", "DecryptRequest",
           "DecryptedSum"]


@dataclass(frozen=True)
class UploadRequest(shared.UploadRequest):
    KIND = "bfv/upload-request"


@dataclass(frozen=True)
class EncryptedUpload(shared.EncryptedUpload):
    """``ciphertexts``: ceil((D + 1) / N) serialized BFV ciphertexts (D coordinates and a counter 1)."""

    KIND = "bfv/encrypted-upload"
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class DecryptRequest(shared.DecryptRequest):
    """``ciphertexts``: the slot-wise sum of the included clients' ciphertexts, in the upload's form."""

    KIND = "bfv/decrypt-request"
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class DecryptedSum(shared.DecryptedSum):
    KIND = "bfv/decrypted-sum"
