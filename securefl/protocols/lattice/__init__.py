"""Lattice (BFV) homomorphic summation with a key holder that decrypts only the aggregate.

TenSEAL (Microsoft SEAL) does the cryptography; it is the optional extra
``securefl[lattice]``, imported on first use. Modules, one concern each:

- ``parameters``: ``BFVParameters`` (N, t, coefficient primes) from the encoding's headroom, 128-bit table;
- ``keys``: ``LatticeKeyHolder``, the checked public context, ciphertexts on the wire;
- ``messages``: the messages and wire constants;
- ``engines``: the client, server and decryptor engines;
- ``protocol``: the ``BFV`` configuration.
"""

from securefl.protocols.lattice.keys import LatticeKeyHolder, key_id, load_ciphertexts, load_public_context
from securefl.protocols.lattice.messages import (
    DECRYPT,
    DECRYPTOR,
    UPLOAD,
    DecryptedSum,
    DecryptRequest,
    EncryptedUpload,
    UploadRequest,
)
from securefl.protocols.lattice.parameters import MAX_MODULUS_BITS, BFVParameters
from securefl.protocols.lattice.protocol import BFV

__all__ = [
    "BFV",
    "BFVParameters",
    "LatticeKeyHolder",
    "MAX_MODULUS_BITS",
    "key_id",
    "load_public_context",
    "load_ciphertexts",
    "UPLOAD",
    "DECRYPT",
    "DECRYPTOR",
    "UploadRequest",
    "EncryptedUpload",
    "DecryptRequest",
    "DecryptedSum",
]
