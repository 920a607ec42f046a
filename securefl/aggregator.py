"""``SecureAggregator``: the secure aggregation of one federation, round after round, on the user's own updates.

Round r with the updates x_i of the clients i that took part (state_dicts,
tensors or arrays, all of one structure) and their sample counts n_i:

* each x_i is flattened to float64 (non-float buffers follow ``buffers``);
* without DP, the n_i are scaled to integer weights w_i in [1, max_weight]
  of the protocol's encoding (:func:`quantise_weights`) and the protocol sums
  w_i x_i and w_i; the mean is sum_I w_i x_i / sum_I w_i over the clients I it
  included. ``metrics["weight_error"]`` is sum_i |w_i / W - n_i / N|, so each
  coordinate of the mean is within ``weight_error`` x max_i |x_i| of the mean
  weighted by the exact counts (plus the encoding's rounding);
* with a DP plugin (:mod:`securefl.privacy.plugins`) every client weighs 1,
  the plugin's client stage clips (and, distributed, noises) each update, its
  server stage releases the total, the mean is total / (q N), and one
  accountant event is charged per round, also when the round aborts.

Coordinates the encoding's clip cuts are counted (``metrics``) and reported by
one ``ClippingWarning``; send updates (differences from the global model), not
weights, so that they stay inside the clip: :meth:`SecureAggregator.aggregate_models`
does that for a list of client models.

Threat model: that of the protocol. The server learns the aggregate, the
included set and (without DP) the total weight; it sees no single update
unless the protocol is the plaintext baseline. Rounding and noise come from
the OS entropy pool unless a simulation passes ``rng``.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from securefl import ring, validation
from securefl.driver import AggregationResult, TranscriptEntry, run_protocol, summarize_metrics
from securefl.encoding import warn_clipped
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate, ProtocolAbort
from securefl.privacy.accountant import PrivacyAccountingWarning
from securefl.privacy.plugins import ClientStage, DifferentialPrivacy, PrivateRound
from securefl.protocols.base import Protocol, RingAggregate
from securefl.protocols.validated.engines import ValidatedAggregate
from securefl.protocols.validated.protocol import ValidatedSharing
from securefl.protocols.wire import Message

if TYPE_CHECKING:
    import torch

__all__ = ["SecureAggregator", "Aggregate", "RoundPlan", "Layout", "quantise_weights", "weight_error", "BufferPolicy"]

#: What happens to entries that are not floating point (e.g. BatchNorm's ``num_batches_tracked``).
BufferPolicy = Literal["skip", "error"]

#: One client's update: a state_dict, a tensor, an array, or a list of arrays/tensors.
Update = Union[Mapping[str, Any], "torch.Tensor", np.ndarray, Sequence[Any]]


def quantise_weights(counts: Sequence[int], *, max_weight: int) -> list[int]:
    """Integer aggregation weights in [1, max_weight] proportional to sample counts.

    w_i = n_i when max_j n_j <= max_weight (exact weighting); otherwise
    w_i = max(1, floor(n_i max_weight / max_j n_j + 1/2)), so the largest
    client gets max_weight and each ratio w_i / w_j is within rounding of
    n_i / n_j. The encoding bounds weights by max_weight so that no sum wraps.
    """
    max_weight = validation.positive_int(max_weight, "max_weight")
    if len(counts) == 0:
        raise ConfigurationError("quantise_weights needs at least one sample count")
    for count in counts:
        if not validation.is_integer(count) or count < 1:
            raise ConfigurationError(f"sample counts must be positive integers; found {count!r}")
    largest = max(int(c) for c in counts)
    if largest <= max_weight:
        return [int(c) for c in counts]
    return [max(1, int(math.floor(int(c) * max_weight / largest + 0.5))) for c in counts]


def weight_error(counts: Sequence[int], weights: Sequence[int]) -> float:
    """sum_i |w_i / W - n_i / N|: the L1 distance between the normalised weights and the normalised counts."""
    n = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return float(np.abs(w / w.sum() - n / n.sum()).sum())


# -- structure: flatten an update, rebuild one ---------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str | int
    shape: tuple[int, ...]
    dtype: Any  # a torch.dtype or a numpy dtype
    aggregated: bool


@dataclass(frozen=True)
class Layout:
    """The structure of an update: its kind (state_dict, tensor, array, list), entries, shapes and dtypes.

    :meth:`flatten` gives the float64 vector of the aggregated entries;
    :meth:`rebuild` turns such a vector back into the same structure and
    dtypes (skipped entries are taken from ``fill``, zeros without one).
    """

    kind: Literal["mapping", "tensor", "array", "sequence"]
    entries: tuple[_Entry, ...]

    @property
    def dimension(self) -> int:
        return sum(math.prod(entry.shape) for entry in self.entries if entry.aggregated)

    @property
    def skipped(self) -> tuple[str | int, ...]:
        return tuple(entry.name for entry in self.entries if not entry.aggregated)

    @classmethod
    def of(cls, update: Update, *, buffers: BufferPolicy) -> Layout:
        kind, items = _items(update)
        entries = []
        for name, value in items:
            floating = _is_floating(value)
            if not floating and buffers == "error":
                raise InvalidUpdate(
                    f"entry {name!r} has dtype {value.dtype}, not floating point; pass buffers='skip' to leave "
                    "such entries out of the aggregate (they are reported)"
                )
            entries.append(_Entry(name, tuple(value.shape), value.dtype, floating))
        if not any(entry.aggregated for entry in entries):
            raise InvalidUpdate("the update has no floating-point entry to aggregate")
        return cls(kind, tuple(entries))

    def flatten(self, update: Update, *, client: int) -> np.ndarray:
        """The aggregated entries of ``update`` as one float64 vector (``InvalidUpdate`` naming the client)."""
        kind, items = _items(update)
        if kind != self.kind or len(items) != len(self.entries):
            raise InvalidUpdate(f"client {client}'s update is not structured like the first one's")
        pieces = []
        for entry, (name, value) in zip(self.entries, items, strict=True):
            if name != entry.name or tuple(value.shape) != entry.shape:
                raise InvalidUpdate(
                    f"client {client}'s entry {name!r} of shape {tuple(value.shape)} does not match "
                    f"{entry.name!r} of shape {entry.shape}"
                )
            if entry.aggregated:
                pieces.append(_as_float64(value).reshape(-1))
        vector = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        finite = np.isfinite(vector)
        if not finite.all():
            bad = vector.size - int(np.count_nonzero(finite))
            raise InvalidUpdate(f"update of client {client} holds {bad} NaN or infinite value(s) out of {vector.size}")
        return vector

    def rebuild(self, vector: np.ndarray, *, fill: Update | None = None) -> Any:
        """``vector`` (the aggregated entries, in order) in this layout's structure and dtypes."""
        if vector.size != self.dimension:
            raise ConfigurationError(f"vector has {vector.size} values; the layout needs {self.dimension}")
        fills = dict(_items(fill)[1]) if fill is not None else {}
        values: list[Any] = []
        offset = 0
        for entry in self.entries:
            if entry.aggregated:
                count = math.prod(entry.shape)
                chunk = np.asarray(vector[offset : offset + count]).reshape(entry.shape)
                offset += count
                values.append(_like(chunk, entry.dtype))
            elif entry.name in fills:
                values.append(_copy(fills[entry.name]))
            else:
                values.append(_like(np.zeros(entry.shape), entry.dtype))
        if self.kind == "mapping":
            return dict(zip((entry.name for entry in self.entries), values, strict=True))
        if self.kind == "sequence":
            return values
        return values[0]


