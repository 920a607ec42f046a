"""The driver core: the one loop that moves protocol messages between engines.

A :class:`Round` runs one aggregation. It holds the server engine and any
engines hosted in its own process, and a :class:`Transport` that reaches
every other party (in process: :class:`InProcessTransport`; over Flower:
``securefl.integrations.flower.transport.GridTransport``). For each phase
the server opens the phase, the Round routes every message, and the server
closes it; after the last phase the server's result is the aggregate.

What the Round guarantees, on every transport:

- every message a local engine makes is encoded once (``Message.to_frames``)
  and every message delivered to a local engine is decoded
  (``decode_message``) from the very payload the Round records, so the
  server engine's inputs are exactly the ``transcript``;
- it alone counts bytes: ``bytes_sent`` when a message leaves its sender (a
  local engine, or a party's reply handed back by the transport),
  ``bytes_received`` when it reaches a local engine or a party the transport
  delivered to (one it did not report failed);
- a party that is dropped (before the first phase, by a transport failure,
  or for a message a local engine refused) is sent nothing more, and what
  it sends is ignored; the server engine decides in ``end_phase`` whether
  the phase can go on (``ProtocolAbort`` if not);
- a reply from a remote party to another remote party comes back to the
  Round and travels on in a further exchange of the same phase, so sealed
  envelopes (:attr:`Parcel.sealed`) cross without being opened.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import numpy as np

from securefl import validation
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolViolation,
)
from securefl.protocols.base import Engine, Protocol, RingAggregate, ServerEngine
from securefl.protocols.wire import SERVER, SESSION_BYTES, Message, client_id, decode_message

__all__ = [
    "Payload",
    "Parcel",
    "Delivery",
    "Transport",
    "InProcessTransport",
    "PhaseEnd",
    "RoundOutcome",
    "Round",
    "Ledger",
    "TranscriptEntry",
    "summarize_metrics",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

Payload = bytes | Sequence[bytes | memoryview]
"""A message on the wire: its canonical byte string (``Message.to_bytes``) or
its frames (``Message.to_frames``), which ``decode_message`` takes alike; for
a sealed parcel, the envelope's bytes."""


def payload_size(payload: Payload) -> int:
    """The bytes ``payload`` puts on the wire (the length of the joined frames)."""
    if isinstance(payload, bytes):
        return len(payload)
    return sum(len(frame) if isinstance(frame, bytes) else frame.nbytes for frame in payload)


class TranscriptEntry:
    """One message the server engine received: its sender, phase and canonical bytes.

    ``payload`` is the exact byte string on the wire; an entry made from the
    message's frames (immutable: sent vectors are frozen) joins them on first
    access, so recording the transcript costs no copy of big vectors.
    """

    __slots__ = ("sender", "phase", "_frames", "_payload")

    def __init__(self, *, sender: str, phase: str, payload: bytes | None = None,
                 frames: Sequence[bytes | memoryview] | None = None) -> None:
        if (payload is None) == (frames is None):
            raise ConfigurationError("a transcript entry needs exactly one of payload and frames")
        self.sender = sender
        self.phase = phase
        self._frames = frames
        self._payload = payload

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            self._payload = b"".join(self._frames or ())
            self._frames = None
        return self._payload

    def __repr__(self) -> str:
        return f"TranscriptEntry(sender={self.sender!r}, phase={self.phase!r}, bytes={len(self.payload)})"


def _seconds_table() -> defaultdict[str, float]:
    return defaultdict(float)


@dataclass
class Ledger:
    """What a driver measured: bytes sent and received per party, seconds per phase per party.

    ``setup_seconds`` is the time the protocol's setup took (key generation,
    Paillier's obfuscators, dealt keys): work every party does before the
    update exists, which a deployment can run ahead of training (offline).
    ``round_seconds`` is the in-process Round's wall time (every engine's
    phases plus the routing between them); 0 where the round ran elsewhere.
    """

    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(_seconds_table))
    setup_seconds: float = 0.0
    round_seconds: float = 0.0


