"""What every homomorphic-summation protocol configuration shares: encoding, key holder, engines, roles.

``HomomorphicSummation`` is the part of ``Paillier`` and ``BFV`` that does
not depend on the scheme: the encoding shortcuts and the bound
B = max_weight (2^(value_bits-1) - 1), the key holder made once on first
use, the run parameters every engine shares, and the roles (the server
engine alone, the decryptor as the one helper party around the protocol's
key holder). A scheme adds its parameters, its keys and its engine classes.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import Engine, Protocol, RespondingEngine, RunParameters, ServerEngine, check_min_clients
from securefl.protocols.homomorphic.engines import (
    HomomorphicClient,
    HomomorphicDecryptor,
    HomomorphicRun,
    HomomorphicServer,
)
from securefl.protocols.homomorphic.messages import DECRYPT, DECRYPTOR, UPLOAD
from securefl.protocols.wire import SERVER

__all__ = ["HomomorphicSummation"]


class HomomorphicSummation(Protocol):
    """Clients encrypt under a key holder's public key, the server adds, the key holder decrypts only the sum.

    A subclass is a frozen dataclass with the fields ``value_bits``,
    ``max_clients``, ``max_weight``, ``min_clients``, ``encoding`` and
    ``key_holder`` and a ``_cache`` dict, and sets the engine classes.
    """

    secure = True
    modular_sum = False  # the plaintext slots hold bounded integers, not ring elements
    phases = (UPLOAD, DECRYPT)

    RUN: ClassVar[type[HomomorphicRun]]
    SERVER_ENGINE: ClassVar[type[HomomorphicServer[Any]]]
    CLIENT_ENGINE: ClassVar[type[HomomorphicClient[Any]]]
    DECRYPTOR_ENGINE: ClassVar[type[HomomorphicDecryptor[Any]]]

    encoding: Encoding
    min_clients: int
    key_holder: Any
    _cache: dict[str, Any]

    def _resolve_encoding(self) -> None:
        """Apply the ``value_bits`` / ``max_clients`` / ``max_weight`` shortcuts and check ``min_clients``."""
        if not isinstance(self.encoding, Encoding):
            raise ConfigurationError(
                f"encoding must be a securefl.encoding.Encoding; found {type(self.encoding).__name__}"
            )
        shortcuts = {name: getattr(self, name) for name in ("value_bits", "max_clients", "max_weight")}
        given = {name: value for name, value in shortcuts.items() if value is not None}
        if given:
            object.__setattr__(self, "encoding", dataclasses.replace(self.encoding, **given))
        for name in shortcuts:
            object.__setattr__(self, name, getattr(self.encoding, name))
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))

    @property
    def bound(self) -> int:
        """B = max_weight (2^(value_bits-1) - 1): the largest |x| of one encoded coordinate."""
        return self.encoding.max_weight * ((1 << (self.encoding.value_bits - 1)) - 1)

    @abstractmethod
    def _generate_keys(self) -> Any:
        """A fresh key holder for this protocol's parameters."""

    @property
    def keys(self) -> Any:
        """The key holder: ``key_holder`` if given, else a key pair made once, on first use."""
        if self.key_holder is not None:
            return self.key_holder
        holder = self._cache.get("keys")
        if holder is None:
            holder = self._cache["keys"] = self._generate_keys()
        return holder

    @abstractmethod
    def ciphertexts_per_client(self, vector_length: int) -> int:
        """ceil((vector_length + 1) / slots per ciphertext): the +1 is the contribution counter."""

    @abstractmethod
    def _scheme_run_fields(self) -> dict[str, Any]:
        """The scheme's own fields of its run parameters (public: never a secret key)."""

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> HomomorphicRun:
        """The public parameters of one run: the key holder's public key (made on first use) and the layout."""
        base = super().run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                      verification_keys=verification_keys)
        return self.RUN(**vars(base), key_id=self.keys.key_id, ciphertexts=self.ciphertexts_per_client(base.length),
                        max_clients=self.encoding.max_clients, **self._scheme_run_fields())

    def _own_run(self, run: RunParameters) -> Any:
        if not isinstance(run, self.RUN) or run.key_id != self.keys.key_id:
            raise ConfigurationError(f"{self.name} engines need the run_parameters of this protocol (the same key)")
        return run

    def helper_parties(self) -> tuple[str, ...]:
        """The decryptor, the one party holding the secret key."""
        return (DECRYPTOR,)

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        """The decryptor's engine, around this protocol's key holder."""
        if party != DECRYPTOR:
            raise ConfigurationError(f"{self.name} has no helper party {party!r}; its helper is {DECRYPTOR!r}")
        return self.DECRYPTOR_ENGINE(self._own_run(run), self.keys)

    def restore_engine(self, run: RunParameters, state: Mapping[str, object]) -> Engine:
        """As ``Protocol.restore_engine``; a decryptor is restored around this protocol's key holder."""
        if isinstance(state, Mapping) and state.get("party") == DECRYPTOR:
            return self.DECRYPTOR_ENGINE.from_state_dict(run, state, keys=self.keys)
        return super().restore_engine(run, state)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        return self.SERVER_ENGINE(self._own_run(run))

    def _engine_class(self, party: str) -> type[Engine]:
        if party == SERVER:
            return self.SERVER_ENGINE
        return self.DECRYPTOR_ENGINE if party == DECRYPTOR else self.CLIENT_ENGINE