def _torch() -> Any:
    import torch

    return torch


def _is_tensor(value: object) -> bool:
    """A torch tensor, checked without importing torch (a tensor exists only once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _items(update: Update) -> tuple[Literal["mapping", "tensor", "array", "sequence"], list[tuple[Any, Any]]]:
    items: list[tuple[Any, Any]]
    if isinstance(update, Mapping):
        items = list(update.items())
        for name, value in items:
            if not (_is_tensor(value) or isinstance(value, np.ndarray)):
                raise InvalidUpdate(f"entry {name!r} is a {type(value).__name__}, not a tensor or array")
        return "mapping", items
    if _is_tensor(update):
        return "tensor", [(0, update)]
    if isinstance(update, np.ndarray):
        return "array", [(0, update)]
    if isinstance(update, (list, tuple)):
        items = list(enumerate(update))
        for index, value in items:
            if not (_is_tensor(value) or isinstance(value, np.ndarray)):
                value = np.asarray(value)
                if value.dtype == object:
                    raise InvalidUpdate(f"item {index} of the update is not numeric")
                items[index] = (index, value)
        if items and all(np.ndim(value) == 0 for _, value in items):  # a plain list of numbers: one vector
            return "array", [(0, np.asarray(update, dtype=np.float64))]
        return "sequence", items
    raise InvalidUpdate(
        f"an update must be a state_dict, a tensor, an array or a list of them; found {type(update).__name__}"
    )


def _is_floating(value: Any) -> bool:
    if _is_tensor(value):
        return bool(value.is_floating_point())
    return bool(np.issubdtype(value.dtype, np.floating))


def _as_float64(value: Any) -> np.ndarray:
    if _is_tensor(value):
        torch = _torch()
        return value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _like(chunk: np.ndarray, dtype: Any) -> Any:
    if isinstance(dtype, np.dtype):
        return chunk.astype(dtype)
    torch = _torch()
    return torch.from_numpy(np.array(chunk, dtype=np.float64, order="C")).to(dtype)


def _copy(value: Any) -> Any:
    return value.detach().clone() if _is_tensor(value) else np.array(value, copy=True)


def _norm_bound(protocol: Protocol) -> float | None:
    """The L2 bound B the protocol's aggregators enforce on each update (None: no bound)."""
    return protocol.norm_bound if isinstance(protocol, ValidatedSharing) else None


