"""``securefl_mod``: secure aggregation for an unchanged Flower ClientApp (``ClientApp(mods=[securefl_mod(...)])``).

The user's ``@app.train`` runs as it is. On a train message the mod calls it
(``call_next``), takes the reply's ``ArrayRecord`` (``"arrays"``) and its
``MetricRecord`` (``"num-examples"`` n and any numeric metrics m), and keeps
for the round, in ``context.state``, the ring vector

    SR(w [u, digits(n / w, c / w, m_1 n / w, ...)] s)  with its weight w appended,

where u = trained arrays - received arrays (flattened, float64), w = min(n,
max_weight) the node's integer weight, c the number of coordinates of u the
encoding's clip cut, and ``digits`` writes each statistic exactly in a few
coordinates (:func:`split_digits`), so that the secure sum carries N =
sum_i n_i, the clipped count and sum_i n_i m_i. The server's
:class:`~securefl.integrations.flower.strategy.SecureAggregation` releases
sum_i w_i u_i / sum_i w_i and the example-weighted means sum n_i m_i / N.
Under central DP (``dp=CentralDP(...)``) the vector is the DP client stage's
``clip_C(u)`` at weight 1 and carries no statistics. Under distributed DP
(``dp=DistributedDP(population=N, sample_rate=q, ...)``) the float update
waits on the node until the aggregation names its cohort n; the node then
adds its noise share V / t(n) (t(n) its own protocol's threshold) inside
the pipeline's rotated ring vector, the rotation drawn from the round's ticket.

The node replies to the train message with an acknowledgement only: the
round's ticket, the vector's length and its layout (metric names, not
values). It keeps the digest of the model and config it trained on
(:func:`.wire.content_digest`); the aggregation's session is bound to it, so
nodes given different models cannot complete a round together. Protocol
messages (the driver's, sent with the train message type) are answered by a
:class:`~securefl.integrations.flower.node.SecureFLNode` whose input is the
stored vector -- once: a trained update feeds at most one
aggregation, the one whose ticket it was trained for. Every other message
(evaluate, query) passes to the app unchanged.

Threat model: the server never receives a node's arrays or metrics, only
the protocol's messages (masked, shared or encrypted as the protocol makes
them) and, after the sum, the aggregate. The protocol, its mode
(malicious-server unless ``semi_honest_server=True``) and minimum cohort
(``protocol.min_clients``), the DP stage and the pins are this call's (or
the node config's ``securefl-pins`` / ``securefl-role``), never the
server's; a train message without a securefl ticket is refused rather than
answered in the clear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, MessageType, MetricRecord, RecordDict

from securefl import ring, validation
from securefl.aggregator import BufferPolicy, Layout, RoundPlan, SecureAggregator
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage, InvalidUpdate, SecureFLError
from securefl.integrations.flower import wire
from securefl.integrations.flower.binding import against_malicious_server
from securefl.integrations.flower.node import CLIENT, ERROR_CODE, Contribution, Job, RoundDigest, SecureFLNode
from securefl.privacy.distributed import padded_dimension
from securefl.privacy.plugins import DifferentialPrivacy
from securefl.protocols.base import Protocol

__all__ = [
    "TICKET_KEY",
    "ACK_KEY",
    "STATE_KEY",
    "TICKET_BYTES",
    "METRIC_BOUND",
    "WEIGHT_KEY",
    "VectorLayout",
    "SecureFLMod",
    "securefl_mod",
    "stat_digits",
    "split_digits",
    "join_digits",
    "is_driver_message",
]

TICKET_KEY = "securefl.ticket"  # server -> node, with the train message and the first protocol message
ACK_KEY = "securefl.ack"  # node -> server: the acknowledgement of a train message
STATE_KEY = "securefl.trained"  # the stored ring vector, in context.state
TICKET_BYTES = 16
WEIGHT_KEY = "num-examples"
METRIC_BOUND = 2.0**40  # |a statistic| a node may report: |m n / w| < 2^40
_PRECISION_BITS = 60  # digits until 2^40 M^-D <= 2^-20: each sum exact to n x 2^-20
_STORED_DTYPES = ("uint8", "uint16", "uint32", "uint64", "float64")

ClientAppCallable = Callable[[Message, Context], Message]


def _log(level: int, text: str, *args: object) -> None:
    from flwr.common.logger import log

    log(level, text, *args)


# -- statistics, exactly, in a few coordinates each ---------------------------------------------


def stat_digits(encoding: Encoding) -> int:
    """D, the coordinates per statistic: the least D with M^D >= 2^60, M = 2^(value_bits-1) - 1."""
    largest = (1 << (encoding.value_bits - 1)) - 1
    if largest < 3:
        raise ConfigurationError(
            f"value_bits={encoding.value_bits} leaves {largest} level(s) per sign; statistics need value_bits >= 3"
        )
    return math.ceil(_PRECISION_BITS / math.log2(largest))


def split_digits(values: np.ndarray, *, encoding: Encoding) -> np.ndarray:
    """Statistics a_k (|a_k| <= 2^40) -> D coordinates each in [-clip, clip] (:func:`join_digits` inverts the sum).

    With v = a / 2^40 and M = 2^(value_bits-1) - 1: e_0 = round(v M) / M,
    r_1 = (v - e_0) M, e_1 = round(r_1 M) / M, ..., e_{D-1} = r_{D-1}; so
    v = sum_j e_j M^-j. Every digit but the last is a multiple of 1/M, which
    the encoding's weighted quantisation w e_j M keeps exactly (an integer
    that float64 puts within 2^-30 of itself, so stochastic rounding moves
    it with probability below 2^-30); only the last digit is rounded, by
    less than one unit. A sum over n clients of the weighted coordinates thus
    gives sum_i w_i a_i to within n 2^40 M^-D <= n 2^-20.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all() or (np.abs(values) > METRIC_BOUND).any():
        raise InvalidUpdate(f"a statistic to aggregate is not finite or exceeds 2^40 in magnitude: {values}")
    digits = stat_digits(encoding)
    largest = float((1 << (encoding.value_bits - 1)) - 1)
    table = np.empty((values.size, digits), dtype=np.float64)
    residual = values / METRIC_BOUND
    for position in range(digits - 1):  # a loop over the D digits; the statistics are a vector
        digit = np.round(residual * largest) / largest
        table[:, position] = digit
        residual = (residual - digit) * largest
    table[:, -1] = residual
    return (table * encoding.clip).reshape(-1)


