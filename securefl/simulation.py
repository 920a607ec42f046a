"""The in-process simulator: every party of a protocol in one process, and what the server saw.

``run_protocol`` sets up the engines of one aggregation and runs them with
the driver core (:class:`securefl.driver.Round`) over an
:class:`~securefl.driver.InProcessTransport`: messages travel as their
canonical frames (zero copy), every byte is counted, dropouts and lost
messages are injected, and each engine call is timed. The transcript is
exactly the list of byte strings the server engine received.
``secure_sum`` encodes float updates, runs the protocol and decodes the
aggregate; ``server_saw_individual_updates`` audits a transcript.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from securefl import ring, validation
from securefl.driver import InProcessTransport, Ledger, Round, TranscriptEntry, summarize_metrics
from securefl.encoding import warn_clipped
from securefl.errors import ConfigurationError, InvalidUpdate
from securefl.protocols.base import Protocol, RingAggregate
from securefl.protocols.wire import SESSION_BYTES, Message, client_id, decode_message

__all__ = [
    "AggregationResult",
    "secure_sum",
    "run_protocol",
    "summarize_metrics",
    "server_saw_individual_updates",
]


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
    parties = protocol.setup(clients=clients, vector_length=length, session=session, round=round)
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    transport = InProcessTransport(
        [*parties.clients, *parties.helpers],
        phases=protocol.phases,
        dropouts={client_id(index): protocol.phases[stop] for index, stop in stops.items()},
    )
    outcome = Round(parties.server, phases=protocol.phases, transport=transport, lose=lose, drop_refused=False).run()
    return outcome.aggregate, outcome.transcript, outcome.ledger


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
