"""A party's protocol state, carried from one ClientApp process to the next.

A Flower SuperNode starts a fresh ``flwr-clientapp`` process for every message
(``--isolation subprocess``, the default) and keeps only the node's
``Context``, whose ``state`` holds records, not Python objects. A protocol
engine lives across several phases, so after each phase the node writes the
engine (and its node-level keys) into ``context.state`` as one pickle and
reads it back at the next phase.

Threat model: the pickle holds the party's secrets (mask keys, seeds, the
Paillier private key of a decryptor). The SuperNode keeps the context in its
own memory and hands it only to the ClientApp processes it starts itself;
neither the SuperLink nor the ServerApp ever sees it. Only bytes the node
wrote itself are ever unpickled, and the unpickler resolves nothing outside
the modules an engine is built from (securefl, numpy, cryptography, phe,
gmpy2 and a few builtins), as defence in depth.

``cryptography`` key objects cannot be pickled as such; they travel as their
raw 32-byte encodings and are rebuilt with their named constructors.
"""

from __future__ import annotations

import io
import pickle
import types
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from securefl.crypto.keys import KeyPair, SigningKey
from securefl.errors import ConfigurationError, InvalidMessage

__all__ = ["dumps", "loads"]

_ALLOWED_MODULE_PREFIXES = (
    "securefl.",
    "numpy.",
    "cryptography.",
    "phe.",
    "gmpy2",
    "collections",
    "fractions",
    "enum",
)
_ALLOWED_BUILTINS = frozenset(
    {
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
        "object", "range", "set", "slice", "str", "tuple",
    }
)
_THIS_MODULE = __name__


def _method(owner: Any, name: str) -> Any:
    """A bound method of ``owner`` (engines keep dispatch tables of them); only plain methods."""
    cls = owner if isinstance(owner, type) else type(owner)
    if not isinstance(name, str) or name.startswith("__") or not callable(getattr(cls, name, None)):
        raise InvalidMessage(f"stored engine state names no method {name!r} of {cls.__name__}")
    return getattr(owner, name)


def _keypair(private: bytes) -> KeyPair:
    return KeyPair.from_private_bytes(private)


def _signing_key(private: bytes) -> SigningKey:
    return SigningKey.from_private_bytes(private)


def _x25519_private(private: bytes) -> x25519.X25519PrivateKey:
    return x25519.X25519PrivateKey.from_private_bytes(private)


def _x25519_public(public: bytes) -> x25519.X25519PublicKey:
    return x25519.X25519PublicKey.from_public_bytes(public)


def _ed25519_private(private: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(private)


def _ed25519_public(public: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(public)


_KEY_CONSTRUCTORS = frozenset(
    {"_method", "_keypair", "_signing_key", "_x25519_private", "_x25519_public", "_ed25519_private", "_ed25519_public"}
)


class _StatePickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.MethodType):
            return _method, (obj.__self__, obj.__func__.__name__)
        if isinstance(obj, KeyPair):
            return _keypair, (obj.private_bytes,)
        if isinstance(obj, SigningKey):
            return _signing_key, (obj.private_bytes,)
        if isinstance(obj, x25519.X25519PrivateKey):
            return _x25519_private, (obj.private_bytes_raw(),)
        if isinstance(obj, x25519.X25519PublicKey):
            return _x25519_public, (obj.public_bytes_raw(),)
        if isinstance(obj, ed25519.Ed25519PrivateKey):
            return _ed25519_private, (obj.private_bytes_raw(),)
        if isinstance(obj, ed25519.Ed25519PublicKey):
            return _ed25519_public, (obj.public_bytes_raw(),)
        return NotImplemented


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == _THIS_MODULE and name in _KEY_CONSTRUCTORS:
            return super().find_class(module, name)
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_MODULE_PREFIXES) or module in ("numpy", "phe", "gmpy2"):
            return super().find_class(module, name)
        raise InvalidMessage(f"stored engine state refers to {module}.{name}, outside the allowed modules")


def dumps(state: Any) -> bytes:
    """Pickle ``state`` (an engine and the keys it shares references with) to bytes."""
    buffer = io.BytesIO()
    try:
        _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise ConfigurationError(
            f"the engine state cannot be stored in the node's context: {error}; "
            "the Flower driver needs engines whose state pickles"
        ) from error
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Inverse of :func:`dumps`; ``InvalidMessage`` if the bytes are not a state this module wrote."""
    try:
        return _StateUnpickler(io.BytesIO(bytes(data))).load()
    except InvalidMessage:
        raise
    except Exception as error:  # a corrupt pickle raises many unrelated types
        raise InvalidMessage(f"stored engine state is unreadable: {type(error).__name__}") from None
