"""The BFV key holder, the public context every other party loads, and ciphertexts on the wire.

Keys come from TenSEAL (Microsoft SEAL): the secret key s is ternary, drawn
by SEAL's Blake2xb generator seeded from the OS (``std::random_device``);
the public key is (-(a s + e), a). Nothing here draws randomness itself.

The public context is SEAL's serialization of the parameters and the
public key (no relinearisation or Galois keys: a sum needs neither). Every
party but the key holder loads it only after checking it carries exactly
the expected parameters (N, t, the coefficient primes) and no secret key;
``key_id`` is SHA-256 of those bytes, so a message names the key it is under.

A ciphertext travels as SEAL's serialization of one ``BFVVector``
(compressed by SEAL when that helps). It is loaded only against the
protocol's context, which SEAL checks it against (parameters, every
coefficient below its prime), and then must be a two-polynomial, non-NTT,
non-transparent ciphertext at the data level holding exactly the expected
number of slots. Anything else is an ``InvalidMessage``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from securefl.crypto.keys import context as labelled
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation
from securefl.protocols.homomorphic.keyholder import KEY_ID_BYTES, DecryptionRecord
from securefl.protocols.lattice.parameters import BFVParameters
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SESSION_BYTES

__all__ = [
    "LatticeKeyHolder",
    "tenseal",
    "load_public_context",
    "context_parameters",
    "encrypt_vector",
    "load_ciphertexts",
    "serialize_ciphertexts",
]

_KEY_ID_LABEL = "securefl/bfv/key-id/v1"
_LIBRARY_ERRORS = (ValueError, RuntimeError, TypeError, OverflowError, MemoryError)


def tenseal() -> Any:
    """The ``tenseal`` module; ``ConfigurationError`` naming the extra to install when it is missing."""
    try:
        import tenseal as module
    except ImportError as error:  # pragma: no cover - exercised only on installs without the extra
        raise ConfigurationError("the BFV protocol needs TenSEAL: pip install 'securefl[lattice]'") from error
    return module


def key_id(public_context: bytes) -> bytes:
    """16-byte fingerprint of a published public context: SHA-256(context(label, bytes))[:16]."""
    return hashlib.sha256(labelled(_KEY_ID_LABEL, bytes(public_context))).digest()[:KEY_ID_BYTES]


def context_parameters(ts_context: Any) -> tuple[int, int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(N, t, (parms_id of the data level, of the key level)) of a TenSEAL context.

    A SEAL ``parms_id`` is a hash of every encryption parameter (N, the
    coefficient primes, t), so two contexts with equal ids have equal parameters.
    """
    seal = ts_context.seal_context().data
    first = seal.first_context_data()
    degree = int(first.parms().poly_modulus_degree())
    plain = 2 * int(first.plain_upper_half_threshold()) - 1  # SEAL stores (t + 1) / 2
    ids = (tuple(int(word) for word in seal.first_parms_id()), tuple(int(word) for word in seal.key_parms_id()))
    return degree, plain, ids


def _check_context(ts_context: Any, parameters: BFVParameters, *, what: str) -> None:
    degree, plain, ids = context_parameters(ts_context)
    seal = ts_context.seal_context().data
    if not seal.parameters_set() or degree != parameters.poly_modulus_degree or plain != parameters.plain_modulus:
        raise InvalidMessage(f"{what} has N={degree}, t={plain}; expected {parameters.describe()}")
    if ids != _expected_ids(parameters):
        raise InvalidMessage(f"{what} has another coefficient modulus than {list(parameters.coeff_mod_bit_sizes)} bits")
    if not ts_context.has_public_key():
        raise InvalidMessage(f"{what} holds no public key")


_IDS: dict[BFVParameters, tuple[tuple[int, ...], tuple[int, ...]]] = {}