class Parcel:
    """One protocol message in transit between the Round and a transport.

    ``sender`` and ``recipient`` are its route: the message's own fields, or,
    ``sealed``, those an envelope names (:func:`securefl.integrations.flower.wire.envelope_route`),
    which the Round routes without opening and never delivers to a local
    engine. ``message`` is the decoded message when whoever made the parcel
    holds it (for ``lose`` and inspection only: the Round always decodes what
    it delivers from ``payload``). ``size`` is ``payload``'s length on the
    wire, computed here, once.
    """

    __slots__ = ("sender", "recipient", "payload", "sealed", "message", "size")

    def __init__(self, sender: str, recipient: str, payload: Payload, sealed: bool = False,
                 message: Message | None = None) -> None:
        self.sender = sender
        self.recipient = recipient
        self.payload = payload
        self.sealed = sealed
        self.message = message
        if isinstance(payload, bytes):
            self.size = len(payload)
        else:
            size = 0
            for frame in payload:
                size += len(frame) if isinstance(frame, bytes) else frame.nbytes
            self.size = size

    @classmethod
    def of(cls, message: Message) -> Parcel:
        """``message`` as frames (zero-copy views of its vectors)."""
        return cls(message.sender, message.recipient, message.to_frames(), False, message)

    def __repr__(self) -> str:
        sealed = ", sealed" if self.sealed else ""
        return f"Parcel({self.sender!r} -> {self.recipient!r}, {self.size} bytes{sealed})"


