"""The exceptions and warnings securefl raises: one flat vocabulary.

Adversarial failures (a forged ciphertext, a message from the wrong session)
raise one uniform type with a message naming what was wrong, never a hint of
which secret-dependent check failed.

Whose fault it was is part of the type: ``LocalProtocolError`` is a bug in
the local caller (a driver that opens a phase twice); ``InvalidMessage`` and
its subclasses are a remote peer's fault (what arrived over the wire);
``ProtocolViolation`` is a well-formed request an honest party refuses.
"""

from __future__ import annotations

__all__ = [
    "SecureFLError",
    "ConfigurationError",
    "InvalidUpdate",
    "LocalProtocolError",
    "InvalidMessage",
    "UnexpectedMessage",
    "UnexpectedSender",
    "ProtocolAbort",
    "ProtocolViolation",
    "AlreadyFinalized",
    "ClippingWarning",
]


class SecureFLError(Exception):
    """Base class of every error securefl raises on purpose."""


class ConfigurationError(SecureFLError, ValueError):
    """A configuration that cannot work (e.g. a sum that could wrap the ring)."""


class InvalidUpdate(SecureFLError, ValueError):
    """A client update that cannot be aggregated as given (non-finite values; clipped under ``strict_clip``)."""


class LocalProtocolError(SecureFLError):
    """The local caller drove an engine wrongly (a phase begun twice or out of order, a result asked too early)."""


class InvalidMessage(SecureFLError):
    """An inbound message that is malformed, misaddressed, stale or unauthentic."""


class UnexpectedMessage(InvalidMessage):
    """A well-formed message that the engine's open phase does not accept (out of order, replayed, duplicate)."""


class UnexpectedSender(InvalidMessage):
    """A message from a party that may not send it in the open phase."""


class ProtocolAbort(SecureFLError):
    """The protocol cannot complete (e.g. fewer than threshold parties remain)."""


class ProtocolViolation(SecureFLError):
    """A peer (usually the server) asked for something an honest party refuses."""


class AlreadyFinalized(SecureFLError):
    """A single-use object holding secrets was used again (an engine that is DONE or ABORTED)."""


class ClippingWarning(UserWarning):
    """Coordinates of an update were cut to the encoding's clip (the aggregate differs from the true sum)."""