def _expected_ids(parameters: BFVParameters) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The parms_ids SEAL gives ``parameters`` (its primes are a function of N and the bit sizes)."""
    cached = _IDS.get(parameters)
    if cached is None:
        _, _, cached = context_parameters(_new_context(parameters))
        _IDS[parameters] = cached
    return cached


def _new_context(parameters: BFVParameters) -> Any:
    ts = tenseal()
    try:
        made = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=parameters.poly_modulus_degree,
                          plain_modulus=parameters.plain_modulus,
                          coeff_mod_bit_sizes=list(parameters.coeff_mod_bit_sizes))
    except _LIBRARY_ERRORS as error:
        raise ConfigurationError(f"SEAL refuses the parameters {parameters.describe()}: {error}") from None
    if not made.seal_context().data.parameters_set():
        raise ConfigurationError(f"SEAL refuses the parameters {parameters.describe()}")
    return made


def _public_bytes(ts_context: Any) -> bytes:
    data: bytes = ts_context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                       save_relin_keys=False)
    return data


def load_public_context(data: bytes, parameters: BFVParameters, *, what: str = "public context") -> Any:
    """A TenSEAL context from published bytes, checked: exactly ``parameters``, a public key, no secret key."""
    if not isinstance(data, bytes) or not data:
        raise InvalidMessage(f"{what} is empty")
    limit = 4 * parameters.max_ciphertext_bytes()
    if len(data) > limit:
        raise InvalidMessage(f"{what} has {len(data)} bytes; a public context of these parameters has < {limit}")
    try:
        loaded = tenseal().context_from(data)
    except _LIBRARY_ERRORS as error:
        raise InvalidMessage(f"{what} does not parse: {error}") from None
    if loaded.has_secret_key():
        raise InvalidMessage(f"{what} carries a secret key; only the public key may be published")
    _check_context(loaded, parameters, what=what)
    return loaded


class LatticeKeyHolder:
    """The BFV key pair of the key holder: the only object that can decrypt.

    Threat model: whoever holds this object reads every ciphertext under its
    key; the protocol sends it only aggregates of at least ``min_clients``
    contributions and it decrypts one per (session, round)
    (``securefl.protocols.homomorphic.keyholder``).
    """

    def __init__(self, ts_context: Any, parameters: BFVParameters, *, public: bytes | None = None) -> None:
        if not isinstance(parameters, BFVParameters):
            raise ConfigurationError(f"parameters must be BFVParameters; found {type(parameters).__name__}")
        _check_context(ts_context, parameters, what="key holder's context")
        self._context = ts_context
        self._parameters = parameters
        self._public = public if public is not None else _public_bytes(ts_context)
        self._public_context = ts_context if not ts_context.has_secret_key() else None
        self._key_id = key_id(self._public)
        self._decrypted = DecryptionRecord()

    @classmethod
    def generate(cls, parameters: BFVParameters) -> LatticeKeyHolder:
        """A fresh key pair under ``parameters`` (SEAL's generator, seeded from the OS)."""
        return cls(_new_context(parameters), parameters)

    @classmethod
    def public_only(cls, public_context: bytes, parameters: BFVParameters) -> LatticeKeyHolder:
        """What the server and the clients hold: the published public context, checked; no way to decrypt."""
        loaded = load_public_context(public_context, parameters)
        return cls(loaded, parameters, public=bytes(public_context))

    @classmethod
    def from_secret_bytes(cls, data: bytes, parameters: BFVParameters) -> LatticeKeyHolder:
        """The key pair from :meth:`secret_bytes` (the key holder's own key store), checked against ``parameters``."""
        try:
            loaded = tenseal().context_from(bytes(data))
        except _LIBRARY_ERRORS as error:
            raise InvalidMessage(f"stored BFV key pair does not parse: {error}") from None
        if not loaded.has_secret_key():
            raise InvalidMessage("stored BFV key pair holds no secret key")
        return cls(loaded, parameters)

    def secret_bytes(self) -> bytes:
        """SEAL's serialization of the key pair (no decryption record), for the key holder's own storage."""
        data: bytes = self.secret_context.serialize(save_public_key=True, save_secret_key=True,
                                                    save_galois_keys=False, save_relin_keys=False)
        return data

    @property
    def parameters(self) -> BFVParameters:
        return self._parameters

    @property
    def can_decrypt(self) -> bool:
        return bool(self._context.has_secret_key())

    @property
    def public_context_bytes(self) -> bytes:
        """What the key holder publishes: parameters and public key."""
        return self._public

    @property
    def public_context(self) -> Any:
        """The TenSEAL context clients encrypt under and the server adds in (no secret key)."""
        if self._public_context is None:
            self._public_context = load_public_context(self._public, self._parameters)
        return self._public_context

    @property
    def secret_context(self) -> Any:
        """The context holding the secret key (``ProtocolViolation`` on a public-only holder)."""
        if not self.can_decrypt:
            raise ProtocolViolation("this party holds only the BFV public key")
        return self._context

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def __repr__(self) -> str:
        return f"LatticeKeyHolder({self._parameters.describe()}, key {self._key_id.hex()[:12]})"

    def claim(self, session: bytes, round: int) -> bool:
        """Record one decryption for (session, round); False if one was already made (``keyholder``'s rule)."""
        return self._decrypted.claim(session, round)

    def state_dict(self) -> StateDict:
        """The secret context, the published bytes, the parameters and the decryption record, as plain data.

        For the key holder's own storage between processes: it holds the secret key.
        """
        parameters = self._parameters
        secret = self.secret_bytes()
        return {
            "scheme": "bfv",
            "poly-modulus-degree": parameters.poly_modulus_degree,
            "plain-modulus": parameters.plain_modulus.to_bytes(8, "big"),
            "coeff-mod-bit-sizes": list(parameters.coeff_mod_bit_sizes),
            "secret-context": secret,
            "public-context": self._public,
            "decrypted": self._decrypted.tokens(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object]) -> LatticeKeyHolder:
        """Inverse of :meth:`state_dict`; ``InvalidMessage`` for a malformed or inconsistent state."""
        reader = StateReader(state, what="BFV key holder")
        reader.text("scheme", choices=("bfv",))
        degree = reader.integer("poly-modulus-degree", minimum=1024, maximum=32768)
        plain = int.from_bytes(reader.blob("plain-modulus", sizes=(8,)), "big")
        sizes = reader.integers("coeff-mod-bit-sizes", minimum=2, maximum=60, increasing=False)
        secret, public = reader.blob("secret-context"), reader.blob("public-context")
        tokens = reader.blobs("decrypted", size=SESSION_BYTES + 8)
        reader.finish()
        try:
            parameters = BFVParameters(poly_modulus_degree=degree, plain_modulus=plain,
                                       coeff_mod_bit_sizes=tuple(sizes))
            loaded = tenseal().context_from(secret)
        except (ConfigurationError, *_LIBRARY_ERRORS) as error:
            reader.fail(f"holds no valid key pair: {error}")
        reader.require(bool(loaded.has_secret_key()), "holds no secret key")
        holder = cls(loaded, parameters, public=public)
        if holder.public_context is None:  # checks the published bytes
            reader.fail("holds no public context")
        holder._decrypted = DecryptionRecord.from_tokens(tokens)
        return holder


def encrypt_vector(ts_context: Any, values: np.ndarray, slots: int) -> list[bytes]:
    """BFV encryptions of ``values`` (int64, |v| < t/2), ``slots`` per ciphertext, serialized."""
    ts = tenseal()
    out = []
    for start in range(0, values.size, slots):
        chunk = values[start : start + slots]
        out.append(ts.bfv_vector(ts_context, chunk.tolist()).serialize())
    return out


def serialize_ciphertexts(vectors: Sequence[Any]) -> tuple[bytes, ...]:
    return tuple(vector.serialize() for vector in vectors)


def load_ciphertexts(blobs: Sequence[bytes], ts_context: Any, parameters: BFVParameters, *, length: int,
                     what: str) -> list[Any]:
    """``BFVVector`` s from the wire, checked one by one; ``InvalidMessage`` naming ``what`` on any bad one.

    There must be ceil(length / N) of them, each of at most
    ``max_ciphertext_bytes``, holding N slots (the last: the rest).
    """
    slots = parameters.slots
    count = parameters.ciphertexts(length)
    if len(blobs) != count:
        raise InvalidMessage(f"{what} carries {len(blobs)} ciphertexts; expected {count}")
    limit = parameters.max_ciphertext_bytes()
    ts = tenseal()
    first = ts_context.seal_context().data.first_parms_id()
    vectors = []
    for index, blob in enumerate(blobs):
        if not isinstance(blob, bytes) or not 0 < len(blob) <= limit:
            raise InvalidMessage(f"{what}: ciphertext {index} has {len(blob)} bytes; expected 1..{limit}")
        try:
            vector = ts.bfv_vector_from(ts_context, blob)
            parts = vector.ciphertext()
        except _LIBRARY_ERRORS as error:
            raise InvalidMessage(f"{what}: ciphertext {index} is not a BFV ciphertext of this context ({error})") \
                from None
        expected = min(slots, length - index * slots)
        if vector.size() != expected or len(parts) != 1:
            raise InvalidMessage(f"{what}: ciphertext {index} holds {vector.size()} slots; expected {expected}")
        part = parts[0]
        if part.size() != 2 or part.is_ntt_form() or part.is_transparent() or part.parms_id() != first:
            raise InvalidMessage(f"{what}: ciphertext {index} is not a fresh-shaped ciphertext at the data level")
        vectors.append(vector)
    return vectors