def join_digits(sums: np.ndarray, *, encoding: Encoding) -> np.ndarray:
    """The released sums of :func:`split_digits`' coordinates -> sum_i w_i a_k,i per statistic."""
    digits = stat_digits(encoding)
    sums = np.asarray(sums, dtype=np.float64).reshape(-1)
    if sums.size % digits:
        raise ConfigurationError(f"{sums.size} statistic coordinates are not a multiple of {digits} digits")
    table = sums.reshape(-1, digits) / encoding.clip
    largest = float((1 << (encoding.value_bits - 1)) - 1)
    total = table[:, -1]
    for position in range(digits - 2, -1, -1):  # Horner, from the finest digit
        total = table[:, position] + total / largest
    return total * METRIC_BOUND


# -- the layout of one round's vector -----------------------------------------------------------


@dataclass(frozen=True)
class VectorLayout:
    """What a node's ring vector holds, as both sides must agree: told in the acknowledgement.

    ``dimension`` coordinates of the update, then (without DP) the
    statistics N, clipped count and one per metric value, ``digits``
    coordinates each, then the weight. ``metric_sizes[k]`` is 0 for a
    scalar metric and the length of a list metric.
    """

    dimension: int
    metric_names: tuple[str, ...]
    metric_sizes: tuple[int, ...]
    digits: int
    dp: str = ""

    @property
    def statistics(self) -> int:
        """Statistics carried: N, the clipped count and each metric value (none under DP)."""
        if self.dp:
            return 0
        return 2 + sum(max(size, 1) for size in self.metric_sizes)

    @property
    def aggregated(self) -> int:
        """Coordinates before the weight: the protocol's ``dimension``."""
        return self.dimension + self.statistics * self.digits

    @property
    def length(self) -> int:
        """The ring vector's length: the driver's ``vector_length``.

        The weight coordinate included; under distributed DP the pipeline's
        rotated vector, ``dimension`` padded to a power of two.
        """
        if self.dp == "distributed":
            return padded_dimension(self.dimension)
        return self.aggregated + 1

    def to_config(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "metric-names": list(self.metric_names),
            "metric-sizes": list(self.metric_sizes),
            "digits": self.digits,
            "dp": self.dp,
            "vector-length": self.length,
        }

    @classmethod
    def from_config(cls, record: Mapping[str, Any]) -> VectorLayout:
        """``InvalidMessage`` unless ``record`` is a well-formed layout (as :meth:`to_config` writes it)."""
        try:
            names = record.get("metric-names", [])
            sizes = record.get("metric-sizes", [])
            layout = cls(
                dimension=int(validation.positive_int(record["dimension"], "dimension")),
                metric_names=tuple(str(name) for name in names),
                metric_sizes=tuple(int(validation.non_negative_int(size, "metric size")) for size in sizes),
                digits=int(validation.positive_int(record["digits"], "digits")),
                dp=str(record.get("dp", "")),
            )
        except (KeyError, TypeError, ValueError, ConfigurationError) as error:
            raise InvalidMessage(f"malformed vector layout: {error}") from None
        if len(layout.metric_names) != len(layout.metric_sizes) or not all(
            isinstance(name, str) for name in names
        ):
            raise InvalidMessage("malformed vector layout: metric names and sizes differ in number")
        if record.get("vector-length") != layout.length:
            raise InvalidMessage(
                f"vector layout of {layout.length} coordinates announced as {record.get('vector-length')}"
            )
        return layout