@dataclass
class Delivery:
    """What one exchange brought back, per party of the outbox.

    ``replies[party]``: the messages the party sent in answer, in the order it
    made them (an empty list: it answered nothing). ``failures[party]``: why
    it gave no usable answer (no reply in time, an error reply, a silent
    party); the Round drops it from then on. Every party of the outbox is in
    exactly one of the two. ``seconds[party]``: engine seconds spent on the
    exchange, as measured in process or reported by the party.
    """

    replies: dict[str, list[Parcel]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Transport(ABC):
    """Carries the messages of the parties a :class:`Round` does not hold in its own process.

    Contract of :meth:`exchange`: for each party of ``outbox`` (dict order),
    deliver its parcels in order and collect what it answers. The transport
    never delivers a reply itself, even one addressed to another party it
    reaches: every reply comes back in the :class:`Delivery`, named with its
    sender and recipient, and the Round routes it. A party the transport
    runs as an engine gets each parcel decoded (``decode_message(parcel.payload)``);
    a remote party gets the payload as is and decodes it there. The Round
    counts the bytes (:attr:`Parcel.size`); the transport only reports
    engine seconds. A refusal by a remote party is a failure; an exception
    of an engine the transport runs in this process propagates (a bug, or
    what a test asked for).
    """

    @property
    @abstractmethod
    def parties(self) -> Collection[str]:
        """The party ids this transport reaches."""

    @abstractmethod
    def exchange(self, outbox: Mapping[str, Sequence[Parcel]], *, phase: str) -> Delivery:
        """Deliver ``outbox`` (party -> its parcels) in ``phase``; what each party answered, or why not."""


class InProcessTransport(Transport):
    """Engines of this process as the remote parties: the simulator's network.

    ``engines`` are the parties by id (clients, helpers); ``dropouts`` maps a
    party to the phase of ``phases`` from which it is silent: it receives
    nothing from then on (failure ``"dropped out"``). Each inbound parcel is
    decoded from its canonical frames (zero copy) and handled; the time of
    ``handle`` is the party's seconds; replies travel as frames.
    """

    def __init__(self, engines: Mapping[str, Engine] | Iterable[Engine], *, phases: Sequence[str],
                 dropouts: Mapping[str, str] | None = None) -> None:
        held = dict(engines) if isinstance(engines, Mapping) else {engine.party: engine for engine in engines}
        self._engines: dict[str, Engine] = held
        self._positions = {phase: position for position, phase in enumerate(phases)}
        self._silent_from: dict[str, int] = {}
        for party, phase in (dropouts or {}).items():
            if party not in held:
                raise ConfigurationError(f"dropout party {party!r} is not one of this transport's parties")
            if phase not in self._positions:
                raise ConfigurationError(f"dropout phase {phase!r} is not one of {', '.join(phases)}")
            self._silent_from[party] = self._positions[phase]

    @property
    def parties(self) -> Collection[str]:
        return self._engines.keys()

    def exchange(self, outbox: Mapping[str, Sequence[Parcel]], *, phase: str) -> Delivery:
        position = self._positions.get(phase)
        if position is None:
            raise LocalProtocolError(f"phase {phase!r} is not a phase of this transport's protocol")
        delivery = Delivery()
        replies, seconds = delivery.replies, delivery.seconds
        clock = time.perf_counter
        for party, parcels in outbox.items():
            stop = self._silent_from.get(party)
            if stop is not None and stop <= position:
                delivery.failures[party] = "dropped out"
                continue
            engine = self._engines.get(party)
            if engine is None:
                raise ConfigurationError(f"no engine here plays {party!r}")
            handle = engine.handle
            answers: list[Parcel] = []
            spent = 0.0
            for parcel in parcels:
                if parcel.sealed:
                    raise ConfigurationError(f"a sealed envelope for {party}: nothing is sealed in process")
                inbound = decode_message(parcel.payload)  # validated from the canonical frames, without a copy
                start = clock()
                made = handle(inbound)
                spent += clock() - start
                for message in made:
                    answers.append(Parcel(message.sender, message.recipient, message.to_frames(), False, message))
            replies[party] = answers
            seconds[party] = spent
        return delivery


@dataclass(frozen=True)
class PhaseEnd:
    """Handed to a Round's ``on_phase_end`` after the server engine closed ``phase``."""

    phase: str
    dropped: Mapping[str, str]
    seconds: float


@dataclass(frozen=True)
class RoundOutcome:
    """One completed aggregation.

    ``aggregate`` is the server engine's result; ``transcript`` every message
    it received, in order; ``dropped`` maps a party to the phase from which
    it took no part and ``errors`` to the reason; ``seconds`` is the wall
    time of the run.
    """

    aggregate: RingAggregate
    transcript: list[TranscriptEntry]
    ledger: Ledger
    dropped: dict[str, str]
    errors: dict[str, str]
    seconds: float


Lose = Callable[[Message], bool]


class Round:
    """One aggregation: the server engine, the engines hosted here, a transport for the rest.

    ``phases`` are the protocol's phases in order. ``hosted`` are engines
    run in this process besides the server (helpers, in tests). ``absent``
    names parties known to be unreachable (party -> reason): dropouts from
    the first phase. ``lose(message)`` marks a message as lost in transit
    (counted as sent, never delivered; sealed parcels are opaque to it).
    ``on_phase_end`` is called after each phase the server closed.
    ``drop_refused``: a remote party's message that names another sender or
    an unknown recipient, or that a local engine refuses (``InvalidMessage``,
    ``ProtocolViolation``), drops that party (True: the network is not
    trusted) or raises (False: in process, where it is a bug). Single use.
    """

    def __init__(
        self,
        server: ServerEngine,
        *,
        phases: Sequence[str],
        transport: Transport,
        hosted: Iterable[Engine] = (),
        absent: Mapping[str, str] | None = None,
        lose: Lose | None = None,
        on_phase_end: Callable[[PhaseEnd], None] | None = None,
        drop_refused: bool = True,
    ) -> None:
        if not phases:
            raise ConfigurationError("a round needs at least one phase")
        self._server = server
        self._phases = tuple(phases)
        self._transport = transport
        self._local: dict[str, Engine] = {server.party: server}
        for engine in hosted:
            if engine.party in self._local:
                raise ConfigurationError(f"two local engines play {engine.party!r}")
            self._local[engine.party] = engine
        self._remote = frozenset(transport.parties)
        both = [party for party in self._local if party in self._remote]
        if both:
            raise ConfigurationError(f"parties {both} are both hosted here and reached by the transport")
        self._lose = lose
        self._on_phase_end = on_phase_end
        self._drop_refused = bool(drop_refused)
        self._ledger = Ledger()
        self._transcript: list[TranscriptEntry] = []
        self._dropped: dict[str, str] = {}
        self._errors: dict[str, str] = {}
        self._ran = False
        for party, reason in (absent or {}).items():
            self._drop(party, self._phases[0], reason)

    # -- what the round has seen so far (also after an abort) ---------------------------

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """Every message the server engine received, in order."""
        return self._transcript

    @property
    def dropped(self) -> dict[str, str]:
        """Party -> the phase from which it took no part."""
        return dict(self._dropped)

    @property
    def errors(self) -> dict[str, str]:
        """Party -> why it was dropped."""
        return dict(self._errors)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> RoundOutcome:
        """Run every phase, then take the server's result; ``ProtocolAbort`` if the protocol cannot complete."""
        if self._ran:
            raise AlreadyFinalized("this round has run; an aggregation needs a new Round")
        self._ran = True
        started = time.perf_counter()
        server = self._server
        for phase in self._phases:
            phase_started = time.perf_counter()
            self._run_phase(phase)
            self._timed(server.party, phase, server.end_phase, phase)
            if self._on_phase_end is not None:
                self._on_phase_end(PhaseEnd(phase=phase, dropped=self.dropped,
                                            seconds=time.perf_counter() - phase_started))
        aggregate = self._timed(server.party, "result", server.result)
        return RoundOutcome(aggregate=aggregate, transcript=self._transcript, ledger=self._ledger,
                            dropped=self.dropped, errors=self.errors, seconds=time.perf_counter() - started)

    def _timed(self, party: str, phase: str, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        start = time.perf_counter()
        out = call(*args, **kwargs)
        self._ledger.seconds[phase][party] += time.perf_counter() - start
        return out

    def _drop(self, party: str, phase: str, reason: str) -> None:
        if party not in self._dropped:
            self._dropped[party] = phase
            self._errors[party] = reason

    def _run_phase(self, phase: str) -> None:
        queue: deque[Message] = deque(self._timed(self._server.party, phase, self._server.begin_phase, phase))
        outbox: dict[str, list[Parcel]] = {}
        while True:
            while queue:
                self._route_local(queue.popleft(), phase, queue, outbox)
            if not outbox:
                return
            sending, outbox = outbox, {}
            self._exchange(sending, phase, queue, outbox)

    def _route_local(self, message: Message, phase: str, queue: deque[Message],
                     outbox: dict[str, list[Parcel]]) -> None:
        """A message made in this process (by the server or a hosted engine)."""
        sender, recipient = message.sender, message.recipient
        if sender in self._dropped:
            return
        frames = message.to_frames()
        if recipient in self._remote:
            parcel = Parcel(sender, recipient, frames, False, message)
            self._ledger.bytes_sent[sender] += parcel.size
            if recipient in self._dropped or (self._lose is not None and self._lose(message)):
                return
            box = outbox.get(recipient)
            if box is None:
                outbox[recipient] = [parcel]
            else:
                box.append(parcel)
            return
        size = payload_size(frames)
        self._ledger.bytes_sent[sender] += size
        if recipient in self._dropped or (self._lose is not None and self._lose(message)):
            return
        if recipient not in self._local:
            raise ConfigurationError(f"message addressed to unknown party {recipient!r}")
        self._deliver(recipient, sender, frames, size, phase, queue)

    def _deliver(self, recipient: str, sender: str, payload: Payload, size: int, phase: str,
                 queue: deque[Message]) -> None:
        """Decode ``payload`` and hand it to the local engine ``recipient``; queue its replies."""
        self._ledger.bytes_received[recipient] += size
        inbound = decode_message(payload)  # validated from the canonical bytes or frames, without a copy
        if recipient == self._server.party:
            if isinstance(payload, bytes):
                entry = TranscriptEntry(sender=sender, phase=inbound.phase, payload=payload)
            else:
                entry = TranscriptEntry(sender=sender, phase=inbound.phase, frames=payload)
            self._transcript.append(entry)
        handle = self._local[recipient].handle
        start = time.perf_counter()
        replies = handle(inbound)
        self._ledger.seconds[phase][recipient] += time.perf_counter() - start
        queue.extend(replies)

    def _exchange(self, sending: dict[str, list[Parcel]], phase: str, queue: deque[Message],
                  outbox: dict[str, list[Parcel]]) -> None:
        dropped = self._dropped
        if any(party in dropped for party in sending):  # dropped while its parcels waited
            sending = {party: parcels for party, parcels in sending.items() if party not in dropped}
            if not sending:
                return
        delivery = self._transport.exchange(sending, phase=phase)
        answered, failures = delivery.replies, delivery.failures
        for party in failures:
            if party not in sending or party in answered:
                raise LocalProtocolError(f"the transport reported a failure of {party!r}, which it was not sent "
                                         "or which also answered")
        received = self._ledger.bytes_received
        missing: list[str] = []
        for party, parcels in sending.items():
            if party in answered:
                size = 0
                for parcel in parcels:
                    size += parcel.size
                received[party] += size
            elif party not in failures:
                missing.append(party)
        if len(answered) + len(failures) + len(missing) != len(sending):
            stray = [party for party in answered if party not in sending]
            raise LocalProtocolError(f"the transport answered for parties {stray} it was not sent")
        if delivery.seconds:
            seconds = self._ledger.seconds[phase]
            for party, spent in delivery.seconds.items():
                seconds[party] += spent
        for party, reason in failures.items():
            self._drop(party, phase, reason)
        for party in missing:
            self._drop(party, phase, "the transport brought back nothing for it")
        route = self._route_remote
        for party, parcels in answered.items():
            try:
                for parcel in parcels:
                    route(party, parcel, phase, queue, outbox)
            except (InvalidMessage, ProtocolViolation) as error:
                if not self._drop_refused:
                    raise
                self._drop(party, phase, f"{type(error).__name__}: {error}")

    def _route_remote(self, party: str, parcel: Parcel, phase: str, queue: deque[Message],
                      outbox: dict[str, list[Parcel]]) -> None:
        """A message ``party`` sent: to a local engine, or on to another party in a further exchange."""
        if party in self._dropped:
            return
        if parcel.sender != party:
            raise InvalidMessage(f"{party} sent a message as {parcel.sender!r}")
        self._ledger.bytes_sent[party] += parcel.size
        recipient = parcel.recipient
        if recipient in self._dropped:
            return
        if self._lose is not None and parcel.message is not None and self._lose(parcel.message):
            return
        if recipient in self._local:
            if parcel.sealed:
                raise InvalidMessage(f"{party} sent {recipient} a sealed envelope; no local engine opens one")
            self._deliver(recipient, party, parcel.payload, parcel.size, phase, queue)
        elif recipient in self._remote:
            box = outbox.get(recipient)
            if box is None:
                outbox[recipient] = [parcel]
            else:
                box.append(parcel)
        else:
            raise InvalidMessage(f"{party} sent a message to unknown party {recipient!r}")


def summarize_metrics(
    ledger: Ledger, clients: int, included: Sequence[int], encode_seconds: list[float]
) -> dict[str, Any]:
    """The metrics of an ``AggregationResult``: per-client bytes (over the included clients) and seconds.

    Seconds: ``client_seconds_mean`` (engine, over the included clients) and
    ``client_encode_seconds_mean`` per client; totals over every party:
    ``client_online_seconds`` (every client's engine and encoding),
    ``server_seconds``, ``helper_seconds`` (per helper), ``setup_seconds``
    (offline) and ``routing_seconds`` (the in-process Round's own time:
    its wall time less every engine's).
    """
    ids = [client_id(i) for i in (included or range(clients))]
    seconds = {phase: dict(parties) for phase, parties in ledger.seconds.items()}
    client_seconds = [sum(seconds[p].get(c, 0.0) for p in seconds) for c in ids]
    engine_seconds = sum(spent for parties in seconds.values() for spent in parties.values())
    every_client = sum(spent for parties in seconds.values() for party, spent in parties.items()
                       if party.startswith("client/"))
    helpers = sorted({p for phase in seconds.values() for p in phase if p != SERVER and not p.startswith("client/")})
    return {
        "bytes_up_per_client": float(np.mean([ledger.bytes_sent.get(c, 0) for c in ids])),
        "bytes_down_per_client": float(np.mean([ledger.bytes_received.get(c, 0) for c in ids])),
        "bytes_up_max_client": int(max(ledger.bytes_sent.get(c, 0) for c in ids)),
        "bytes_server_received": int(ledger.bytes_received.get(SERVER, 0)),
        "bytes_server_sent": int(ledger.bytes_sent.get(SERVER, 0)),
        "seconds_per_phase_per_party": seconds,
        "client_seconds_mean": float(np.mean(client_seconds)),
        "client_encode_seconds_mean": float(np.mean(encode_seconds)) if encode_seconds else 0.0,
        "server_seconds": float(sum(phase.get(SERVER, 0.0) for phase in seconds.values())),
        "helper_seconds": {h: float(sum(phase.get(h, 0.0) for phase in seconds.values())) for h in helpers},
        "setup_seconds": float(ledger.setup_seconds),
        "client_online_seconds": float(every_client + sum(encode_seconds)),
        "routing_seconds": max(0.0, float(ledger.round_seconds - engine_seconds)) if ledger.round_seconds else 0.0,
    }


# -- one aggregation in process, and its decoded result ----------------------------------


@dataclass
class AggregationResult:
    """The decoded outcome of one secure aggregation.

    ``total`` is sum_i w_i x_i over the included clients (w_i = 1 unless
    weights were given), ``weight_total`` is sum_i w_i, ``mean`` their ratio.
    ``metrics`` holds the byte and second counts and, from ``secure_sum``,
    ``clipped_coordinates`` (coordinates with |x| > clip, summed over every
    client's update) and ``clipped_fraction`` (that count over all
    coordinates of all clients).
    """

    total: np.ndarray
    weight_total: int
    included: tuple[int, ...]
    ring_sum: np.ndarray
    ring_bits: int
    transcript: list[TranscriptEntry]
    metrics: dict
    protocol: str = ""
    secure: bool = True

    @property
    def mean(self) -> np.ndarray:
        """total / weight_total (the total itself when no weight was summed)."""
        return self.total / max(self.weight_total, 1)


def _validate_dropouts(dropouts: Mapping[int, str] | None, clients: int, phases: Sequence[str]) -> dict[int, int]:
    """Map client index -> position of the phase from which it stops answering."""
    if not dropouts:
        return {}
    stops: dict[int, int] = {}
    for index, phase in dropouts.items():
        if not validation.is_integer(index) or not 0 <= index < clients:
            raise ConfigurationError(f"dropout client index {index!r} is not in [0, {clients})")
        if phase not in phases:
            raise ConfigurationError(f"dropout phase {phase!r} is not one of {', '.join(phases)}")
        stops[int(index)] = list(phases).index(phase)
    return stops


def run_protocol(
    protocol: Protocol,
    inputs: Sequence[np.ndarray],
    *,
    dropouts: Mapping[int, str] | None = None,
    session: bytes | None = None,
    round: int = 0,
    lose: Callable[[Message], bool] | None = None,
) -> tuple[RingAggregate, list[TranscriptEntry], Ledger]:
    """Run one aggregation of already-encoded ring vectors.

    ``dropouts`` maps a client index to the phase from which it stops
    answering (it receives nothing from then on). ``lose`` marks individual
    messages as lost in transit (for partial-delivery tests). Returns
    ``(RingAggregate, transcript, ledger)``.
    """
    clients = len(inputs)
    protocol.check_clients(clients)
    length = int(inputs[0].size)
    session = os.urandom(SESSION_BYTES) if session is None else session
    stops = _validate_dropouts(dropouts, clients, protocol.phases)
    started = time.perf_counter()  # offline work (keys, Paillier's obfuscators): counted, apart from the phases
    parties = protocol.setup(clients=clients, vector_length=length, session=session, round=round)
    setup_seconds = time.perf_counter() - started
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    transport = InProcessTransport(
        [*parties.clients, *parties.helpers],
        phases=protocol.phases,
        dropouts={client_id(index): protocol.phases[stop] for index, stop in stops.items()},
    )
    outcome = Round(parties.server, phases=protocol.phases, transport=transport, lose=lose, drop_refused=False).run()
    outcome.ledger.setup_seconds = setup_seconds
    outcome.ledger.round_seconds = outcome.seconds
    return outcome.aggregate, outcome.transcript, outcome.ledger
