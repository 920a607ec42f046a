"""The in-process driver: runs every engine of a protocol and records what the server saw.

The driver owns the "network" and the clock: it serialises every message to
its canonical frames, counts the bytes, delivers them to the recipient engine
(decoding and validating on the way in), injects dropouts, and times each
engine call. The transcript is exactly the list of byte strings the server
engine received; messages between other parties travel as zero-copy frames.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import numpy as np

from securefl import ring, validation
from securefl.encoding import warn_clipped
from securefl.errors import ConfigurationError, InvalidUpdate
from securefl.protocols.base import Protocol, RingAggregate
from securefl.protocols.wire import SERVER, SESSION_BYTES, Message, client_id, decode_message

__all__ = [
    "TranscriptEntry",
    "AggregationResult",
    "Ledger",
    "secure_sum",
    "run_protocol",
    "summarize_metrics",
    "server_saw_individual_updates",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class TranscriptEntry:
    """One message the server engine received: its sender, phase and canonical bytes.

    ``payload`` is the exact byte string on the wire; the simulator keeps the
    message's frames (immutable: sent vectors are frozen) and joins them on
    first access, so recording the transcript costs no copy of big vectors.
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
        return self.total / max(self.weight_total, 1)


@dataclass
class Ledger:
    """What a driver measured: bytes sent and received per party, seconds per phase per party."""

    bytes_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))


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
    ledger = Ledger()

    parties = protocol.setup(clients=clients, vector_length=length, session=session, round=round)
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    engines = parties.by_id()
    dropped_at = {client_id(i): stop for i, stop in stops.items()}
    transcript: list[TranscriptEntry] = []

    def timed(party: str, phase: str, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        start = time.perf_counter()
        out = call(*args, **kwargs)
        ledger.seconds[phase][party] += time.perf_counter() - start
        return out

    def silent(party: str, position: int) -> bool:
        return party in dropped_at and dropped_at[party] <= position

    for position, phase in enumerate(protocol.phases):
        queue = deque(timed(SERVER, phase, parties.server.begin_phase, phase))
        while queue:
            message = queue.popleft()
            if silent(message.sender, position):
                continue
            frames = message.to_frames()
            size = sum(len(frame) if isinstance(frame, bytes) else frame.nbytes for frame in frames)
            ledger.bytes_sent[message.sender] += size
            if silent(message.recipient, position) or (lose is not None and lose(message)):
                continue
            recipient = engines.get(message.recipient)
            if recipient is None:
                raise ConfigurationError(f"message addressed to unknown party {message.recipient!r}")
            ledger.bytes_received[message.recipient] += size
            if message.recipient == SERVER:
                transcript.append(TranscriptEntry(sender=message.sender, phase=message.phase, frames=frames))
            inbound = decode_message(frames)  # validated from the canonical frames, without a copy
            queue.extend(timed(message.recipient, phase, recipient.handle, inbound))
        timed(SERVER, phase, parties.server.end_phase, phase)
    aggregate = timed(SERVER, "result", parties.server.result)
    return aggregate, transcript, ledger


def summarize_metrics(ledger: Ledger, clients: int, included: Sequence[int], encode_seconds: list[float]) -> dict:
    """The metrics of an ``AggregationResult``: per-client bytes (over the included clients) and seconds."""
    ids = [client_id(i) for i in (included or range(clients))]
    seconds = {phase: dict(parties) for phase, parties in ledger.seconds.items()}
    client_seconds = [sum(seconds[p].get(c, 0.0) for p in seconds) for c in ids]
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
    }


