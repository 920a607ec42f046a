"""The insecure baseline: every client sends its encoded vector in the clear.

INSECURE BY DESIGN. The server reads each client's update. It exists only as
the reference point against which the secure protocols' overhead and privacy
are measured, and it is labelled ``secure = False`` in every output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from securefl import ring
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort
from securefl.protocols.base import (
    DEFAULT_MIN_CLIENTS,
    SERVER_ONLY,
    ClientEngine,
    Engine,
    Parties,
    Protocol,
    RingAggregate,
    RunParameters,
    ServerEngine,
    Step,
    check_min_clients,
    in_ring,
    received,
)
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SERVER, Message, RingVector, client_id, client_index

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = ["Plaintext", "UploadRequest", "PlaintextUpload"]

UPLOAD = "upload"


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: send your input."""

    KIND = "plaintext/upload-request"


@dataclass(frozen=True)
class PlaintextUpload(Message):
    """Client -> server: the encoded input, unprotected."""

    KIND = "plaintext/upload"
    ring_bits: int
    vector: RingVector


class _Client(ClientEngine):
    INPUT_PHASE = UPLOAD
    STATE_KIND = "plaintext/client"

    def __init__(self, index: int, run: RunParameters) -> None:
        super().__init__(client_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        return cls(cls._index_of(party, run), run)

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (UploadRequest,), self._upload, senders=SERVER_ONLY)]

    def _upload(self, message: Message) -> list[Message]:
        run = self._run
        return [PlaintextUpload(*run.header(UPLOAD, self.party, SERVER), ring_bits=run.ring_bits,
                                vector=self._take_input())]


class _Server(ServerEngine):
    STATE_KIND = "plaintext/server"

    def __init__(self, run: RunParameters) -> None:
        self._uploads: dict[int, np.ndarray] = {}
        super().__init__(SERVER, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(run)

    def _state_fields(self) -> StateDict:
        uploaders = sorted(self._uploads)
        dtype = ring.ring_dtype(self._run.ring_bits)
        uploads = np.concatenate([self._uploads[i] for i in uploaders]) if uploaders else np.zeros(0, dtype)
        return {"uploaders": uploaders, "uploads": uploads}

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        uploaders = reader.integers("uploaders", minimum=0, maximum=run.clients - 1)
        uploads = reader.vector("uploads", dtype=ring.ring_dtype(run.ring_bits), length=len(uploaders) * run.length)
        reader.require(in_ring(uploads, run.ring_bits), f"uploads have coordinates outside Z_2^{run.ring_bits}")
        reader.require({client_id(i) for i in uploaders} == self._answered,
                       "holds uploads that differ from the clients it accepted")
        self._uploads = {i: uploads[k * run.length : (k + 1) * run.length] for k, i in enumerate(uploaders)}

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (PlaintextUpload,), self._receive, begin=self._request, end=self._close)]

    def _request(self) -> list[Message]:
        run = self._run
        return [UploadRequest(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]

    def _receive(self, message: Message) -> list[Message]:
        message = received(message, PlaintextUpload)
        run = self._run
        if message.ring_bits != run.ring_bits or message.vector.size != run.length:
            raise InvalidMessage(f"upload from {message.sender} has the wrong ring or length")
        self._uploads[client_index(message.sender)] = message.vector
        return []

    def _close(self) -> None:
        run = self._run
        if len(self._uploads) < run.min_clients:
            raise ProtocolAbort(
                f"phase 'upload': {len(self._uploads)} of {run.clients} client(s) uploaded; "
                f"min_clients={run.min_clients}"
            )

    def _aggregate(self) -> RingAggregate:
        bits = self._run.ring_bits
        total = np.zeros(self._run.length, dtype=ring.ring_dtype(bits))
        for vector in self._uploads.values():
            ring.add(total, vector, bits)
        return RingAggregate(total=total, included=tuple(sorted(self._uploads)))


@dataclass(frozen=True)
class Plaintext(Protocol):
    """Insecure baseline: the server sees every encoded update. Never deploy."""

    encoding: Encoding = field(default_factory=Encoding)
    min_clients: int = DEFAULT_MIN_CLIENTS

    name = "plaintext"
    secure = False
    phases = (UPLOAD,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
        return Parties(server=_Server(run), clients=[_Client(i, run) for i in range(run.clients)])

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        index, run = self._client_run(index, run, signing_key, RunParameters)
        return _Client(index, run)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        if not isinstance(run, RunParameters):
            raise ConfigurationError(f"{self.name} engines need its run_parameters; found {type(run).__name__}")
        return _Server(run)

    def _engine_class(self, party: str) -> type[Engine]:
        if party == SERVER:
            return _Server
        return _Client

    def describe(self) -> str:
        return "plaintext (INSECURE baseline: the server reads every update)"