def _clip_l2(vector: np.ndarray, bound: float, *, kept: int = 0) -> tuple[np.ndarray, bool]:
    """``vector`` with its first coordinates scaled so that its L2 norm is at most ``bound``; (it, whether scaled).

    The last ``kept`` coordinates (statistics summed beside the update) are
    never scaled: only the update before them shrinks, to norm
    sqrt(bound^2 - ||tail||^2). ``InvalidUpdate`` when the tail alone is above the bound.
    """
    norm = float(np.linalg.norm(vector))
    if norm <= bound:
        return vector, False
    cut = vector.size - kept
    head, tail = vector[:cut], vector[cut:]
    room = bound * bound - float(np.dot(tail, tail))
    if room <= 0:
        raise InvalidUpdate(f"the {kept} statistics summed beside the update have an L2 norm of "
                            f"{np.sqrt(bound * bound - room):.4g}, above the bound {bound:g} by themselves: raise "
                            f"norm_bound")
    return np.concatenate([head * (np.sqrt(room) / float(np.linalg.norm(head))), tail]), True


def _check_dp_within_the_bound(dp: DifferentialPrivacy, protocol: ValidatedSharing) -> None:
    """``ConfigurationError`` unless every honest client's DP stage output verifies under the norm bound.

    Central DP clips to C - sqrt(d) step, so the encoded update has
    ||q|| < s C (s the encoding's scale): it verifies when s C + 1 <= sqrt(N),
    the extra unit for float rounding. Distributed DP adds each client's
    noise share before the client proves its update, so the noise (about
    sqrt(d) sigma) would have to fit the bound: refused.
    """
    if dp.kind != "central":
        raise ConfigurationError(
            f"{protocol.name} runs with central DP only: under distributed DP each client adds its noise share "
            "before it proves the norm bound, so the bound would have to hold the noise; use CentralDP")
    scale = protocol.encoding.scale
    largest = (math.sqrt(protocol.norm_squared) - 1.0) / scale
    if dp.clip > largest:
        raise ConfigurationError(
            f"the DP clip C={dp.clip:g} is above what {protocol.name}'s norm bound B={protocol.norm_bound:g} "
            f"verifies after rounding ({largest:.6g}): lower the clip to at most that, or raise norm_bound")


def _positions(dishonest: Collection[int], count: int) -> frozenset[int]:
    """The positions of ``dishonest``, checked against the ``count`` updates of the round."""
    positions = frozenset(int(position) for position in dishonest)
    outside = sorted(p for p in positions if not 0 <= p < count)
    if outside:
        raise ConfigurationError(f"dishonest positions {outside} are outside the round's {count} updates")
    return positions