def check_deployable(dp: object) -> DifferentialPrivacy:
    """``dp`` if a deployment's nodes can run it with plugins of their own; ``ConfigurationError`` otherwise.

    Central DP always; distributed DP with its ``population`` set: a node
    designs the pipeline for the cohort that population and sample rate
    give, which it knows without asking the server.
    """
    if not isinstance(dp, DifferentialPrivacy):
        raise ConfigurationError(f"dp must be CentralDP, DistributedDP or None; found {type(dp).__name__}")
    if dp.kind == "distributed" and dp.population is None:
        raise ConfigurationError(
            "over Flower DistributedDP needs population= (with sample_rate=): every node and the server design "
            "the pipeline for the cohort they give, not for one the server announces"
        )
    return dp


def is_driver_message(message: Message) -> bool:
    """True for a message of the securefl driver (discovery or a protocol phase)."""
    if not message.has_content():
        return False
    content = message.content
    return wire.CONTROL in content.config_records and wire.MESSAGES in content.array_records


def _category(message: Message) -> str:
    return message.metadata.message_type.split(".", 1)[0]


def _single(records: Mapping[str, Any], what: str) -> tuple[str, Any]:
    if len(records) != 1:
        raise InvalidUpdate(f"the train reply holds {len(records)} {what}s; securefl aggregates exactly one")
    return next(iter(records.items()))


