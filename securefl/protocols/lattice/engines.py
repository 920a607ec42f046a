"""The three engines of BFV summation: client, server, decryptor (the key holder).

Clients hold only the public context; the server adds the ciphertexts it
receives slot by slot into the running aggregate, Enc(a) + Enc(b) =
Enc(a + b mod t), without reading them (RLWE); the decryptor holds the
secret key and sees nothing but the aggregate, which it decrypts only for
at least ``min_clients`` contributions, once per (session, round), with the
rules it shares with Paillier's (``securefl.protocols.keyholder``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
from securefl.protocols.keyholder import INCONSISTENT_AGGREGATE, admit_aggregate, claim_decryption
from securefl.protocols.lattice.keys import (
    LatticeKeyHolder,
    encrypt_vector,
    load_ciphertexts,
    serialize_ciphertexts,
)
from securefl.protocols.lattice.messages import (
    DECRYPT,
    DECRYPTOR,
    UPLOAD,
    DecryptedSum,
    DecryptRequest,
    EncryptedUpload,
    UploadRequest,
)
from securefl.protocols.lattice.parameters import BFVParameters
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SERVER, Message, client_id, client_index

__all__ = ["BFVRun"]

_INCONSISTENT = INCONSISTENT_AGGREGATE.format(count="{count}", what="bounded inputs")
_LIBRARY_ERRORS = (ValueError, RuntimeError, TypeError)


@dataclass(frozen=True)
class BFVRun(RunParameters):
    """What every engine of one run shares: public parameters only (never the secret key).

    ``ciphertexts`` = ceil((D + 1) / N): D coordinates and one contribution
    counter (each client puts a 1 there); ``bound`` = B, the largest |x| of
    one encoded coordinate.
    """

    parameters: BFVParameters
    key_id: bytes
    ciphertexts: int
    max_clients: int
    bound: int
    public_context: Any = field(compare=False, repr=False)

    @property
    def values(self) -> int:
        """D + 1: the coordinates and the counter."""
        return self.length + 1

    def _identity(self) -> tuple[bytes | str | int, ...]:
        parameters = self.parameters
        return (*super()._identity(), parameters.poly_modulus_degree, parameters.plain_modulus,
                len(parameters.coeff_mod_bit_sizes), *parameters.coeff_mod_bit_sizes, self.key_id,
                self.ciphertexts, self.max_clients, self.bound)


def _bfv_run(run: RunParameters) -> BFVRun:
    if not isinstance(run, BFVRun):
        raise ConfigurationError(f"BFV engines need BFV's run_parameters; found {type(run).__name__}")
    return run


class _Client(ClientEngine):
    INPUT_PHASE = UPLOAD
    STATE_KIND = "bfv/client"
    _run: BFVRun

    def __init__(self, index: int, run: BFVRun) -> None:
        self._values: np.ndarray | None = None
        super().__init__(client_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        run = _bfv_run(run)
        return cls(cls._index_of(party, run), run)

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (UploadRequest,), self._upload, senders=SERVER_ONLY)]

    def _accept_input(self, vector: np.ndarray) -> None:
        run = self._run
        signed = ring.to_signed(vector, run.ring_bits)
        largest = int(np.abs(signed).max()) if signed.size else 0
        if largest > run.bound:
            raise ConfigurationError(
                f"{self.party} input has a coordinate of magnitude {largest} > {run.bound}, the encoding's bound "
                f"max_weight x (2^(value_bits-1) - 1): a sum of max_clients such values could wrap modulo t"
            )
        values = np.empty(run.values, dtype=np.int64)
        values[:-1] = signed
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
        body = encrypt_vector(run.public_context, values, run.parameters.slots)
        return [EncryptedUpload(*run.header(UPLOAD, self.party, SERVER), key_id=run.key_id, length=run.length,
                                ciphertexts=tuple(body))]


def _add(aggregate: list[Any], vectors: list[Any], what: str) -> list[Any]:
    """Slot-wise sums (new objects: ``aggregate`` is left as it was if SEAL refuses one)."""
    try:
        return [a + c for a, c in zip(aggregate, vectors)]
    except _LIBRARY_ERRORS as error:
        raise InvalidMessage(f"{what} cannot be added to the aggregate ({error})") from None


class _Server(ServerEngine):
    STATE_KIND = "bfv/server"
    _run: BFVRun

    def __init__(self, run: BFVRun) -> None:
        self._aggregate_ciphertexts: list[Any] | None = None
        self._uploaded: list[int] = []
        self._sum: np.ndarray | None = None
        super().__init__(SERVER, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(_bfv_run(run))

    def _state_fields(self) -> StateDict:
        run = self._run
        aggregate = serialize_ciphertexts(self._aggregate_ciphertexts or [])
        return {
            "aggregate": list(aggregate),
            "uploaded": list(self._uploaded),
            "sum": self._sum if self._sum is not None else np.zeros(0, ring.ring_dtype(run.ring_bits)),
        }

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        data = reader.blobs("aggregate")
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
                self._aggregate_ciphertexts = load_ciphertexts(data, run.public_context, run.parameters,
                                                               length=run.values, what="stored aggregate")
            except InvalidMessage as error:
                reader.fail(str(error))
        self._uploaded, self._sum = uploaded, total

    def _steps(self) -> list[Step]:
        return [
            Step(UPLOAD, (EncryptedUpload,), self._receive_upload, begin=self._request_uploads, end=self._close_upload),
            Step(DECRYPT, (DecryptedSum,), self._receive_sum, begin=self._request_decryption, end=self._close_decrypt),
        ]

    def _request_uploads(self) -> list[Message]:
        run = self._run
        return [UploadRequest(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]

    def _receive_upload(self, message: Message) -> list[Message]:
        message = received(message, EncryptedUpload)
        run = self._run
        if message.key_id != run.key_id:
            raise InvalidMessage(f"upload from {message.sender} is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(
                f"upload from {message.sender} is for {message.length} coordinates; expected {run.length}"
            )
        what = f"upload from {message.sender}"
        vectors = load_ciphertexts(message.ciphertexts, run.public_context, run.parameters, length=run.values,
                                   what=what)
        # Homomorphic addition, slot by slot: Enc(a) + Enc(b) = Enc(a + b mod t).
        if self._aggregate_ciphertexts is None:
            self._aggregate_ciphertexts = vectors
        else:
            self._aggregate_ciphertexts = _add(self._aggregate_ciphertexts, vectors, what)
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
        body = serialize_ciphertexts(self._aggregate_ciphertexts)
        return [DecryptRequest(*run.header(DECRYPT, SERVER, DECRYPTOR), key_id=run.key_id,
                               included=tuple(sorted(self._uploaded)), length=run.length, ciphertexts=body)]

    def _receive_sum(self, message: Message) -> list[Message]:
        message = received(message, DecryptedSum)
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


class _Decryptor(RespondingEngine):
    """Holds the secret key; decrypts one aggregate of >= min_clients clients per (session, round).

    The key pair is the key holder's, kept across rounds with its record of
    what it decrypted; a stored decryptor state holds neither, so restoring
    an active decryptor takes the key holder (``keys=``, as
    ``BFV.restore_engine`` passes it).
    """

    STATE_KIND = "bfv/decryptor"
    _run: BFVRun

    def __init__(self, run: BFVRun, keys: LatticeKeyHolder | None) -> None:
        self._keys: LatticeKeyHolder | None = keys
        super().__init__(DECRYPTOR, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Decryptor:
        return cls(_bfv_run(run), None)

    @classmethod
    def from_state_dict(cls, run: RunParameters, state: Mapping[str, object], *,
                        keys: LatticeKeyHolder | None = None) -> _Decryptor:
        """As ``Engine.from_state_dict``; an active decryptor needs ``keys``, its key holder under ``run``'s key."""
        engine = super().from_state_dict(run, state)
        if engine.state is EngineState.ACTIVE:
            if not isinstance(keys, LatticeKeyHolder) or not keys.can_decrypt or keys.key_id != engine._run.key_id:
                raise ConfigurationError("an active decryptor is restored with its key holder: keys=LatticeKeyHolder "
                                         "holding the secret key of the run's public context")
            engine._keys = keys
        return engine

    def _wipe(self) -> None:
        # The key holder serves the protocol's later rounds; this engine lets go of its reference.
        self._keys = None

    def _steps(self) -> list[Step]:
        return [Step(DECRYPT, (DecryptRequest,), self._decrypt, senders=SERVER_ONLY)]

    def _decrypt(self, message: Message) -> list[Message]:
        message = received(message, DecryptRequest)
        if self._keys is None:
            raise LocalProtocolError(f"{self.party} no longer holds the key")
        run = self._run
        if message.key_id != self._keys.key_id:
            raise InvalidMessage(f"decryption request is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(f"decryption request is for {message.length} coordinates; expected {run.length}")
        count = admit_aggregate(included=message.included, clients=run.clients, min_clients=run.min_clients,
                                max_clients=run.max_clients, capacity="the plaintext slots (modulo t)")
        secret = self._keys.secret_context
        vectors = load_ciphertexts(message.ciphertexts, secret, run.parameters, length=run.values,
                                   what="decryption request")
        claim_decryption(self._keys, run.session, run.round)
        try:
            sums = np.concatenate([np.asarray(vector.decrypt(), dtype=np.int64) for vector in vectors])
        except _LIBRARY_ERRORS as error:
            raise ProtocolViolation(f"the aggregate does not decrypt ({error}); nothing is released") from None
        # Slots are centred modulo t; an honest sum of ``count`` inputs has |x| <= count B and counter = count.
        if sums.size != run.values or int(sums[-1]) != count or int(np.abs(sums[:-1]).max()) > count * run.bound:
            raise ProtocolViolation(_INCONSISTENT.format(count=count))
        total = ring.from_signed(sums[:-1], run.ring_bits)
        return [DecryptedSum(*run.header(DECRYPT, self.party, SERVER), ring_bits=run.ring_bits, vector=total)]