def _check_updates(updates: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The updates as flat float64 vectors of one length, each finite (``InvalidUpdate`` names the client)."""
    if len(updates) == 0:
        raise ConfigurationError("secure_sum needs at least one update")
    vectors = [np.asarray(u, dtype=np.float64).ravel() for u in updates]
    sizes = {v.size for v in vectors}
    if len(sizes) != 1:
        raise ConfigurationError(f"updates differ in length: {sorted(sizes)}")
    for index, vector in enumerate(vectors):
        finite = np.isfinite(vector)
        if not finite.all():
            bad = vector.size - int(np.count_nonzero(finite))
            raise InvalidUpdate(
                f"update of client {index} holds {bad} NaN or infinite value(s) out of {vector.size}"
            )
    return vectors


def secure_sum(
    protocol: Protocol,
    updates: Sequence[np.ndarray],
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, str] | None = None,
    seed: int | np.random.Generator | None = None,
    round: int = 0,
    lose: Callable[[Message], bool] | None = None,
) -> AggregationResult:
    """Encode float updates, run ``protocol`` in process, decode the aggregate.

    ``weights`` are per-client integer weights (sample counts) that travel
    inside the secure sum; ``dropouts`` maps a client index to the phase
    name at which it stops answering; ``seed`` drives the (non-secret)
    stochastic rounding. Raises ``ProtocolAbort`` when the protocol cannot
    complete, ``InvalidUpdate`` for an update holding a NaN or an infinity
    (or, under ``Encoding.strict_clip``, a coordinate beyond the clip).
    Coordinates cut by the clip are counted into ``metrics``
    (``clipped_coordinates``, ``clipped_fraction``) and, when there are any,
    reported by one ``ClippingWarning`` for the whole aggregation.
    """
    vectors = _check_updates(updates)
    if weights is None:
        weights = [1] * len(vectors)
    if len(weights) != len(vectors):
        raise ConfigurationError(f"{len(weights)} weights for {len(vectors)} updates")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    encoding = protocol.encoding
    encoded, encode_seconds = [], []
    clipped = 0
    for index, (vector, weight) in enumerate(zip(vectors, weights, strict=True)):
        start = time.perf_counter()  # the clip count is part of the client's encoding time
        clipped += encoding.count_clipped(vector)
        try:
            encoded.append(encoding.encode(vector, weight=weight, rng=rng))
        except InvalidUpdate as refused:
            raise InvalidUpdate(f"client {index}: {refused}") from None
        encode_seconds.append(time.perf_counter() - start)
    coordinates = len(vectors) * vectors[0].size
    warn_clipped(clipped=clipped, coordinates=coordinates, clip=encoding.clip)
    aggregate, transcript, ledger = run_protocol(protocol, encoded, dropouts=dropouts, round=round, lose=lose)
    total, weight_total = encoding.decode_sum(aggregate.total)
    metrics = summarize_metrics(ledger, len(vectors), aggregate.included, encode_seconds)
    metrics["clipped_coordinates"] = clipped
    metrics["clipped_fraction"] = clipped / coordinates if coordinates else 0.0
    return AggregationResult(
        total=total,
        weight_total=weight_total,
        included=aggregate.included,
        ring_sum=aggregate.total,
        ring_bits=encoding.ring_bits,
        transcript=transcript,
        metrics=metrics,
        protocol=protocol.name,
        secure=protocol.secure,
    )


_READABLE_CORRELATION = 0.9


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def server_saw_individual_updates(result: AggregationResult, updates: Sequence[np.ndarray]) -> bool:
    """Audit the transcript: could the server read any single client's update?

    Every ring vector in every message the server received is read as signed
    integers and correlated with each client's float update. A message
    counts as revealing client i when the correlation is >= 0.9 and it
    matches client i better than it matches the aggregate of the included
    clients (which the server is meant to learn); an aggregate of one client
    is that client's update. The aggregate the server computes is examined
    too, since the server holds it.
    """
    vectors = _check_updates(updates)
    length = vectors[0].size
    aggregate = np.sum([vectors[i] for i in result.included], axis=0) if result.included else None
    seen_vectors = [v for entry in result.transcript for v in decode_message(entry.payload).vectors()]
    for carried in [*seen_vectors, result.ring_sum]:
        if carried.size < length:
            continue
        seen = ring.to_signed(carried[:length], result.ring_bits).astype(np.float64)
        if seen.std() == 0:
            continue
        explained = _correlation(seen, aggregate) if aggregate is not None else 0.0
        for vector in vectors:
            similarity = _correlation(seen, vector)
            if similarity >= _READABLE_CORRELATION and (len(result.included) <= 1 or similarity > explained):
                return True
    return False