def _metric_values(metrics: MetricRecord, weight_key: str) -> tuple[int, tuple[str, ...], tuple[int, ...], list[float]]:
    """(n, names, sizes, values) of a reply's MetricRecord: n = its ``weight_key``, the others in sorted order."""
    count = metrics.get(weight_key)
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidUpdate(f"the train reply's MetricRecord needs a positive integer {weight_key!r}; found {count!r}")
    names: list[str] = []
    sizes: list[int] = []
    values: list[float] = []
    for name in sorted(metrics):
        if name == weight_key:
            continue
        value = metrics[name]
        if isinstance(value, list):
            names.append(name)
            sizes.append(len(value))
            values.extend(float(item) for item in value)
        else:
            names.append(name)
            sizes.append(0)
            values.append(float(value))
    return count, tuple(names), tuple(sizes), values


# -- the mod --------------------------------------------------------------------------------


class SecureFLMod:
    """The Flower mod :func:`securefl_mod` returns (see the module docstring); holds no state of its own.

    Everything a node keeps between messages lives in ``context.state``:
    the :class:`SecureFLNode`'s engine and, under :data:`STATE_KEY`, the
    trained ring vector as bytes with its dtype, length, round and ticket.
    """

    def __init__(
        self,
        protocol: Protocol,
        *,
        dp: DifferentialPrivacy | None = None,
        role: str | None = None,
        pins: Mapping[str, str] | None = None,
        buffers: BufferPolicy = "skip",
        weight_key: str = WEIGHT_KEY,
        semi_honest_server: bool = False,
    ) -> None:
        protocol = against_malicious_server(protocol, semi_honest_server=semi_honest_server)
        if dp is not None:
            check_deployable(dp)
        if buffers not in ("skip", "error"):
            raise ConfigurationError(f"buffers must be 'skip' or 'error'; found {buffers!r}")
        self.dp = dp
        self.distributed = dp is not None and dp.kind == "distributed"
        # Distributed DP: the protocol sums the pipeline's ring vectors, over the plugin's ring.
        self.protocol = dp.protocol_for(protocol) if dp is not None and self.distributed else protocol
        self.buffers: BufferPolicy = buffers
        self.weight_key = str(weight_key)
        self.aggregator = SecureAggregator(protocol, dp=dp, buffers=buffers)
        self.node = SecureFLNode(self.protocol, input_fn=self._input, role=role, pins=pins,
                                 semi_honest_server=semi_honest_server, digest_fn=self._trained_digest)
        if dp is None:
            stat_digits(protocol.encoding)  # refuse an encoding too coarse for the statistics now

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if is_driver_message(message):
            return self.node(message, context)
        if _category(message) != MessageType.TRAIN:
            return call_next(message, context)
        try:
            return self._train(message, context, call_next)
        except SecureFLError as error:
            reason = f"{type(error).__name__}: {error}"
            _log(WARNING, "securefl: refused a %s message: %s", message.metadata.message_type, reason)
            return Message(Error(code=ERROR_CODE, reason=reason), reply_to=message)

    # -- training --------------------------------------------------------------------------

    def _train(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        role = self.node.role_for(context)
        if role != CLIENT:
            raise ConfigurationError(f"this SuperNode is the securefl helper {role!r}; it does not train")
        ticket = message.content.config_records.get(TICKET_KEY)
        if ticket is None:
            raise ConfigurationError(
                "this node trains for secure aggregation only and the server sent no securefl ticket: wrap the "
                "server's strategy in securefl.integrations.flower.SecureAggregation"
            )
        token, ticket_round = ticket.get("ticket"), ticket.get("round")
        if not isinstance(token, bytes) or len(token) != TICKET_BYTES or not isinstance(ticket_round, int):
            raise InvalidMessage("malformed securefl ticket")
        round = int(ticket_round)
        digest = wire.content_digest(message.content, skip=(TICKET_KEY,))  # the model and config, as received
        reply = call_next(message, context)
        if reply.has_error():
            return reply  # the app's own failure, as it stated it; it carries no update
        key, trained = _single(reply.content.array_records, "ArrayRecord")
        received = message.content.array_records.get(key)
        if received is None:
            raise InvalidUpdate(f"the train reply's ArrayRecord {key!r} is not one the server sent")
        model_digest = wire.content_digest(RecordDict({key: received}))  # the arrays trained on, nothing else
        _, metrics = _single(reply.content.metric_records, "MetricRecord")
        count, names, sizes, values = _metric_values(metrics, self.weight_key)

        reference = {name: array.numpy() for name, array in received.items()}
        local = {name: array.numpy() for name, array in trained.items()}
        if set(local) != set(reference):
            raise InvalidUpdate(f"the trained arrays {sorted(local)} are not those received {sorted(reference)}")
        local = {name: local[name] for name in reference}  # the server's order, which its layout follows
        layout = Layout.of(reference, buffers=self.buffers)
        update = layout.flatten(local, client=0) - layout.flatten(reference, client=-1)
        digits = stat_digits(self.protocol.encoding) if self.dp is None else 1
        if self.distributed:
            # The noise share depends on the aggregation's cohort: the update waits as floats, on this node.
            vector_layout = VectorLayout(layout.dimension, names, sizes, digits, dp="distributed")
            stored = np.ascontiguousarray(update, dtype=np.float64)
        else:
            vector_layout = VectorLayout(layout.dimension, names, sizes, digits, dp=self.dp.kind if self.dp else "")
            plan = self.aggregator.client_round(round=round, dimension=vector_layout.aggregated, count=count)
            vector = update
            if self.dp is None:
                encoding = self.protocol.encoding
                clipped = encoding.count_clipped(update)
                statistics = np.array([count, clipped, *(value * count for value in values)],
                                      dtype=np.float64) / plan.weights[0]
                vector = np.concatenate([update, split_digits(statistics, encoding=encoding)])
            stored = self._encode(plan, vector, statistics=vector.size - update.size)
            if stored.size != vector_layout.length:
                raise ConfigurationError(f"the encoded update has {stored.size} coordinates, not "
                                         f"{vector_layout.length}")
        context.state[STATE_KEY] = ConfigRecord({
            "ticket": token,
            "round": round,
            "digest": digest,
            "model-digest": model_digest,
            "vector": stored.tobytes(),
            "dtype": str(stored.dtype),
            "length": int(stored.size),
        })
        _log(INFO, "securefl: trained for round %d; %d coordinates wait for the secure sum", round, stored.size)
        acknowledgement = {"ticket": token, "round": round, **vector_layout.to_config()}
        return Message(RecordDict({ACK_KEY: ConfigRecord(acknowledgement)}), reply_to=message)

    def _encode(self, plan: RoundPlan, vector: np.ndarray, *, statistics: int = 0) -> np.ndarray:
        """This node's client stage (clip, DP, encoding) of its flat update and its ``statistics`` last
        coordinates (never scaled by an L2 clip): the ring vector it contributes."""
        stage = self.aggregator.client_input(plan, vector, position=0, rng=np.random.default_rng(),
                                             statistics=statistics)
        if stage.clipped_coordinates or stage.l2_clipped:
            # Reported on the node only (and, without DP, as a count inside the secure sum).
            _log(WARNING, "securefl: %d coordinates of this update were cut to the encoding's clip %g%s",
                 stage.clipped_coordinates, plan.protocol.encoding.clip,
                 "; the DP stage scaled it to its L2 clip" if stage.l2_clipped else "")
        return np.ascontiguousarray(stage.vector)

    # -- the protocol's input ----------------------------------------------------------------

    @staticmethod
    def _trained_digest(message: Message, context: Context) -> RoundDigest:
        """The digests of the model and config the waiting update was trained on: the session's binding."""
        stored = context.state.config_records.get(STATE_KEY)
        digests = [stored.get(key) if stored is not None else None for key in ("digest", "model-digest")]
        if not all(isinstance(digest, bytes) and len(digest) == wire.DIGEST_BYTES for digest in digests):
            raise InvalidMessage("no trained update waits for this aggregation (each one feeds a single sum)")
        return RoundDigest(session=digests[0], model=digests[1])  # type: ignore[arg-type]  # bytes, checked

    def _input(self, job: Job) -> Contribution:
        """The stored vector for the aggregation ``job`` opens; refused unless it was trained for its ticket."""
        stored = job.context.state.config_records.get(STATE_KEY)
        data = stored.get("vector") if stored is not None else None
        if stored is None or not isinstance(data, bytes) or not data:
            raise InvalidMessage("no trained update waits for this aggregation (each one feeds a single sum)")
        ticket = job.message.content.config_records.get(TICKET_KEY)
        if ticket is None or ticket.get("ticket") != stored["ticket"] or ticket.get("round") != stored["round"]:
            raise InvalidMessage("this aggregation's ticket is not the one this node trained for")
        if job.round != stored["round"]:
            raise InvalidMessage(f"the aggregation is for round {job.round}; this node trained for {stored['round']!r}")
        if job.protocol.encoding != self.protocol.encoding:
            raise ConfigurationError("the aggregation's protocol encodes unlike the one this node trained for")
        dtype = stored["dtype"]
        expected = np.dtype(np.float64) if self.distributed else ring.ring_dtype(self.protocol.encoding.ring_bits)
        if not isinstance(dtype, str) or dtype not in _STORED_DTYPES or np.dtype(dtype) != expected:
            raise InvalidMessage(f"stored vector dtype {dtype!r} is not {expected}")
        vector = np.frombuffer(data, dtype=np.dtype(dtype)).copy()
        if vector.size != stored["length"]:
            raise InvalidMessage("the stored vector's length is not the one recorded")
        # Single use: the next aggregation needs a new training round.
        job.context.state[STATE_KEY] = ConfigRecord({"ticket": b"", "round": -1, "digest": b"", "model-digest": b"",
                                                     "vector": b"", "dtype": "", "length": 0})
        if self.distributed:
            token = stored["ticket"]
            if not isinstance(token, bytes):
                raise InvalidMessage("the stored ticket is not bytes")
            plan = self.aggregator.client_round(round=job.round, dimension=vector.size, cohort=job.clients,
                                                public_seed=token)
            vector = self._encode(plan, vector)
        if vector.size != job.vector_length:
            raise InvalidMessage(
                f"the server expects {job.vector_length} coordinates; this node's update has {vector.size}"
            )
        return Contribution(vector=vector)


def securefl_mod(
    protocol: Protocol,
    *,
    dp: DifferentialPrivacy | None = None,
    role: str | None = None,
    pins: Mapping[str, str] | None = None,
    buffers: BufferPolicy = "skip",
    weight_key: str = WEIGHT_KEY,
    semi_honest_server: bool = False,
) -> SecureFLMod:
    """A Flower mod that sends this node's training result into ``protocol``'s secure sum, and nowhere else.

    ``ClientApp(mods=[securefl_mod(SecAgg(neighbors=4))])`` (or per function,
    ``@app.train(mods=[...])``). ``dp`` is the node's DP stage
    (``CentralDP``, or ``DistributedDP`` with ``population``; the server's
    ``SecureAggregation`` must hold the same);
    ``role`` and ``pins`` override the node config's ``securefl-role`` and
    ``securefl-pins``; ``buffers`` what to do with non-float arrays ("skip":
    they keep the global model's values); ``weight_key`` the metric holding
    the node's example count (the strategy's ``weighted_by_key``);
    ``semi_honest_server=True`` runs ``protocol`` as given rather than in
    its malicious-server mode (the server's ``SecureAggregation`` must say
    the same). See the module docstring for the vector and the threat model.
    """
    return SecureFLMod(protocol, dp=dp, role=role, pins=pins, buffers=buffers, weight_key=weight_key,
                       semi_honest_server=semi_honest_server)

