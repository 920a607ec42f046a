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

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from securefl import ring
from securefl.aggregator import SecureAggregator
from securefl.driver import AggregationResult, run_protocol, summarize_metrics
from securefl.errors import ConfigurationError, InvalidUpdate
from securefl.protocols.base import Protocol
from securefl.protocols.wire import Message, decode_message

__all__ = [
    "AggregationResult",
    "secure_sum",
    "run_protocol",
    "summarize_metrics",
    "server_saw_individual_updates",
]


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
    if weights is not None:
        if len(weights) != len(vectors):
            raise ConfigurationError(f"{len(weights)} weights for {len(vectors)} updates")
        weights = [protocol.encoding.check_weight(weight) for weight in weights]  # exact: never rescaled
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    aggregator = SecureAggregator(protocol, rng=rng)
    return aggregator.aggregate_vectors(vectors, weights=weights, dropouts=dropouts, round=round, lose=lose).result


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
