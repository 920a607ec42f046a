"""The client, server and decryptor engines every homomorphic-summation protocol shares.

A scheme (Paillier, BFV) supplies only its arithmetic: how a client
encrypts its D + 1 values (D coordinates and a contribution counter 1),
how the server loads and adds ciphertexts, and how the key holder opens a
sum. The phases, the server's bookkeeping, the minimum cohort and the key
holder's rules (``keyholder``) live here once:

- client: one ``upload`` step answering the server's request with its ciphertexts;
- server: ``upload`` (load every upload against the run's key, add it to the
  aggregate; abort below ``min_clients``), then ``decrypt`` (send the
  aggregate and the included clients to the key holder, take back the ring sum);
- decryptor: admits the aggregate (``admit_aggregate``), claims its one
  decryption of (session, round) before decrypting, and releases the sum only
  if the counter equals the number of clients it sums.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from securefl import ring
from securefl.errors import ConfigurationError, InvalidMessage, LocalProtocolError, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import (
    SERVER_ONLY,
    ClientEngine,
    EngineState,
    RespondingEngine,
    RingAggregate,
    RunParameters,
    ServerEngine,
    Step,
    in_ring,
    received,
)
from securefl.protocols.homomorphic import messages
from securefl.protocols.homomorphic.keyholder import INCONSISTENT_AGGREGATE, admit_aggregate, claim_decryption
from securefl.protocols.homomorphic.messages import DECRYPT, DECRYPTOR, UPLOAD
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SERVER, Message, client_id, client_index

__all__ = ["HomomorphicRun", "HomomorphicMessages", "HomomorphicClient", "HomomorphicServer", "HomomorphicDecryptor"]

Ciphertext = Any
"""One ciphertext of the scheme, as the scheme's library holds it."""


@dataclass(frozen=True)
class HomomorphicRun(RunParameters):
    """The public parameters every homomorphic run adds: the key it is under, ciphertexts per client, the cap.

    ``ciphertexts`` = ceil((D + 1) / slots per ciphertext); ``max_clients``
    bounds the sums the plaintext slots hold without wrapping.
    """

    key_id: bytes
    ciphertexts: int
    max_clients: int

    @property
    def values(self) -> int:
        """D + 1: the coordinates and the counter."""
        return self.length + 1

    def _identity(self) -> tuple[bytes | str | int, ...]:
        return (*super()._identity(), self.key_id, self.ciphertexts, self.max_clients)


RunT = TypeVar("RunT", bound=HomomorphicRun)


@dataclass(frozen=True)
class HomomorphicMessages:
    """A protocol's concrete message classes (its kinds and ciphertext wire type)."""

    upload_request: type[messages.UploadRequest]
    encrypted_upload: type[messages.EncryptedUpload]
    decrypt_request: type[messages.DecryptRequest]
    decrypted_sum: type[messages.DecryptedSum]


def checked_run(run: RunParameters, expected: type[RunT], scheme: str) -> RunT:
    """``run`` if it is ``expected``'s; ``ConfigurationError`` naming the scheme otherwise."""
    if not isinstance(run, expected):
        raise ConfigurationError(f"{scheme} engines need {scheme}'s run_parameters; found {type(run).__name__}")
    return run


class HomomorphicClient(ClientEngine, Generic[RunT]):
    """Encrypts its D + 1 values (the input and a counter 1) when the server asks, and sends them."""

    INPUT_PHASE = UPLOAD
    MESSAGES: ClassVar[HomomorphicMessages]
    _run: RunT

    def __init__(self, index: int, run: RunT) -> None:
        self._values: np.ndarray | None = None
        super().__init__(client_id(index), run)

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (self.MESSAGES.upload_request,), self._upload, senders=SERVER_ONLY)]

    @abstractmethod
    def _check_input(self, signed: np.ndarray) -> np.ndarray:
        """The signed coordinates the scheme can hold; ``ConfigurationError`` for one beyond its bound."""

    @abstractmethod
    def _encrypt(self, values: np.ndarray) -> Any:
        """The wire form of the encryptions of ``values`` (D + 1 signed integers)."""

    def _accept_input(self, vector: np.ndarray) -> None:
        run = self._run
        values = np.empty(run.values, dtype=np.int64)
        values[:-1] = self._check_input(ring.to_signed(vector, run.ring_bits))
        values[-1] = 1
        self._values = values

    def _wipe(self) -> None:
        super()._wipe()
        self._values = None

    def _upload(self, message: Message) -> list[Message]:
        run = self._run
        self._take_input()
        if self._values is None:
            raise LocalProtocolError(f"{self.party} has no input to encrypt")
        values, self._values = self._values, None
        return [self.MESSAGES.encrypted_upload(*run.header(UPLOAD, self.party, SERVER), key_id=run.key_id,
                                               length=run.length, ciphertexts=self._encrypt(values))]


