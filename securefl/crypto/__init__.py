"""Thin, typed wrappers over `cryptography`, plus our Shamir sharing.

    prg     32-byte seed + label -> uniform vector of Z_2^k (HKDF-SHA256 + AES-256-CTR)
    keys    X25519 agreement with HKDF domain separation, Ed25519, canonical ``context``
    aead    AES-256-GCM with associated data binding session, round, sender, recipient
    shamir  t-of-n Shamir sharing of byte secrets over F_p, p = 2^256 + 297

The wire-level spec and the known-answer vectors are in ``protocols/crypto.md``
and ``protocols/vectors/``.
"""

from securefl.crypto import aead, keys, prg, shamir

__all__ = ["aead", "keys", "prg", "shamir"]
