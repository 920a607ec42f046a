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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import numpy as np

from securefl import ring, validation
from securefl.crypto import prg
from securefl.crypto.keys import context
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import (
    DEFAULT_MIN_CLIENTS,
    SERVER_ONLY,
    ClientEngine,
    Engine,
    Parties,
    Protocol,
    RespondingEngine,
    RingAggregate,
    RunParameters,
    ServerEngine,
    Step,
    check_min_clients,
    in_ring,
    received,
)
from securefl.protocols.state import StateDict, StateReader, keyed
from securefl.protocols.wire import SERVER, Message, RingVector, Size, client_id, client_index

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

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
    seed: Annotated[bytes, Size(prg.SEED_BYTES)]


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


@dataclass(frozen=True)
class _Run(RunParameters):
    """The public parameters of one secret-sharing aggregation."""

    aggregators: int

    def _identity(self) -> tuple[bytes | str | int, ...]:
        return (*super()._identity(), self.aggregators)


def _secret_sharing_run(run: RunParameters) -> _Run:
    if not isinstance(run, _Run):
        raise ConfigurationError(f"secret-sharing engines need its run_parameters; found {type(run).__name__}")
    return run


def _aggregator_index(party: str, run: _Run) -> int:
    """j of a stored party id "aggregator/j" of this run (``InvalidMessage`` for anything else)."""
    digits = party.removeprefix("aggregator/")
    if digits == party or not (digits.isascii() and digits.isdigit()) or aggregator_id(int(digits)) != party \
            or not int(digits) < run.aggregators:
        raise InvalidMessage(f"stored state names {party!r}, not an aggregator of this run")
    return int(digits)


class _Client(ClientEngine):
    INPUT_PHASE = UPLOAD
    STATE_KIND = "secret-sharing/client"
    _run: _Run

    def __init__(self, index: int, run: _Run) -> None:
        self._index = index
        super().__init__(client_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        run = _secret_sharing_run(run)
        return cls(cls._index_of(party, run), run)

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (UploadRequest,), self._share, senders=SERVER_ONLY)]

    def _share(self, message: Message) -> list[Message]:
        run = self._run
        vector = self._take_input()
        bits = run.ring_bits
        streams: list[tuple[bytes, bytes]] = []
        outbound: list[Message] = []
        for aggregator in range(1, run.aggregators):
            seed = os.urandom(prg.SEED_BYTES)
            streams.append((seed, share_label(run.session, run.round, self._index, aggregator)))
            outbound.append(SeedShare(*run.header(UPLOAD, self.party, aggregator_id(aggregator)), seed=seed))
        # s_0 = x - sum_{j>=1} PRG(seed_j), in one cache-friendly pass.
        first_share = np.empty_like(vector)
        prg.accumulate(first_share, streams, bits, signs=-1, start_from=vector)
        outbound.insert(0, VectorShare(*run.header(UPLOAD, self.party, aggregator_id(0)), ring_bits=bits,
                                       vector=first_share))
        return outbound