# -- the result -------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """One round's outcome, in the structure and dtypes of the inputs.

    ``mean`` is the released mean update (DP: total / (q N)); ``total`` the
    released sum (without DP sum_I w_i x_i); ``weight_total`` sum_I w_i (the
    number of included clients under DP); ``included`` the positions of the
    clients whose updates were summed; ``epsilon`` the privacy spent so far
    (None without DP); ``model`` the new model for :meth:`SecureAggregator.aggregate_models`;
    ``metrics`` bytes, seconds per party and phase, clipped coordinates,
    weight error, skipped entries; ``result`` the flat protocol result with
    the transcript, for the audit.
    """

    mean: Any
    total: Any
    weight_total: int
    included: tuple[int, ...]
    epsilon: float | None
    metrics: dict[str, Any]
    result: AggregationResult
    model: Any = None

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """Every message the server engine received, as bytes."""
        return self.result.transcript


@dataclass(frozen=True)
class RoundPlan:
    """What the server fixed for one round before the protocol ran (:meth:`SecureAggregator.open_round`).

    ``weights`` are the clients' integer weights in the secure sum (all 1
    under DP); ``weight_error`` is sum_i |w_i / W - n_i / N|; ``stages`` the
    DP plugin's stages of the round (None without DP).
    """

    round: int
    cohort: int
    protocol: Protocol
    stages: PrivateRound | None
    weights: list[int]
    weight_error: float


# -- the aggregator ---------------------------------------------------------------------------


@dataclass(eq=False)
class SecureAggregator:
    """The aggregation of one federation over ``protocol``, stateful across rounds (round number, accountant).

    ``dp`` is an optional DP plugin (``CentralDP``, ``DistributedDP``);
    ``buffers`` what to do with entries that are not floating point
    ("skip": left out of the sum and reported; "error": refuse); ``rng`` the
    generator of the rounding and the clients' noise in a simulation (the
    OS entropy pool when None).
    """

    protocol: Protocol
    dp: DifferentialPrivacy | None = None
    buffers: BufferPolicy = "skip"
    rng: np.random.Generator | None = field(default=None, repr=False)
    _round: int = field(default=0, init=False, repr=False)
    _layout: Layout | None = field(default=None, init=False, repr=False)
    _dimension: int | None = field(default=None, init=False, repr=False)
    _bound: Protocol | None = field(default=None, init=False, repr=False)
    _design_seconds: float = field(default=0.0, init=False, repr=False)
    _accountant: Any = field(default=None, init=False, repr=False)
    _participation: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, Protocol):
            raise ConfigurationError(f"protocol must be a securefl Protocol; found {type(self.protocol).__name__}")
        if self.dp is not None and not isinstance(self.dp, DifferentialPrivacy):
            raise ConfigurationError(f"dp must be CentralDP, DistributedDP or None; found {type(self.dp).__name__}")
        if self.dp is not None and isinstance(self.protocol, ValidatedSharing):
            _check_dp_within_the_bound(self.dp, self.protocol)
        if self.buffers not in ("skip", "error"):
            raise ConfigurationError(f"buffers must be 'skip' or 'error'; found {self.buffers!r}")
        if self.rng is None:
            self.rng = np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
        elif not isinstance(self.rng, np.random.Generator):
            raise ConfigurationError(f"rng must be a numpy.random.Generator or None; found {type(self.rng).__name__}")
        if self.dp is not None:
            self._accountant = self.dp.make_accountant()

    # -- state ----------------------------------------------------------------------------

    @property
    def rounds(self) -> int:
        """Rounds aggregated (or charged to the accountant) so far."""
        return self._round

    @property
    def layout(self) -> Layout:
        """The structure of the updates (fixed by the first one aggregated)."""
        if self._layout is None:
            raise ConfigurationError("no update has been aggregated yet")
        return self._layout

    @property
    def epsilon(self) -> float | None:
        """Privacy spent so far at the plugin's delta (an upper bound); None without DP."""
        if self.dp is None:
            return None
        if len(self._accountant) == 0:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            return float(self._accountant.get_epsilon(self.dp.delta))

    @property
    def server_epsilon(self) -> float | None:
        """Epsilon against the server (distributed DP: no sampling amplification); None where DP bounds nothing."""
        if self.dp is None or self._bound is None:
            return None
        return self.dp.server_epsilon(max(self._participation.values(), default=0))

    def bound_protocol(self, dimension: int, cohort: int) -> Protocol:
        """The protocol each round runs (under distributed DP: over the plugin's ring), bound on first use."""
        if self._bound is None:
            started = time.perf_counter()  # under DP the pipeline's design: its calibration, once per run
            self._bound = self.protocol if self.dp is None else self.dp.bind(self.protocol, dimension=dimension,
                                                                              cohort=cohort)
            self._design_seconds = time.perf_counter() - started
        return self._bound

    # -- aggregation ------------------------------------------------------------------------

    def aggregate(
        self,
        updates: Sequence[Update],
        *,
        weights: Sequence[int] | None = None,
        dropouts: Mapping[int, str] | None = None,
        round: int | None = None,
        clients: Sequence[int] | None = None,
    ) -> Aggregate:
        """Securely aggregate one round of ``updates``; the mean in their structure and dtypes.

        ``weights`` are sample counts (any positive integers; None: all 1;
        refused under DP, where every client weighs 1); ``dropouts`` maps an
        update's position to the protocol phase at which that client stops
        answering (simulation); ``round`` defaults to the next round number;
        ``clients`` are stable client ids (default the positions) for the
        participation count of distributed DP. ``ProtocolAbort`` when the
        protocol cannot complete (the DP event is charged all the same).
        """
        if len(updates) == 0 and (self.dp is None or self._layout is None):
            raise ConfigurationError("aggregate needs at least one update (under DP: in the first round)")
        layout = self._layout_for(updates[0]) if updates else self._layout
        if layout is None:  # pragma: no cover - checked above
            raise ConfigurationError("no layout")
        vectors = [layout.flatten(update, client=index) for index, update in enumerate(updates)]
        aggregate = self.aggregate_vectors(vectors, weights=weights, dropouts=dropouts, round=round, clients=clients)
        aggregate.mean = layout.rebuild(aggregate.mean)
        aggregate.total = layout.rebuild(aggregate.total)
        return aggregate

    def aggregate_vectors(
        self,
        vectors: Sequence[np.ndarray],
        *,
        weights: Sequence[int] | None = None,
        dropouts: Mapping[int, str] | None = None,
        round: int | None = None,
        clients: Sequence[int] | None = None,
        lose: Callable[[Message], bool] | None = None,
        dishonest: Collection[int] = (),
    ) -> Aggregate:
        """:meth:`aggregate` for updates already flattened to float64 vectors; ``mean``/``total`` stay flat.

        ``lose`` (simulation) marks individual messages as lost in transit.
        ``dishonest`` (a poisoning simulation) are positions whose clients run
        their own code: no honest L2 clip, and under ``ValidatedSharing`` an
        engine that proves whatever it is given, so that the aggregators'
        verification is what rejects them (``metrics["rejected"]``).
        The three steps a deployment runs apart: :meth:`open_round` (server),
        :meth:`client_input` (each client), the protocol, :meth:`release` (server).
        """
        vectors = list(vectors)
        if clients is not None and len(clients) != len(vectors):
            raise ConfigurationError(f"{len(clients)} client ids for {len(vectors)} updates")
        if not vectors and (self.dp is None or self._dimension is None):
            raise ConfigurationError("aggregate needs at least one update (under DP: in the first round)")
        dimension = vectors[0].size if vectors else int(self._dimension)  # type: ignore[arg-type]
        planned, designed = time.perf_counter(), self._design_seconds
        plan = self.open_round(cohort=len(vectors), dimension=dimension, round=round, weights=weights)
        design_seconds = self._design_seconds - designed  # > 0 in the round that bound the protocol
        server_seconds = time.perf_counter() - planned - design_seconds
        if not vectors:  # nobody took part: central DP still releases its noise, distributed DP nothing
            empty = self._timed_release(plan, None, server_seconds)
            empty.metrics["dp_design_seconds"] = design_seconds
            return empty
        if self.dp is not None and len(vectors) < plan.protocol.min_clients:  # a small Poisson sample, charged
            raise ProtocolAbort(f"round {plan.round}: {len(vectors)} client(s) in the round, fewer than "
                                f"{plan.protocol.name}'s min_clients={plan.protocol.min_clients}; nothing released")
        malicious = _positions(dishonest, len(vectors))
        inputs, seconds, clipped, l2_clipped = [], [], 0, 0
        for position, vector in enumerate(vectors):
            started = time.perf_counter()  # the client's whole stage: clip count, clip, noise, encoding
            stage = self.client_input(plan, vector, position=position, honest=position not in malicious)
            seconds.append(time.perf_counter() - started)
            inputs.append(stage.vector)
            clipped += stage.clipped_coordinates
            l2_clipped += stage.l2_clipped
        coordinates = len(vectors) * dimension
        warn_clipped(clipped=clipped, coordinates=coordinates, clip=plan.protocol.encoding.clip, stacklevel=3)
        norm_bound = _norm_bound(plan.protocol) if plan.stages is None else None
        if norm_bound is not None and l2_clipped:
            warnings.warn(
                f"{l2_clipped} of {len(vectors)} honest client update(s) had an L2 norm above "
                f"{plan.protocol.name}'s bound B={norm_bound:g} (less the encoding's rounding) and were scaled down to "
                f"it so that their proofs verify; raise norm_bound to keep them whole",
                ClippingWarning, stacklevel=3)
        protocol = plan.protocol
        if malicious and isinstance(protocol, ValidatedSharing):  # they run their own code: no refusal of their own
            protocol = protocol.with_cheating_provers(malicious)
        aggregate, transcript, ledger = run_protocol(protocol, inputs, dropouts=dropouts, round=plan.round,
                                                     lose=lose)
        metrics = summarize_metrics(ledger, len(inputs), aggregate.included, seconds)
        metrics["dp_design_seconds"] = design_seconds
        metrics.update(clipped_coordinates=clipped, clipped_fraction=clipped / coordinates if coordinates else 0.0)
        if self.dp is not None or norm_bound is not None:
            metrics.update(l2_clipped_clients=l2_clipped, l2_clip_fraction=l2_clipped / len(vectors))
        if isinstance(aggregate, ValidatedAggregate):
            metrics["rejected"] = {position: reason.value for position, reason in sorted(aggregate.rejected.items())}
        return self._timed_release(plan, aggregate, server_seconds, transcript=transcript, metrics=metrics,
                                   clients=clients)

    def _timed_release(self, plan: RoundPlan, aggregate: RingAggregate | None, server_seconds: float,
                       **options: Any) -> Aggregate:
        """:meth:`release`, its time and ``server_seconds`` (the plan's) in ``metrics["server_release_seconds"]``."""
        started = time.perf_counter()
        released = self.release(plan, aggregate, **options)
        released.metrics["server_release_seconds"] = server_seconds + time.perf_counter() - started
        return released

    # -- the steps of a round, one party at a time -----------------------------------------------

    def open_round(self, *, cohort: int, dimension: int, round: int | None = None,
                   weights: Sequence[int] | None = None, public_seed: bytes | None = None) -> RoundPlan:
        """Server, before the protocol: fix the round's number, protocol, weights and DP stages.

        Under DP the round's accountant event is charged here, so it counts
        whether or not the round completes. ``public_seed`` fixes the DP
        round's public randomness where the clients hold plugins of their own
        (a deployment: the round's ticket); see :meth:`client_round`.
        """
        round = self._next_round(round)
        cohort = validation.non_negative_int(cohort, "cohort")
        dimension = validation.positive_int(dimension, "dimension")
        if self._dimension is not None and dimension != self._dimension:
            raise InvalidUpdate(f"updates of {dimension} values; earlier rounds had {self._dimension}")
        self._dimension = dimension
        protocol = self.bound_protocol(dimension, max(cohort, 1))
        if self.dp is None:
            counts = [1] * cohort if weights is None else list(weights)
            if len(counts) != cohort:
                raise ConfigurationError(f"{len(counts)} weights for {cohort} updates")
            integer = quantise_weights(counts, max_weight=protocol.encoding.max_weight) if cohort else []
            return RoundPlan(round=round, cohort=cohort, protocol=protocol, stages=None, weights=integer,
                             weight_error=weight_error(counts, integer) if cohort else 0.0)
        if weights is not None and len({int(w) for w in weights}) > 1:
            raise ConfigurationError(
                "under DP every client weighs 1 (the sensitivity of the sum is the clip C); pass no weights"
            )
        stages = self.dp.begin_round(round, cohort=cohort, public_seed=public_seed)
        self._accountant.compose(stages.event)
        return RoundPlan(round=round, cohort=cohort, protocol=protocol, stages=stages, weights=[1] * cohort,
                         weight_error=0.0)

    def client_round(self, *, round: int, dimension: int, count: int = 1, cohort: int | None = None,
                     public_seed: bytes | None = None) -> RoundPlan:
        """A client's own view of a round (a deployment's node): its weight and DP stage, nothing charged.

        Without DP its weight is ``min(count, max_weight)`` (a node does not
        know the others' counts, so it cannot scale as :meth:`open_round`
        does); under DP it weighs 1 and its stage depends on public
        parameters only: the round, the dimension, the plugin's and, under
        distributed DP, the round's ``cohort`` (its noise share is V / t for
        the threshold t of that cohort under this client's own protocol)
        and ``public_seed`` (the rotation; the server opens the round with
        the same). Distributed DP needs the plugin's ``population``: the
        pipeline is designed for a cohort the client knows without the server.
        """
        dimension = validation.positive_int(dimension, "dimension")
        if self.dp is None:
            protocol = self.bound_protocol(dimension, 1)
            weight = min(validation.positive_int(count, "count"), protocol.encoding.max_weight)
            return RoundPlan(round=round, cohort=1, protocol=protocol, stages=None, weights=[weight],
                             weight_error=0.0)
        if self.dp.kind == "central":
            protocol = self.bound_protocol(dimension, 1)
            return RoundPlan(round=round, cohort=1, protocol=protocol, stages=self.dp.begin_round(round, cohort=1),
                             weights=[1], weight_error=0.0)
        if self.dp.population is None or cohort is None or public_seed is None:
            raise ConfigurationError(
                "a client's view of a distributed-DP round needs the plugin's population (the design cohort), the "
                "round's cohort and its public seed"
            )
        cohort = validation.positive_int(cohort, "cohort")
        protocol = self.bound_protocol(dimension, cohort)
        stages = self.dp.begin_round(round, cohort=cohort, public_seed=public_seed)
        return RoundPlan(round=round, cohort=cohort, protocol=protocol, stages=stages, weights=[1], weight_error=0.0)

    def client_input(self, plan: RoundPlan, vector: np.ndarray, *, position: int,
                     rng: np.random.Generator | None = None, honest: bool = True,
                     statistics: int = 0) -> ClientStage:
        """Client ``position``, before its engine: its flat float update -> the ring vector the protocol sums.

        ``rng`` is the client's own generator (rounding, distributed noise);
        in process it defaults to one drawn from the aggregator's ``rng``.
        Under a protocol with a norm bound B (``ValidatedSharing``) an honest
        client first scales an update whose L2 norm is above
        :meth:`~securefl.protocols.ValidatedSharing.honest_clip_norm` down to
        it (``l2_clipped``), so its proof verifies; ``honest=False`` (a
        poisoning simulation) skips that clip, and under DP the whole DP stage
        (its L2 clip and noise), as a malicious client would; the last
        ``statistics`` coordinates (the Flower mod's sums beside the update)
        are never scaled by it.
        """
        if plan.stages is None or not honest:
            encoding = plan.protocol.encoding
            l2_clipped = False
            if honest and isinstance(plan.protocol, ValidatedSharing):
                vector, l2_clipped = _clip_l2(vector, plan.protocol.honest_clip_norm(vector.size), kept=statistics)
            clipped = encoding.count_clipped(vector)
            rounding = self._shared_rng if rng is None else rng
            try:
                encoded = encoding.encode(vector, weight=plan.weights[position], rng=rounding)
            except InvalidUpdate as refused:
                raise InvalidUpdate(f"client {position}: {refused}") from None
            return ClientStage(encoded, l2_clipped, clipped)
        return plan.stages.client_stage(vector, rng=self._client_rng() if rng is None else rng)

    def release(self, plan: RoundPlan, aggregate: RingAggregate | None, *,
                transcript: list[TranscriptEntry] | None = None, metrics: Mapping[str, Any] | None = None,
                clients: Sequence[int] | None = None) -> Aggregate:
        """Server, after the protocol: the ring aggregate -> the released mean (DP: with its server stage).

        ``aggregate`` None is a round nobody took part in (DP only).
        ``ProtocolAbort`` when the aggregate cannot be released (distributed
        DP: fewer inputs than the noise needs).
        """
        protocol, stages = plan.protocol, plan.stages
        encoding = protocol.encoding
        dimension = int(self._dimension)  # type: ignore[arg-type]  # set by open_round
        metrics = dict(metrics or {})
        if aggregate is None:
            if self.dp is None or stages is None:
                raise ConfigurationError("only a DP round may release without an aggregate")
            ring_sum = np.zeros(dimension + 1, dtype=ring.ring_dtype(encoding.ring_bits))
            included: tuple[int, ...] = ()
            released = (stages.server_stage(ring_sum, included=0) if self.dp.kind == "central"
                        else np.zeros(dimension))
            metrics.setdefault("clipped_coordinates", 0)
            metrics.setdefault("clipped_fraction", 0.0)
            weight_total = 0
        else:
            ring_sum, included = aggregate.total, tuple(aggregate.included)
            if stages is None:
                released, weight_total = encoding.decode_sum(ring_sum)
                if weight_total < 1:
                    raise ProtocolAbort(f"round {plan.round}: the aggregate carries no weight")
                metrics.update(weights=plan.weights, weight_error=plan.weight_error)
            else:
                released, weight_total = stages.server_stage(ring_sum, included=len(included)), len(included)
                metrics["wrap_probability"] = stages.wrap_probability
                for position in included:
                    client = position if clients is None else int(clients[position])
                    self._participation[client] = self._participation.get(client, 0) + 1
        metrics["skipped_entries"] = list(self._layout.skipped) if self._layout is not None else []
        result = AggregationResult(total=released, weight_total=weight_total, included=included, ring_sum=ring_sum,
                                   ring_bits=encoding.ring_bits, transcript=list(transcript or []), metrics=metrics,
                                   protocol=protocol.name, secure=protocol.secure)
        denominator = weight_total if self.dp is None else self.dp.denominator(plan.cohort)
        return Aggregate(mean=released / denominator, total=released, weight_total=weight_total, included=included,
                         epsilon=self.epsilon, metrics=metrics, result=result)

    def aggregate_models(
        self,
        client_states: Sequence[Update],
        *,
        reference: Update,
        weights: Sequence[int] | None = None,
        dropouts: Mapping[int, str] | None = None,
        round: int | None = None,
        clients: Sequence[int] | None = None,
        dishonest: Collection[int] = (),
    ) -> Aggregate:
        """FedAvg's step: aggregate the client models minus ``reference``; ``.model`` = reference + mean.

        Skipped entries (non-float buffers) keep the reference's values;
        ``dishonest`` as for :meth:`aggregate_vectors`.
        """
        layout = self._layout_for(reference)
        start = layout.flatten(reference, client=-1)
        if self._dimension is None:  # known from the reference, even in a round nobody took part in
            self._dimension = layout.dimension
        for state in client_states[:1]:
            self._layout_for(state)
        flattened = time.perf_counter()  # each client's own work: its model minus the reference, flat
        differences = [layout.flatten(state, client=index) - start for index, state in enumerate(client_states)]
        flatten_seconds = time.perf_counter() - flattened
        aggregate = self.aggregate_vectors(differences, weights=weights, dropouts=dropouts, round=round,
                                           clients=clients, dishonest=dishonest)
        rebuilt = time.perf_counter()
        aggregate.model = layout.rebuild(start + aggregate.mean, fill=reference)
        aggregate.mean = layout.rebuild(aggregate.mean)
        aggregate.total = layout.rebuild(aggregate.total)
        aggregate.metrics["client_online_seconds"] = aggregate.metrics.get("client_online_seconds", 0.0) \
            + flatten_seconds
        aggregate.metrics["server_release_seconds"] += time.perf_counter() - rebuilt
        return aggregate

    # -- the two paths ------------------------------------------------------------------------

    def _next_round(self, round: int | None) -> int:
        if round is None:
            round = self._round
        round = validation.non_negative_int(round, "round")
        self._round = round + 1
        return round

    def _layout_for(self, update: Update) -> Layout:
        layout = Layout.of(update, buffers=self.buffers)
        if self._layout is None:
            self._layout = layout
        elif layout.kind != self._layout.kind or [(e.name, e.shape, e.aggregated) for e in layout.entries] != [
                (e.name, e.shape, e.aggregated) for e in self._layout.entries]:
            raise InvalidUpdate("the update is not structured like those of earlier rounds")
        return layout

    @property
    def _shared_rng(self) -> np.random.Generator:
        if self.rng is None:  # pragma: no cover - set in __post_init__
            raise ConfigurationError("no generator")
        return self.rng

    def _client_rng(self) -> np.random.Generator:
        """A client's own generator for rounding and noise (spawned from ``rng``)."""
        return np.random.default_rng(self._shared_rng.integers(0, 2**63, size=4))
