"""AES-256-GCM sealing with associated data that binds session, round, sender and recipient.

    sealed = nonce (12 bytes, os.urandom) || AES-GCM(key, nonce, plaintext, associated)
           = nonce || ciphertext || tag (16 bytes)

Threat model: a server relaying sealed messages can neither read them nor
alter, replay into another session/round, or redirect them to another party
without ``open_sealed`` failing -- the associated data names all of those
(NIST SP 800-38D). Every failure gives the same ``InvalidMessage``. Random
96-bit nonces are safe for up to 2^32 messages under one key (SP 800-38D
section 8.3); securefl keys are per pair and per round, far below that.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securefl import validation
from securefl.crypto.keys import context
from securefl.errors import ConfigurationError, InvalidMessage

__all__ = ["KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "OVERHEAD_BYTES", "seal", "open_sealed", "associated_data"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES
_AEAD_INFO = "securefl/aead/v1"
_FAILED = "ciphertext failed authentication"


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        found = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ConfigurationError(f"AES-256-GCM key must be {KEY_BYTES} bytes; found {found}")
    return AESGCM(bytes(key))


def _check_associated(associated: bytes) -> bytes:
    if not isinstance(associated, (bytes, bytearray)):
        raise ConfigurationError(f"associated data must be bytes; found {type(associated).__name__}")
    return bytes(associated)


def seal(key: bytes, plaintext: bytes, *, associated: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``, binding ``associated``; returns nonce||ciphertext||tag."""
    cipher = _cipher(key)
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"plaintext must be bytes; found {type(plaintext).__name__}")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, bytes(plaintext), _check_associated(associated))


def open_sealed(key: bytes, sealed: bytes, *, associated: bytes) -> bytes:
    """Decrypt a ``seal`` output; any tampering, wrong key/associated data or short input raises
    ``InvalidMessage("ciphertext failed authentication")``."""
    cipher = _cipher(key)
    associated = _check_associated(associated)
    if not isinstance(sealed, (bytes, bytearray, memoryview)) or len(sealed) < OVERHEAD_BYTES:
        raise InvalidMessage(_FAILED)
    sealed = bytes(sealed)
    try:
        return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag as error:
        raise InvalidMessage(_FAILED) from error


def associated_data(*, session: bytes, round: int, sender: str, recipient: str, label: str) -> bytes:
    """context("securefl/aead/v1", label, session, round, sender, recipient).

    Sender and recipient keep their order: a message from A to B does not open
    as a message from B to A.
    """
    if not isinstance(session, (bytes, bytearray)):
        raise ConfigurationError(f"session must be bytes; found {type(session).__name__}")
    for name, value in (("sender", sender), ("recipient", recipient), ("label", label)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty str; found {value!r}")
    round = validation.integer(round, "round", minimum=0, maximum=2**64 - 1)
    return context(_AEAD_INFO, label, bytes(session), round, sender, recipient)
