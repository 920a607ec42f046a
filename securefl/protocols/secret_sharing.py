"""Additive secret sharing to m non-colluding aggregators.

Each client splits its encoded vector x in Z_2^k into m additive shares

    x = s_0 + s_1 + ... + s_{m-1}  (mod 2^k),
    s_j = PRG(seed_j, label(session, round, client, j))  for j >= 1,
    s_0 = x - sum_{j>=1} s_j,

and sends s_0 to aggregator 0 and only the 32-byte seed_j to aggregator j
(as the IETF VDAF drafts do), so the upload stays about one vector. Each
aggregator sums the shares of the clients every aggregator received; the
server adds the m aggregated shares and learns only sum_i x_i.

Threat model: any m - 1 aggregators together with the server learn nothing
about an individual x beyond the sum, provided at least one aggregator is
honest and client-aggregator channels are confidential and authenticated
(TLS in deployment). The server only ever receives aggregated shares, each
uniform on its own. An aggregator answers one aggregation request per
session and refuses to sum fewer than ``min_clients`` clients, so a curious
server cannot isolate one client by asking for small or repeated sums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from securefl import ring
from securefl.crypto import prg
from securefl.crypto.keys import context
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import (
    SERVER,
    ClientEngine,
    Engine,
    Message,
    Parties,
    Protocol,
    RingAggregate,
    RingVector,
    RunParameters,
    ServerEngine,
    check_vector,
    client_id,
    client_index,
    expect,
)

__all__ = [
    "SecretSharing",
    "aggregator_id",
    "UploadRequest",
    "VectorShare",
    "SeedShare",
    "ReportRequest",
    "ReceivedReport",
    "AggregateRequest",
    "AggregateShare",
]

UPLOAD, REPORT, AGGREGATE = "upload", "report", "aggregate"
_LABEL = "securefl/secret-sharing/v1"


def aggregator_id(index: int) -> str:
    return f"aggregator/{int(index)}"


def share_label(session: bytes, round: int, client: int, aggregator: int) -> bytes:
    """Domain label of the PRG expansion of one client's seed share."""
    return context(_LABEL, session, round, client, aggregator)


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: send your shares to the aggregators."""

    KIND = "secret-sharing/upload-request"


@dataclass(frozen=True)
class VectorShare(Message):
    """Client -> aggregator 0: s_0 = x - sum of the seeded shares."""

    KIND = "secret-sharing/vector-share"
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class SeedShare(Message):
    """Client -> aggregator j >= 1: the 32-byte seed of s_j."""

    KIND = "secret-sharing/seed-share"
    seed: bytes


@dataclass(frozen=True)
class ReportRequest(Message):
    """Server -> aggregator: which clients did you receive a share from?"""

    KIND = "secret-sharing/report-request"


@dataclass(frozen=True)
class ReceivedReport(Message):
    """Aggregator -> server: the client indices it holds a share of."""

    KIND = "secret-sharing/received"
    clients: tuple[int, ...]


@dataclass(frozen=True)
class AggregateRequest(Message):
    """Server -> aggregator: sum the shares of exactly these clients."""

    KIND = "secret-sharing/aggregate-request"
    included: tuple[int, ...]


@dataclass(frozen=True)
class AggregateShare(Message):
    """Aggregator -> server: sum over the included clients of its shares."""

    KIND = "secret-sharing/aggregate-share"
    ring_bits: int
    vector: RingVector


_Run = RunParameters


class _Client(ClientEngine):
    def __init__(self, index: int, run: _Run) -> None:
        self.party = client_id(index)
        self._index = index
        self._run = run
        self._input: np.ndarray | None = None
        self._sent = False

    def provide_input(self, vector: np.ndarray) -> None:
        self._input = check_vector(vector, length=self._run.length, ring_bits=self._run.ring_bits)

    def handle(self, message: Message) -> list[Message]:
        run = self._run
        expect(message, UploadRequest, session=run.session, round=run.round, phase=UPLOAD,
               recipient=self.party, senders=(SERVER,))
        if self._input is None:
            raise ProtocolAbort(f"{self.party} has no input to share")
        if self._sent:
            raise ProtocolViolation(f"{self.party} already shared its input in this session")
        self._sent = True
        bits = run.ring_bits
        streams, outbound = [], []
        for aggregator in range(1, run.protocol.aggregators):
            seed = os.urandom(prg.SEED_BYTES)
            streams.append((seed, share_label(run.session, run.round, self._index, aggregator)))
            outbound.append(SeedShare(*run.header(UPLOAD, self.party, aggregator_id(aggregator)), seed=seed))
        # s_0 = x - sum_{j>=1} PRG(seed_j), in one cache-friendly pass.
        first_share = np.empty_like(self._input)
        prg.accumulate(first_share, streams, bits, signs=-1, start_from=self._input)
        outbound.insert(0, VectorShare(*run.header(UPLOAD, self.party, aggregator_id(0)), ring_bits=bits, vector=first_share))
        return outbound


class _Aggregator(Engine):
    def __init__(self, index: int, run: _Run) -> None:
        self.party = aggregator_id(index)
        self._index = index
        self._run = run
        self._client_ids = [client_id(i) for i in range(run.clients)]
        self._shares: dict[int, np.ndarray | bytes] = {}
        self._answered = False

    def handle(self, message: Message) -> list[Message]:
        if message.phase == UPLOAD:
            return self._receive_share(message)
        if message.phase == REPORT:
            return self._report(message)
        return self._aggregate(message)

    def _receive_share(self, message: Message) -> list[Message]:
        run = self._run
        kind = VectorShare if self._index == 0 else SeedShare
        expect(message, kind, session=run.session, round=run.round, phase=UPLOAD,
               recipient=self.party, senders=self._client_ids)
        sender = client_index(message.sender)
        if sender in self._shares:
            raise InvalidMessage(f"duplicate share from {message.sender}")
        if self._answered:
            raise InvalidMessage(f"share from {message.sender} arrived after aggregation")
        if isinstance(message, VectorShare):
            if message.ring_bits != run.ring_bits or message.vector.size != run.length:
                raise InvalidMessage(f"share from {message.sender} has the wrong ring or length")
            self._shares[sender] = message.vector
        else:
            if len(message.seed) != prg.SEED_BYTES:
                raise InvalidMessage(f"seed share from {message.sender} is {len(message.seed)} bytes; expected 32")
            self._shares[sender] = message.seed
        return []

    def _report(self, message: Message) -> list[Message]:
        run = self._run
        expect(message, ReportRequest, session=run.session, round=run.round, phase=REPORT,
               recipient=self.party, senders=(SERVER,))
        return [ReceivedReport(*run.header(REPORT, self.party, SERVER), clients=tuple(sorted(self._shares)))]

    def _aggregate(self, message: Message) -> list[Message]:
        run = self._run
        expect(message, AggregateRequest, session=run.session, round=run.round, phase=AGGREGATE,
               recipient=self.party, senders=(SERVER,))
        if self._answered:
            raise ProtocolViolation(f"{self.party} already answered an aggregation request in this session")
        included = message.included
        if len(set(included)) != len(included):
            raise ProtocolViolation("aggregation request lists a client twice")
        unknown = set(included) - set(self._shares)
        if unknown:
            raise ProtocolViolation(f"aggregation request names clients {sorted(unknown)} with no share here")
        if len(included) < run.protocol.min_clients:
            raise ProtocolViolation(
                f"refusing to sum {len(included)} client(s); min_clients={run.protocol.min_clients}"
            )
        self._answered = True
        bits = run.ring_bits
        total = np.zeros(run.length, dtype=ring.ring_dtype(bits))
        if self._index == 0:
            ring.accumulate(total, [self._shares[i] for i in included], bits)
        else:
            labels = [share_label(run.session, run.round, i, self._index) for i in included]
            prg.accumulate(total, [(self._shares[i], label) for i, label in zip(included, labels)], bits)
        self._shares.clear()
        return [AggregateShare(*run.header(AGGREGATE, self.party, SERVER), ring_bits=bits, vector=total)]


class _Server(ServerEngine):
    def __init__(self, run: _Run) -> None:
        self.party = SERVER
        self._run = run
        self._aggregators = [aggregator_id(j) for j in range(run.protocol.aggregators)]
        self._reports: dict[str, frozenset[int]] = {}
        self._sums: dict[str, np.ndarray] = {}
        self._included: tuple[int, ...] | None = None
        self._phase: str | None = None

    def begin_phase(self, phase: str) -> list[Message]:
        run = self._run
        self._phase = phase
        if phase == UPLOAD:
            return [UploadRequest(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]
        if phase == REPORT:
            return [ReportRequest(*run.header(REPORT, SERVER, a)) for a in self._aggregators]
        if phase == AGGREGATE and self._included is not None:
            return [AggregateRequest(*run.header(AGGREGATE, SERVER, a), included=self._included) for a in self._aggregators]
        raise ProtocolAbort(f"phase {phase!r} cannot begin now")

    def handle(self, message: Message) -> list[Message]:
        run = self._run
        if message.phase == REPORT:
            expect(message, ReceivedReport, session=run.session, round=run.round, phase=REPORT,
                   recipient=SERVER, senders=self._aggregators)
            if message.sender in self._reports:
                raise InvalidMessage(f"duplicate report from {message.sender}")
            if any(not 0 <= i < run.clients for i in message.clients):
                raise InvalidMessage(f"report from {message.sender} names unknown clients")
            self._reports[message.sender] = frozenset(message.clients)
            return []
        expect(message, AggregateShare, session=run.session, round=run.round, phase=AGGREGATE,
               recipient=SERVER, senders=self._aggregators)
        if message.sender in self._sums:
            raise InvalidMessage(f"duplicate aggregate share from {message.sender}")
        if message.ring_bits != run.ring_bits or message.vector.size != run.length:
            raise InvalidMessage(f"aggregate share from {message.sender} has the wrong ring or length")
        self._sums[message.sender] = message.vector
        return []

    def end_phase(self, phase: str) -> None:
        run = self._run
        expected = len(self._aggregators)
        if phase == REPORT:
            if len(self._reports) < expected:
                raise ProtocolAbort(f"phase 'report': {len(self._reports)} of {expected} aggregators answered")
            included = frozenset.intersection(*self._reports.values())
            if len(included) < run.protocol.min_clients:
                raise ProtocolAbort(
                    f"phase 'report': {len(included)} client(s) reached every aggregator; "
                    f"min_clients={run.protocol.min_clients}"
                )
            self._included = tuple(sorted(included))
        elif phase == AGGREGATE and len(self._sums) < expected:
            raise ProtocolAbort(f"phase 'aggregate': {len(self._sums)} of {expected} aggregators answered")

    def result(self) -> RingAggregate:
        if self._included is None or len(self._sums) != len(self._aggregators):
            raise ProtocolAbort("the aggregation has not completed")
        bits = self._run.ring_bits
        total = np.zeros(self._run.length, dtype=ring.ring_dtype(bits))
        for share in self._sums.values():
            ring.add(total, share, bits)
        return RingAggregate(total=total, included=self._included)


@dataclass(frozen=True)
class SecretSharing(Protocol):
    """Additive shares of each update to ``aggregators`` non-colluding aggregators.

    Secure while at least one aggregator does not collude with the server or
    the others. ``min_clients`` is the smallest sum an aggregator releases.
    """

    aggregators: int = 2
    min_clients: int = 2
    encoding: Encoding = field(default_factory=Encoding)

    name = "secret-sharing"
    secure = True
    phases = (UPLOAD, REPORT, AGGREGATE)

    def __post_init__(self) -> None:
        if isinstance(self.aggregators, bool) or not isinstance(self.aggregators, int) or self.aggregators < 2:
            raise ConfigurationError(f"aggregators must be an integer >= 2; found {self.aggregators!r}")
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, int) or self.min_clients < 1:
            raise ConfigurationError(f"min_clients must be an integer >= 1; found {self.min_clients!r}")

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        self.check_clients(clients)
        run = _Run(self, clients, vector_length, session, round)
        return Parties(
            server=_Server(run),
            clients=[_Client(i, run) for i in range(clients)],
            helpers=[_Aggregator(j, run) for j in range(self.aggregators)],
        )

    def describe(self) -> str:
        return f"secret-sharing ({self.aggregators} non-colluding aggregators)"