class _Aggregator(RespondingEngine):
    STATE_KIND = "secret-sharing/aggregator"
    _run: _Run

    def __init__(self, index: int, run: _Run) -> None:
        self._index = index
        self._vector_shares: dict[int, np.ndarray] = {}  # aggregator 0
        self._seed_shares: dict[int, bytes] = {}  # aggregators j >= 1
        super().__init__(aggregator_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Aggregator:
        run = _secret_sharing_run(run)
        return cls(_aggregator_index(party, run), run)

    def _state_fields(self) -> StateDict:
        if self._index == 0:
            senders = sorted(self._vector_shares)
            dtype = ring.ring_dtype(self._run.ring_bits)
            shares = np.concatenate([self._vector_shares[i] for i in senders]) if senders else np.zeros(0, dtype)
            return {"share-senders": senders, "vector-shares": shares}
        senders, seeds = keyed(self._seed_shares)
        return {"share-senders": senders, "seed-shares": seeds}

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        if self._index == 0:
            senders = reader.integers("share-senders", minimum=0, maximum=run.clients - 1)
            shares = reader.vector("vector-shares", dtype=ring.ring_dtype(run.ring_bits),
                                   length=len(senders) * run.length)
            reader.require(in_ring(shares, run.ring_bits), f"shares have coordinates outside Z_2^{run.ring_bits}")
            self._vector_shares = {i: shares[k * run.length : (k + 1) * run.length] for k, i in enumerate(senders)}
        else:
            self._seed_shares = reader.keyed_blobs("share-senders", "seed-shares", maximum=run.clients - 1,
                                                   size=prg.SEED_BYTES)
            senders = sorted(self._seed_shares)
        reader.require(self._active or not senders, "holds shares after it stopped")
        if self._position == 0:
            reader.require({client_id(i) for i in senders} == self._answered,
                           "holds shares that differ from the clients it accepted")

    def _steps(self) -> list[Step]:
        clients = frozenset(client_id(i) for i in range(self._run.clients))
        share = VectorShare if self._index == 0 else SeedShare
        return [
            Step(UPLOAD, (share,), self._receive_share, senders=clients, once=False, required=False),
            Step(REPORT, (ReportRequest,), self._report, senders=SERVER_ONLY),
            Step(AGGREGATE, (AggregateRequest,), self._aggregate, senders=SERVER_ONLY),
        ]

    def _wipe(self) -> None:
        self._vector_shares.clear()
        self._seed_shares.clear()

    def _holders(self) -> set[int]:
        return set(self._vector_shares) | set(self._seed_shares)

    def _receive_share(self, message: Message) -> list[Message]:
        run = self._run
        sender = client_index(message.sender)
        if isinstance(message, VectorShare):
            if message.ring_bits != run.ring_bits or message.vector.size != run.length:
                raise InvalidMessage(f"share from {message.sender} has the wrong ring or length")
            self._vector_shares[sender] = message.vector
        else:
            message = received(message, SeedShare)  # its seed has 32 bytes: the schema refuses any other length
            self._seed_shares[sender] = message.seed
        return []

    def _report(self, message: Message) -> list[Message]:
        run = self._run
        return [ReceivedReport(*run.header(REPORT, self.party, SERVER), clients=tuple(sorted(self._holders())))]

    def _aggregate(self, message: Message) -> list[Message]:
        message = received(message, AggregateRequest)
        run = self._run
        included = message.included
        if len(set(included)) != len(included):
            raise ProtocolViolation("aggregation request lists a client twice")
        unknown = set(included) - self._holders()
        if unknown:
            raise ProtocolViolation(f"aggregation request names clients {sorted(unknown)} with no share here")
        if len(included) < run.min_clients:
            raise ProtocolViolation(f"refusing to sum {len(included)} client(s); min_clients={run.min_clients}")
        bits = run.ring_bits
        total = np.zeros(run.length, dtype=ring.ring_dtype(bits))
        if self._index == 0:
            ring.accumulate(total, [self._vector_shares[i] for i in included], bits)
        else:
            labels = [share_label(run.session, run.round, i, self._index) for i in included]
            prg.accumulate(total, [(self._seed_shares[i], label) for i, label in zip(included, labels)], bits)
        return [AggregateShare(*run.header(AGGREGATE, self.party, SERVER), ring_bits=bits, vector=total)]


class _Server(ServerEngine):
    STATE_KIND = "secret-sharing/server"
    _run: _Run

    def __init__(self, run: _Run) -> None:
        self._aggregators = [aggregator_id(j) for j in range(run.aggregators)]
        self._reports: dict[str, frozenset[int]] = {}
        self._sums: dict[str, np.ndarray] = {}
        self._included: tuple[int, ...] = ()
        super().__init__(SERVER, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(_secret_sharing_run(run))

    def _state_fields(self) -> StateDict:
        reporters, summers = sorted(self._reports), sorted(self._sums)
        dtype = ring.ring_dtype(self._run.ring_bits)
        return {
            "reporters": reporters,
            "report-sizes": [len(self._reports[a]) for a in reporters],
            "report-clients": [i for a in reporters for i in sorted(self._reports[a])],
            "summers": summers,
            "sums": np.concatenate([self._sums[a] for a in summers]) if summers else np.zeros(0, dtype),
            "included": list(self._included),
        }

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        aggregators = set(self._aggregators)
        reporters, summers = reader.texts("reporters"), reader.texts("summers")
        for parties in (reporters, summers):
            reader.require(parties == sorted(set(parties)) and set(parties) <= aggregators,
                           "must list aggregators of this run once each, in order")
        sizes = reader.integers("report-sizes", minimum=0, maximum=run.clients, increasing=False)
        clients = reader.integers("report-clients", minimum=0, maximum=run.clients - 1, increasing=False)
        reader.require(len(sizes) == len(reporters) and sum(sizes) == len(clients), "has reports of the wrong size")
        reports, start = {}, 0
        for reporter, size in zip(reporters, sizes):
            report = clients[start : start + size]
            reader.require(report == sorted(set(report)), "has a report that lists a client twice or out of order")
            reports[reporter], start = frozenset(report), start + size
        sums = reader.vector("sums", dtype=ring.ring_dtype(run.ring_bits), length=len(summers) * run.length)
        reader.require(in_ring(sums, run.ring_bits), f"sums have coordinates outside Z_2^{run.ring_bits}")
        included = reader.integers("included", minimum=0, maximum=run.clients - 1)
        self._reports = reports
        self._sums = {a: sums[k * run.length : (k + 1) * run.length] for k, a in enumerate(summers)}
        self._included = tuple(included)

    def _steps(self) -> list[Step]:
        return [
            Step(UPLOAD, begin=self._request_upload),
            Step(REPORT, (ReceivedReport,), self._receive_report, begin=self._request_reports, end=self._close_reports),
            Step(AGGREGATE, (AggregateShare,), self._receive_sum, begin=self._request_sums, end=self._close_sums),
        ]

    def _request_upload(self) -> list[Message]:
        run = self._run
        return [UploadRequest(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]

    def _request_reports(self) -> list[Message]:
        return [ReportRequest(*self._run.header(REPORT, SERVER, a)) for a in self._aggregators]

    def _receive_report(self, message: Message) -> list[Message]:
        message = received(message, ReceivedReport)
        if any(not 0 <= i < self._run.clients for i in message.clients):
            raise InvalidMessage(f"report from {message.sender} names unknown clients")
        self._reports[message.sender] = frozenset(message.clients)
        return []

    def _close_reports(self) -> None:
        run = self._run
        if len(self._reports) < len(self._aggregators):
            raise ProtocolAbort(
                f"phase 'report': {len(self._reports)} of {len(self._aggregators)} aggregators answered"
            )
        included = frozenset.intersection(*self._reports.values())
        if len(included) < run.min_clients:
            raise ProtocolAbort(
                f"phase 'report': {len(included)} client(s) reached every aggregator; min_clients={run.min_clients}"
            )
        self._included = tuple(sorted(included))

    def _request_sums(self) -> list[Message]:
        run = self._run
        return [AggregateRequest(*run.header(AGGREGATE, SERVER, a), included=self._included) for a in self._aggregators]

    def _receive_sum(self, message: Message) -> list[Message]:
        message = received(message, AggregateShare)
        run = self._run
        if message.ring_bits != run.ring_bits or message.vector.size != run.length:
            raise InvalidMessage(f"aggregate share from {message.sender} has the wrong ring or length")
        self._sums[message.sender] = message.vector
        return []

    def _close_sums(self) -> None:
        if len(self._sums) < len(self._aggregators):
            raise ProtocolAbort(
                f"phase 'aggregate': {len(self._sums)} of {len(self._aggregators)} aggregators answered"
            )

    def _aggregate(self) -> RingAggregate:
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
    min_clients: int = DEFAULT_MIN_CLIENTS
    encoding: Encoding = field(default_factory=Encoding)

    name = "secret-sharing"
    secure = True
    phases = (UPLOAD, REPORT, AGGREGATE)

    def __post_init__(self) -> None:
        if not validation.is_integer(self.aggregators) or self.aggregators < 2:
            raise ConfigurationError(f"aggregators must be an integer >= 2; found {self.aggregators!r}")
        object.__setattr__(self, "aggregators", int(self.aggregators))
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> _Run:
        base = super().run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                      verification_keys=verification_keys)
        return _Run(**vars(base), aggregators=self.aggregators)

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
        return Parties(
            server=_Server(run),
            clients=[_Client(i, run) for i in range(run.clients)],
            helpers=[_Aggregator(j, run) for j in range(self.aggregators)],
        )

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        index, checked = self._client_run(index, run, signing_key, _Run)
        return _Client(index, checked)

    def helper_parties(self) -> tuple[str, ...]:
        """The ``aggregators`` non-colluding aggregators."""
        return tuple(aggregator_id(j) for j in range(self.aggregators))

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        checked = _secret_sharing_run(run)
        if party not in {aggregator_id(j) for j in range(checked.aggregators)}:
            raise ConfigurationError(f"secret-sharing with {checked.aggregators} aggregators has no party {party!r}")
        return _Aggregator(_aggregator_index(party, checked), checked)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        return _Server(_secret_sharing_run(run))

    def _engine_class(self, party: str) -> type[Engine]:
        if party == SERVER:
            return _Server
        return _Aggregator if party.startswith("aggregator/") else _Client

    def describe(self) -> str:
        return f"secret-sharing ({self.aggregators} non-colluding aggregators)"
