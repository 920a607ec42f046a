"""The insecure baseline: every client sends its encoded vector in the clear.

INSECURE BY DESIGN. The server reads each client's update. It exists only as
the reference point against which the secure protocols' overhead and privacy
are measured, and it is labelled ``secure = False`` in every output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from securefl import ring
from securefl.encoding import Encoding
from securefl.errors import InvalidMessage, ProtocolAbort
from securefl.protocols.base import (
    SERVER,
    ClientEngine,
    Message,
    Parties,
    Protocol,
    RingAggregate,
    RingVector,
    ServerEngine,
    check_vector,
    client_id,
    client_index,
    expect,
)

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
    def __init__(self, index: int, protocol: "Plaintext", *, vector_length: int, session: bytes, round: int) -> None:
        self.party = client_id(index)
        self._protocol = protocol
        self._length = vector_length
        self._session = session
        self._round = round
        self._input: np.ndarray | None = None
        self._sent = False

    def provide_input(self, vector: np.ndarray) -> None:
        self._input = check_vector(vector, length=self._length, ring_bits=self._protocol.encoding.ring_bits)

    def handle(self, message: Message) -> list[Message]:
        expect(message, UploadRequest, session=self._session, round=self._round, phase=UPLOAD,
               recipient=self.party, senders=(SERVER,))
        if self._input is None:
            raise ProtocolAbort(f"{self.party} has no input to upload")
        if self._sent:
            raise InvalidMessage(f"{self.party} already uploaded in this session")
        self._sent = True
        return [PlaintextUpload(self._session, self._round, UPLOAD, self.party, SERVER,
                                ring_bits=self._protocol.encoding.ring_bits, vector=self._input)]


class _Server(ServerEngine):
    def __init__(self, protocol: "Plaintext", *, clients: int, vector_length: int, session: bytes, round: int) -> None:
        self.party = SERVER
        self._protocol = protocol
        self._clients = [client_id(i) for i in range(clients)]
        self._length = vector_length
        self._session = session
        self._round = round
        self._uploads: dict[int, np.ndarray] = {}
        self._done = False

    def begin_phase(self, phase: str) -> list[Message]:
        return [UploadRequest(self._session, self._round, UPLOAD, SERVER, party) for party in self._clients]

    def handle(self, message: Message) -> list[Message]:
        expect(message, PlaintextUpload, session=self._session, round=self._round, phase=UPLOAD,
               recipient=SERVER, senders=self._clients)
        index = client_index(message.sender)
        if index in self._uploads:
            raise InvalidMessage(f"duplicate upload from {message.sender}")
        if message.ring_bits != self._protocol.encoding.ring_bits or message.vector.size != self._length:
            raise InvalidMessage(f"upload from {message.sender} has the wrong ring or length")
        self._uploads[index] = message.vector
        return []

    def end_phase(self, phase: str) -> None:
        if not self._uploads:
            raise ProtocolAbort(f"phase {phase!r}: 0 of {len(self._clients)} clients uploaded")
        self._done = True

    def result(self) -> RingAggregate:
        if not self._done:
            raise ProtocolAbort("the upload phase has not ended")
        bits = self._protocol.encoding.ring_bits
        total = np.zeros(self._length, dtype=ring.ring_dtype(bits))
        for vector in self._uploads.values():
            ring.add(total, vector, bits)
        return RingAggregate(total=total, included=tuple(sorted(self._uploads)))


@dataclass(frozen=True)
class Plaintext(Protocol):
    """Insecure baseline: the server sees every encoded update. Never deploy."""

    encoding: Encoding = field(default_factory=Encoding)

    name = "plaintext"
    secure = False
    phases = (UPLOAD,)

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        self.check_clients(clients)
        server = _Server(self, clients=clients, vector_length=vector_length, session=session, round=round)
        engines = [_Client(i, self, vector_length=vector_length, session=session, round=round) for i in range(clients)]
        return Parties(server=server, clients=engines)

    def describe(self) -> str:
        return "plaintext (INSECURE baseline: the server reads every update)"