class HomomorphicServer(ServerEngine, Generic[RunT]):
    """Adds the ciphertexts it cannot read; asks the key holder for the sum of at least ``min_clients``."""

    MESSAGES: ClassVar[HomomorphicMessages]
    _run: RunT

    def __init__(self, run: RunT) -> None:
        self._aggregate_ciphertexts: list[Ciphertext] | None = None
        self._uploaded: list[int] = []
        self._sum: np.ndarray | None = None
        super().__init__(SERVER, run)

    # -- the scheme's arithmetic --------------------------------------------

    @abstractmethod
    def _load(self, data: Any, *, what: str) -> list[Ciphertext]:
        """``run.ciphertexts`` ciphertexts from their wire form, checked against the run's key.

        Anything malformed raises ``InvalidMessage``.
        """

    @abstractmethod
    def _add(self, aggregate: list[Ciphertext], ciphertexts: list[Ciphertext], *, what: str) -> list[Ciphertext]:
        """The homomorphic sum, position by position (new objects; ``InvalidMessage`` if one cannot be added)."""

    @abstractmethod
    def _dump(self, ciphertexts: Sequence[Ciphertext]) -> Any:
        """The wire form of ``ciphertexts`` (the form ``_load`` reads)."""

    @abstractmethod
    def _stored_aggregate(self, reader: StateReader) -> Any:
        """The aggregate's wire form from a stored state (empty when none was stored)."""

    # -- state ------------------------------------------------------------

    def _state_fields(self) -> StateDict:
        run = self._run
        aggregate = self._dump(self._aggregate_ciphertexts or [])
        return {
            "aggregate": list(aggregate) if isinstance(aggregate, tuple) else aggregate,
            "uploaded": list(self._uploaded),
            "sum": self._sum if self._sum is not None else np.zeros(0, ring.ring_dtype(run.ring_bits)),
        }

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        data = self._stored_aggregate(reader)
        uploaded = reader.integers("uploaded", minimum=0, maximum=run.clients - 1, increasing=False)
        total = reader.optional_vector("sum", dtype=ring.ring_dtype(run.ring_bits), length=run.length)
        reader.require(len(set(uploaded)) == len(uploaded), "lists an upload twice")
        reader.require(bool(data) == bool(uploaded), "must hold an aggregate exactly when uploads arrived")
        if self._position == 0:
            reader.require({client_id(i) for i in uploaded} == self._answered,
                           "holds uploads that differ from the clients it accepted")
        reader.require(total is None or (self._position == 1 and in_ring(total, run.ring_bits)),
                       "holds a decrypted sum it cannot have received")
        if data:
            try:
                self._aggregate_ciphertexts = self._load(data, what="stored aggregate")
            except InvalidMessage as error:
                reader.fail(str(error))
        self._uploaded, self._sum = uploaded, total

    # -- phases -----------------------------------------------------------

    def _steps(self) -> list[Step]:
        kinds = self.MESSAGES
        return [
            Step(UPLOAD, (kinds.encrypted_upload,), self._receive_upload, begin=self._request_uploads,
                 end=self._close_upload),
            Step(DECRYPT, (kinds.decrypted_sum,), self._receive_sum, begin=self._request_decryption,
                 end=self._close_decrypt),
        ]

    def _request_uploads(self) -> list[Message]:
        run = self._run
        return [self.MESSAGES.upload_request(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]

    def _receive_upload(self, message: Message) -> list[Message]:
        message = received(message, self.MESSAGES.encrypted_upload)
        run = self._run
        if message.key_id != run.key_id:
            raise InvalidMessage(f"upload from {message.sender} is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(
                f"upload from {message.sender} is for {message.length} coordinates; expected {run.length}"
            )
        what = f"upload from {message.sender}"
        ciphertexts = self._load(message.ciphertexts, what=what)
        if self._aggregate_ciphertexts is None:
            self._aggregate_ciphertexts = ciphertexts
        else:
            self._aggregate_ciphertexts = self._add(self._aggregate_ciphertexts, ciphertexts, what=what)
        self._uploaded.append(client_index(message.sender))
        return []

    def _close_upload(self) -> None:
        run = self._run
        if len(self._uploaded) < run.min_clients:
            raise ProtocolAbort(
                f"phase 'upload': {len(self._uploaded)} of {run.clients} client(s) uploaded; "
                f"min_clients={run.min_clients}"
            )

    def _request_decryption(self) -> list[Message]:
        run = self._run
        if self._aggregate_ciphertexts is None:
            raise LocalProtocolError("no upload arrived to aggregate")
        return [self.MESSAGES.decrypt_request(*run.header(DECRYPT, SERVER, DECRYPTOR), key_id=run.key_id,
                                              included=tuple(sorted(self._uploaded)), length=run.length,
                                              ciphertexts=self._dump(self._aggregate_ciphertexts))]

    def _receive_sum(self, message: Message) -> list[Message]:
        message = received(message, self.MESSAGES.decrypted_sum)
        run = self._run
        if message.ring_bits != run.ring_bits or message.vector.size != run.length:
            raise InvalidMessage(f"decrypted sum from {message.sender} has the wrong ring or length")
        self._sum = message.vector
        return []

    def _close_decrypt(self) -> None:
        if self._sum is None:
            raise ProtocolAbort("phase 'decrypt': the decryptor did not answer")

    def _aggregate(self) -> RingAggregate:
        if self._sum is None:
            raise LocalProtocolError("the decryptor's sum has not arrived")
        return RingAggregate(total=self._sum, included=tuple(sorted(self._uploaded)))


class HomomorphicDecryptor(RespondingEngine, Generic[RunT]):
    """Holds the secret key; decrypts one aggregate of >= min_clients clients per (session, round).

    The key pair is the key holder's, kept across rounds with its record of
    what it decrypted; a stored decryptor state holds neither, so restoring
    an active decryptor takes the key holder (``keys=``, as the protocol's
    ``restore_engine`` passes it).
    """

    MESSAGES: ClassVar[HomomorphicMessages]
    KEY_HOLDER: ClassVar[type[Any]]
    CAPACITY: ClassVar[str]  # what limits a sum to max_clients, named in the refusal
    INPUTS: ClassVar[str]  # what the plaintext must be a sum of, named in the refusal
    _run: RunT

    def __init__(self, run: RunT, keys: Any) -> None:
        self._keys: Any = keys
        super().__init__(DECRYPTOR, run)

    @classmethod
    def from_state_dict(cls, run: RunParameters, state: Mapping[str, object], *,
                        keys: Any = None) -> HomomorphicDecryptor[RunT]:
        """As ``Engine.from_state_dict``; an active decryptor needs ``keys``, its key holder under ``run``'s key."""
        engine = super().from_state_dict(run, state)
        if engine.state is EngineState.ACTIVE:
            if not isinstance(keys, cls.KEY_HOLDER) or not keys.can_decrypt or keys.key_id != engine._run.key_id:
                raise ConfigurationError(f"an active decryptor is restored with its key holder: "
                                         f"keys={cls.KEY_HOLDER.__name__} holding the secret key of the run's key")
            engine._keys = keys
        return engine

    @abstractmethod
    def _load_aggregate(self, data: Any) -> Any:
        """The aggregate from its wire form, loaded against the secret key; ``InvalidMessage`` if malformed."""

    @abstractmethod
    def _decrypt_sums(self, aggregate: Any, count: int) -> np.ndarray | None:
        """The D + 1 signed sums, or None when the plaintext cannot be a sum of ``count`` bounded inputs."""

    def _wipe(self) -> None:
        # The key holder serves the protocol's later rounds; this engine lets go of its reference.
        self._keys = None

    def _steps(self) -> list[Step]:
        return [Step(DECRYPT, (self.MESSAGES.decrypt_request,), self._decrypt, senders=SERVER_ONLY)]

    def _decrypt(self, message: Message) -> list[Message]:
        message = received(message, self.MESSAGES.decrypt_request)
        if self._keys is None:
            raise LocalProtocolError(f"{self.party} no longer holds the key")
        run = self._run
        if message.key_id != self._keys.key_id:
            raise InvalidMessage(f"decryption request is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(f"decryption request is for {message.length} coordinates; expected {run.length}")
        count = admit_aggregate(included=message.included, clients=run.clients, min_clients=run.min_clients,
                                max_clients=run.max_clients, capacity=self.CAPACITY)
        aggregate = self._load_aggregate(message.ciphertexts)
        claim_decryption(self._keys, run.session, run.round)  # before decrypting: a failed check uses it up
        sums = self._decrypt_sums(aggregate, count)
        if sums is None or sums.size != run.values or int(sums[-1]) != count:
            raise ProtocolViolation(INCONSISTENT_AGGREGATE.format(count=count, what=self.INPUTS))
        total = ring.from_signed(sums[:-1], run.ring_bits)
        return [self.MESSAGES.decrypted_sum(*run.header(DECRYPT, self.party, SERVER), ring_bits=run.ring_bits,
                                            vector=total)]
