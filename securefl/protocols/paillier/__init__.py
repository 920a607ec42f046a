"""Packed Paillier homomorphic summation with a key holder that decrypts only the aggregate.

Modules, one concern each:

- ``packing``: ``SlotLayout``, many signed values per plaintext, no carries by construction;
- ``keys``: ``KeyHolder`` (phe key pair, batched CRT decryption), ciphertext wire form;
- ``obfuscators``: ``ObfuscatorPool`` of r^n mod n^2 made ahead of need, opt-in short exponents;
- ``parallel``: gmpy2 exponentiations on all cores (threads; gmpy2 releases the GIL);
- ``messages``: the messages and wire constants;
- ``engines``: the client, server and decryptor engines;
- ``protocol``: the ``Paillier`` configuration.
"""

from securefl.protocols.paillier.keys import (
    KeyHolder,
    ciphertext_bytes,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    key_id,
)
from securefl.protocols.paillier.messages import (
    DECRYPT,
    DECRYPTOR,
    UPLOAD,
    DecryptedSum,
    DecryptRequest,
    EncryptedUpload,
    UploadRequest,
)
from securefl.protocols.paillier.obfuscators import FixedBase, Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout
from securefl.protocols.paillier.protocol import DEFAULT_KEY_BITS, Paillier

__all__ = [
    "Paillier",
    "DEFAULT_KEY_BITS",
    "KeyHolder",
    "SlotLayout",
    "Obfuscation",
    "ObfuscatorPool",
    "FixedBase",
    "key_id",
    "ciphertext_bytes",
    "ciphertexts_to_bytes",
    "ciphertexts_from_bytes",
    "UPLOAD",
    "DECRYPT",
    "DECRYPTOR",
    "UploadRequest",
    "EncryptedUpload",
    "DecryptRequest",
    "DecryptedSum",
]
