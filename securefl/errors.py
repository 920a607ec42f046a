"""The exceptions securefl raises: one flat vocabulary.

Adversarial failures (a forged ciphertext, a message from the wrong session)
raise one uniform type with a message naming what was wrong, never a hint of
which secret-dependent check failed.
"""

from __future__ import annotations

__all__ = [
    "SecureFLError",
    "ConfigurationError",
    "InvalidMessage",
    "ProtocolAbort",
    "ProtocolViolation",
    "AlreadyFinalized",
]


class SecureFLError(Exception):
    """Base class of every error securefl raises on purpose."""


class ConfigurationError(SecureFLError, ValueError):
    """A configuration that cannot work (e.g. a sum that could wrap the ring)."""


class InvalidMessage(SecureFLError):
    """An inbound message that is malformed, misaddressed, stale or unauthentic."""


class ProtocolAbort(SecureFLError):
    """The protocol cannot complete (e.g. fewer than threshold parties remain)."""


class ProtocolViolation(SecureFLError):
    """A peer (usually the server) asked for something an honest party refuses."""


class AlreadyFinalized(SecureFLError):
    """A single-use object holding secrets was used again."""
