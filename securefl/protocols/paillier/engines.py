"""The three engines of packed Paillier summation: client, server, decryptor.

Clients hold only the public key; the server multiplies the ciphertexts it
receives into the running aggregate; the decryptor holds the ``KeyHolder``
and sees nothing but the aggregate, which it decrypts only for at least
``min_clients`` contributions, once per (session, round).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import gmpy2
import numpy as np
import phe

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
from securefl.protocols.paillier.keys import KeyHolder, ciphertext_bytes, ciphertexts_from_bytes, ciphertexts_to_bytes
from securefl.protocols.paillier.messages import (
    DECRYPT,
    DECRYPTOR,
    UPLOAD,
    DecryptedSum,
    DecryptRequest,
    EncryptedUpload,
    UploadRequest,
)
from securefl.protocols.paillier.obfuscators import Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout
from securefl.protocols.paillier.parallel import Mpz
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SERVER, Message, client_id, client_index

__all__ = ["PaillierRun"]

_INCONSISTENT = INCONSISTENT_AGGREGATE.format(count="{count}", what="packed inputs")


@dataclass(frozen=True)
class PaillierRun(RunParameters):
    """What every engine of one run shares: public parameters only (never the private key).

    ``ciphertexts`` = ceil((D + 1) / slots): D coordinates and one
    contribution counter (each client packs a 1 there).
    """

    public_key: phe.PaillierPublicKey
    key_id: bytes
    layout: SlotLayout
    ciphertexts: int
    max_clients: int
    workers: int | None
    obfuscation: Obfuscation = Obfuscation()

    def _identity(self) -> tuple[bytes | str | int, ...]:
        n: int = self.public_key.n
        layout = self.layout
        return (*super()._identity(), n.to_bytes((n.bit_length() + 7) // 8, "big"), self.key_id, layout.bound,
                layout.max_terms, layout.plaintext_bits, self.ciphertexts, self.max_clients, self.obfuscation.kind,
                self.obfuscation.exponent_bits or 0)


def _paillier_run(run: RunParameters) -> PaillierRun:
    if not isinstance(run, PaillierRun):
        raise ConfigurationError(f"Paillier engines need Paillier's run_parameters; found {type(run).__name__}")
    return run


class _Client(ClientEngine):
    INPUT_PHASE = UPLOAD
    STATE_KIND = "paillier/client"
    _run: PaillierRun

    def __init__(self, index: int, run: PaillierRun, pool: ObfuscatorPool) -> None:
        self._pool = pool
        self._values: np.ndarray | None = None
        super().__init__(client_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        run = _paillier_run(run)
        return cls(cls._index_of(party, run), run, ObfuscatorPool(run.public_key, run.obfuscation))

    def _state_fields(self) -> StateDict:
        # The packed values follow from the input (``_accept_input``); the obfuscators made ahead are stored.
        return {**super()._state_fields(),
                "obfuscators": ciphertexts_to_bytes(self._pool.ready(), self._run.public_key)}

    def _restore_fields(self, reader: StateReader) -> None:
        super()._restore_fields(reader)
        public_key = self._run.public_key
        data = reader.blob("obfuscators")
        width = ciphertext_bytes(public_key)
        reader.require(len(data) % width == 0, f"obfuscators must be a whole number of {width}-byte values")
        reader.require(self._active or not data, "holds obfuscators after it stopped")
        self._pool.extend(ciphertexts_from_bytes(data, public_key, count=len(data) // width,
                                                 what="stored obfuscators"))

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (UploadRequest,), self._upload, senders=SERVER_ONLY)]

    def _accept_input(self, vector: np.ndarray) -> None:
        run = self._run
        signed = ring.to_signed(vector, run.ring_bits)
        values = np.empty(run.length + 1, dtype=np.int64)
        values[:-1] = run.layout.check(signed, what=f"{self.party} input coordinate")
        values[-1] = 1
        self._values = values

    def _wipe(self) -> None:
        super()._wipe()
        self._values = None
        self._pool.clear()

    def _upload(self, message: Message) -> list[Message]:
        run = self._run
        self._take_input()
        if self._values is None:
            raise LocalProtocolError(f"{self.party} has no packed input")
        plaintexts = run.layout.encode(self._values)
        self._values = None
        obfuscators = self._pool.take(len(plaintexts))
        n = gmpy2.mpz(run.public_key.n)
        nsquare = gmpy2.mpz(run.public_key.nsquare)
        # (1 + n)^m = 1 + n m (mod n^2), so E(m) = (1 + n m) y mod n^2.
        ciphertexts = [(n * m + 1) * y % nsquare for m, y in zip(plaintexts, obfuscators)]
        obfuscators.clear()
        body = ciphertexts_to_bytes(ciphertexts, run.public_key)
        return [EncryptedUpload(*run.header(UPLOAD, self.party, SERVER), key_id=run.key_id, length=run.length,
                                ciphertexts=body)]


class _Server(ServerEngine):
    STATE_KIND = "paillier/server"
    _run: PaillierRun

    def __init__(self, run: PaillierRun) -> None:
        self._aggregate_ciphertexts: list[Mpz] | None = None
        self._uploaded: list[int] = []
        self._sum: np.ndarray | None = None
        super().__init__(SERVER, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(_paillier_run(run))

    def _state_fields(self) -> StateDict:
        run = self._run
        fields: StateDict = {
            "aggregate": ciphertexts_to_bytes(self._aggregate_ciphertexts or [], run.public_key),
            "uploaded": list(self._uploaded),
        }
        fields["sum"] = self._sum if self._sum is not None else np.zeros(0, ring.ring_dtype(run.ring_bits))
        return fields

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        data = reader.blob("aggregate", sizes=(0, run.ciphertexts * ciphertext_bytes(run.public_key)))
        uploaded = reader.integers("uploaded", minimum=0, maximum=run.clients - 1, increasing=False)
        total = reader.optional_vector("sum", dtype=ring.ring_dtype(run.ring_bits), length=run.length)
        reader.require(len(set(uploaded)) == len(uploaded), "lists an upload twice")
        reader.require(bool(data) == bool(uploaded), "must hold an aggregate exactly when uploads arrived")
        if self._position == 0:
            reader.require({client_id(i) for i in uploaded} == self._answered,
                           "holds uploads that differ from the clients it accepted")
        reader.require(total is None or (self._position == 1 and in_ring(total, run.ring_bits)),
                       "holds a decrypted sum it cannot have received")
        self._aggregate_ciphertexts = ciphertexts_from_bytes(data, run.public_key, count=run.ciphertexts,
                                                             what="stored aggregate") if data else None
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
        values = ciphertexts_from_bytes(message.ciphertexts, run.public_key, count=run.ciphertexts,
                                        what=f"upload from {message.sender}")
        if self._aggregate_ciphertexts is None:
            self._aggregate_ciphertexts = values
        else:
            # Homomorphic addition: E(a) E(b) = E(a + b) (mod n^2).
            nsquare = gmpy2.mpz(run.public_key.nsquare)
            self._aggregate_ciphertexts = [a * c % nsquare for a, c in zip(self._aggregate_ciphertexts, values)]
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
        body = ciphertexts_to_bytes(self._aggregate_ciphertexts, run.public_key)
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
    """Holds the private key; decrypts one aggregate of >= min_clients clients per (session, round).

    The key pair is the key holder's, kept across rounds with its record of
    what it decrypted; a stored decryptor state holds neither, so restoring
    an active decryptor takes the key holder (``keys=``, as
    ``Paillier.restore_engine`` passes it).
    """

    STATE_KIND = "paillier/decryptor"
    _run: PaillierRun

    def __init__(self, run: PaillierRun, keys: KeyHolder | None) -> None:
        self._keys: KeyHolder | None = keys
        super().__init__(DECRYPTOR, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Decryptor:
        return cls(_paillier_run(run), None)

    @classmethod
    def from_state_dict(cls, run: RunParameters, state: Mapping[str, object], *,
                        keys: KeyHolder | None = None) -> _Decryptor:
        """As ``Engine.from_state_dict``; an active decryptor needs ``keys``, its key holder under ``run``'s key."""
        engine = super().from_state_dict(run, state)
        if engine.state is EngineState.ACTIVE:
            if not isinstance(keys, KeyHolder) or not keys.can_decrypt or keys.key_id != engine._run.key_id:
                raise ConfigurationError("an active decryptor is restored with its key holder: keys=KeyHolder "
                                         "holding the private key of the run's public key")
            engine._keys = keys
        return engine

    def _wipe(self) -> None:
        # The KeyHolder serves the protocol's later rounds; this engine lets go of its reference.
        self._keys = None

    def _steps(self) -> list[Step]:
        return [Step(DECRYPT, (DecryptRequest,), self._decrypt, senders=SERVER_ONLY)]

    def _decrypt(self, message: Message) -> list[Message]:
        message = received(message, DecryptRequest)  # held until DONE/ABORTED
        if self._keys is None:
            raise LocalProtocolError(f"{self.party} no longer holds the key")
        run = self._run
        if message.key_id != self._keys.key_id:
            raise InvalidMessage(f"decryption request is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(f"decryption request is for {message.length} coordinates; expected {run.length}")
        count = admit_aggregate(included=message.included, clients=run.clients, min_clients=run.min_clients,
                                max_clients=run.max_clients, capacity="the slots")
        values = ciphertexts_from_bytes(message.ciphertexts, run.public_key, count=run.ciphertexts,
                                        what="decryption request")
        claim_decryption(self._keys, run.session, run.round)
        plaintexts = self._keys.decrypt_raw(values, workers=run.workers)
        sums = run.layout.decode(plaintexts, length=run.length + 1, terms=count)
        if sums is None or int(sums[-1]) != count:
            raise ProtocolViolation(_INCONSISTENT.format(count=count))
        total = ring.from_signed(sums[:-1], run.ring_bits)
        return [DecryptedSum(*run.header(DECRYPT, self.party, SERVER), ring_bits=run.ring_bits, vector=total)]
