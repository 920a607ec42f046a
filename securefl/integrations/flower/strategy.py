"""``SecureAggregation``: any Flower Message-API strategy, its training replies replaced by one secure sum.

``SecureAggregation(FedAvg(...), SecAgg(neighbors=4)).start(grid=..., initial_arrays=..., num_rounds=...)``
runs Flower's own ``Strategy.start`` loop (inherited, so ``start`` has the
wrapped strategy's signature and returns its ``Result``). Round r:

* ``configure_train``: the wrapped strategy samples the client nodes (helper
  SuperNodes are hidden from it) and writes the train messages; each gets
  the round's ticket (16 random bytes) under ``"securefl.ticket"``;
* each node's :func:`~securefl.integrations.flower.mod.securefl_mod` trains
  with the user's ``@app.train`` and answers with an acknowledgement: the
  ticket and the layout of its ring vector, no arrays, no metrics;
* ``aggregate_train``: the :class:`FlowerDriver` runs the protocol over the
  nodes that acknowledged the ticket with the round's common layout (the
  protocol messages travel with the train message type, which the mod
  intercepts); the :class:`SecureAggregator` releases the sum S = sum_I w_i
  u_i, W = sum_I w_i and the statistics; the wrapped strategy's
  ``aggregate_train`` gets ONE reply, ``"arrays"`` = x + S / W (x the arrays
  it sent) and ``"metrics"`` = the example-weighted means sum_I n_i m_i / N
  with ``"num-examples"`` = N = sum_I n_i. FedAvg, FedProx, FedAvgM,
  FedAdam, FedYogi and FedAdagrad compute from that what they compute from
  individual replies (a weighted mean of one reply is that reply).

Accuracy: per coordinate, S / W is within n_I / W x step <= step of the
mean of the clipped updates weighted by w_i (stochastic rounding, ``step =
clip / (2^(value_bits-1) - 1)``), and the w_i-weighted mean within
weight_error x clip of the n_i-weighted one (w_i = min(n_i, max_weight);
weight_error = sum_i |w_i / W - n_i / N| is 0 unless a node has more than
max_weight examples, which the log reports: N != W). The metrics are exact
to 2^-20. Under DP (``dp=CentralDP(...)`` or ``DistributedDP(population=...)``,
the nodes' mods holding the same) the update is the DP release (sum clip_C(u_i) + noise) / (q N),
every node weighs 1 and no metric is aggregated (``num-examples`` is the
number of nodes included).

Federated evaluation stays the wrapped strategy's (evaluate replies carry
each node's evaluation metrics, as in plain Flower). A round the protocol
aborts (``ProtocolAbort``, e.g. too many dropouts) leaves the model as it
was: ``aggregate_train`` returns (None, None), which ``Strategy.start``
reads as "no new arrays"; the reason and each node's stated error are
logged and kept in :attr:`SecureAggregation.reports`.

Threat model: the protocol's. The ServerApp receives acknowledgements,
protocol messages and the released aggregate; a node's update or metrics
never reach it, unless a node's ClientApp lacks the mod, in which case its
clear reply is dropped unused and logged (the data has reached the server
then: the node's code is to blame). Strategies that need individual
updates (Krum, MultiKrum, Bulyan, FedMedian, FedTrimmedAvg, QFedAvg, the
server-side DP clipping wrappers, the XGBoost ones) are refused.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from securefl import validation
from securefl.aggregator import BufferPolicy, Layout, SecureAggregator
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.integrations.flower import wire
from securefl.integrations.flower.binding import against_malicious_server
from securefl.integrations.flower.mod import (
    ACK_KEY,
    TICKET_BYTES,
    TICKET_KEY,
    WEIGHT_KEY,
    VectorLayout,
    check_deployable,
    join_digits,
    stat_digits,
)
from securefl.integrations.flower.server import Federation, FlowerAggregation, FlowerDriver, PhaseReport
from securefl.privacy.plugins import DifferentialPrivacy
from securefl.protocols.base import Protocol

__all__ = ["SecureAggregation", "RoundReport"]

#: Strategies whose aggregation needs each node's update: a secure sum cannot feed them.
_NEEDS_INDIVIDUAL_UPDATES = (
    "Krum", "MultiKrum", "Bulyan", "FedMedian", "FedTrimmedAvg", "QFedAvg", "FedXgbBagging", "FedXgbCyclic",
    "DifferentialPrivacyServerSideFixedClipping", "DifferentialPrivacyServerSideAdaptiveClipping",
)


def _log(level: int, text: str, *args: object) -> None:
    from flwr.common.logger import log

    log(level, text, *args)


@dataclass
class RoundReport:
    """One training round as the server saw it (no node's update or metrics: it never had them).

    ``sampled`` are the nodes the strategy sent train messages to,
    ``acknowledged`` those that trained and acknowledged the round's ticket,
    ``included`` those whose inputs the protocol summed; ``dropped`` maps a
    node to the phase it stopped answering at, ``errors`` to the reason it
    gave (or why its reply was not used); ``examples`` is N = sum_I n_i and
    ``weight_total`` W = sum_I w_i (N != W: weights were clamped to
    max_weight); ``clipped_coordinates`` the total the encoding's clip cut on
    the nodes (None under DP); ``aborted`` the reason the round produced no
    model (None when it did); ``protocol_metrics`` bytes and seconds as the
    driver measured them.
    """

    round: int
    sampled: tuple[int, ...] = ()
    acknowledged: tuple[int, ...] = ()
    included: tuple[int, ...] = ()
    dropped: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    examples: int = 0
    weight_total: int = 0
    clipped_coordinates: int | None = None
    epsilon: float | None = None
    aborted: str | None = None
    seconds: float = 0.0
    protocol_metrics: dict[str, Any] = field(default_factory=dict)


class _GridView(Grid):
    """``grid`` as the wrapper's parts need it: some nodes hidden, driver messages retyped, error replies noted.

    ``hidden`` node ids do not appear in :meth:`get_node_ids` (helpers, for
    the wrapped strategy's sampling); a driver message (``query.securefl``)
    is sent as ``message_type`` (the train type the node's mod wraps: a
    ClientApp mod sees only messages of a registered function); every error
    reply pulled goes to ``on_error(node, reason)``, with ``node`` the
    message's addressee (the SuperLink answers for a node it finds offline).
    """

    def __init__(
        self,
        grid: Grid,
        *,
        hidden: Iterable[int] = (),
        message_type: str | None = None,
        on_error: Callable[[int, str], None] | None = None,
    ) -> None:
        self._grid = grid
        self._hidden = frozenset(hidden)
        self._message_type = message_type
        self._on_error = on_error
        self._addressees: dict[str, int] = {}

    def set_run(self, run: Any) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Any:
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [node for node in self._grid.get_node_ids() if node not in self._hidden]

    def _retyped(self, messages: Iterable[Message]) -> list[Message]:
        if self._message_type is None:
            return list(messages)
        return [
            Message(message.content, message.metadata.dst_node_id, self._message_type, ttl=message.metadata.ttl,
                    group_id=message.metadata.group_id)
            if message.metadata.message_type == wire.MESSAGE_TYPE else message
            for message in messages
        ]

    def _noted(self, replies: Iterable[Message]) -> list[Message]:
        replies = list(replies)
        if self._on_error is not None:
            for reply in replies:
                if reply.has_error():
                    node = self._addressees.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
                    self._on_error(node, reply.error.reason or f"error {reply.error.code}")
        return replies

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = self._retyped(messages)
        ids = list(self._grid.push_messages(messages))
        self._addressees.update((message_id, message.metadata.dst_node_id)
                                for message_id, message in zip(ids, messages) if message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._noted(self._grid.pull_messages(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = self._retyped(messages)
        replies = self._grid.send_and_receive(messages, timeout=timeout)
        self._addressees.update((message.metadata.message_id, message.metadata.dst_node_id) for message in messages)
        return self._noted(replies)


@dataclass
class _Pending:
    """What ``configure_train`` fixed for the round ``aggregate_train`` completes."""

    round: int
    ticket: bytes
    arrays: ArrayRecord
    messages: tuple[Message, ...]  # Flower's Grid gives each its message id when it pushes it
    digests: frozenset[bytes]  # of the model and config each message carries: one, unless the strategy split them

    @property
    def sampled(self) -> tuple[int, ...]:
        return tuple(message.metadata.dst_node_id for message in self.messages)

    def addressee(self, reply: Message) -> int:
        """The node ``reply`` answers for: its sender, or for the SuperLink's error reply the original's addressee."""
        for message in self.messages:
            if message.metadata.message_id and message.metadata.message_id == reply.metadata.reply_to_message_id:
                return int(message.metadata.dst_node_id)
        return int(reply.metadata.src_node_id)


class SecureAggregation(Strategy):
    """``strategy``'s federated learning with ``protocol``'s secure sum in place of the training replies.

    See the module docstring for the round, the accuracy and the threat
    model. ``timeout`` bounds each protocol exchange (seconds; local
    training is bounded by ``start``'s own ``timeout``), ``poll_interval``
    is the pause between pulls, ``dp`` a ``CentralDP`` that every node's mod
    holds too, ``buffers`` what non-float arrays do ("skip": they keep the
    sent values), ``discovery_wait`` how long discovery waits for a first
    SuperNode, ``message_type`` the type of the train function the nodes'
    mod wraps (``"train"``, or ``"train.<action>"``);
    ``host_helpers_in_server=True`` runs helper engines in the ServerApp
    (tests only: the server then holds their secrets); ``on_phase_end`` is
    called with a :class:`PhaseReport` after each protocol phase;
    ``semi_honest_server=True`` runs ``protocol`` as given rather than in its
    malicious-server mode (the nodes' mod must say the same). :attr:`reports`
    has one :class:`RoundReport` per training round; :attr:`epsilon` the DP
    spent so far.
    """

    def __init__(
        self,
        strategy: Strategy,
        protocol: Protocol,
        *,
        timeout: float = 120.0,
        poll_interval: float = 0.1,
        dp: DifferentialPrivacy | None = None,
        buffers: BufferPolicy = "skip",
        discovery_wait: float = 60.0,
        message_type: str = MessageType.TRAIN,
        host_helpers_in_server: bool = False,
        on_phase_end: Callable[[PhaseReport], None] | None = None,
        semi_honest_server: bool = False,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise ConfigurationError(f"strategy must be a Flower Message-API Strategy; found {type(strategy).__name__}")
        unusable = [name for name in _NEEDS_INDIVIDUAL_UPDATES
                    if any(base.__name__ == name for base in type(strategy).__mro__)]
        if unusable:
            raise ConfigurationError(
                f"{type(strategy).__name__} aggregates from each node's update ({unusable[0]}); a secure sum hides "
                "them: wrap FedAvg, FedProx, FedAvgM, FedAdam, FedYogi or FedAdagrad"
            )
        protocol = against_malicious_server(protocol, semi_honest_server=semi_honest_server)
        if dp is not None:
            check_deployable(dp)
        if message_type.split(".", 1)[0] != MessageType.TRAIN:
            raise ConfigurationError(f"message_type must be a train type ('train' or 'train.<action>'); found "
                                     f"{message_type!r}")
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval),
                            ("discovery_wait", discovery_wait)):
            validation.positive_float(value, f"{name} (seconds)")
        self.strategy = strategy
        self.protocol = protocol
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.dp = dp
        self.buffers: BufferPolicy = buffers
        self.discovery_wait = float(discovery_wait)
        self.message_type = message_type
        self.host_helpers_in_server = bool(host_helpers_in_server)
        self.on_phase_end = on_phase_end
        self.reports: list[RoundReport] = []
        if dp is None:
            stat_digits(protocol.encoding)
        # Under DP one aggregator keeps the accountant across rounds; without DP each round has its own.
        self._dp_aggregator = SecureAggregator(protocol, dp=dp, buffers=buffers) if dp is not None else None
        self._driver: FlowerDriver | None = None
        self._grid: Grid | None = None
        self._pending: _Pending | None = None
        self._node_errors: dict[int, str] = {}

    # -- what the strategy reports ------------------------------------------------------------

    @property
    def epsilon(self) -> float | None:
        """The DP spent so far (None without DP)."""
        return None if self._dp_aggregator is None else self._dp_aggregator.epsilon

    @property
    def federation(self) -> Federation | None:
        """The SuperNodes discovered (None before the first round)."""
        return None if self._driver is None else self._driver.federation

    def summary(self) -> None:
        _log(INFO, "\t├──> securefl: %s over the training replies%s; protocol exchanges time out after %g s",
             self.protocol.describe(), f", {self.dp.kind} DP" if self.dp is not None else "", self.timeout)
        _log(INFO, "\t└──> wrapping %s:", type(self.strategy).__name__)
        self.strategy.summary()

    # -- training -------------------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's train messages (helpers hidden from its sampling), each with the round's ticket."""
        driver = self._driver_on(grid)
        federation = driver.federation or self._discover(driver)
        sampling = _GridView(grid, hidden=federation.helpers.values())
        messages = list(self.strategy.configure_train(server_round, arrays, config, sampling))
        ticket = os.urandom(TICKET_BYTES)
        sent = []
        for message in messages:
            content = RecordDict(dict(message.content.items()))
            content[TICKET_KEY] = ConfigRecord({"ticket": ticket, "round": int(server_round)})
            sent.append(Message(content, message.metadata.dst_node_id, message.metadata.message_type,
                                ttl=message.metadata.ttl, group_id=message.metadata.group_id))
        digests = frozenset(wire.content_digests((message.content for message in sent), skip=(TICKET_KEY,)))
        self._pending = _Pending(round=int(server_round), ticket=ticket, arrays=arrays, messages=tuple(sent),
                                 digests=digests)
        return sent

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The secure sum of the acknowledging nodes' updates, handed to the wrapped strategy as one reply."""
        started = time.perf_counter()
        pending, self._pending = self._pending, None
        report = RoundReport(round=int(server_round))
        self.reports.append(report)
        if pending is None or pending.round != server_round or self._driver is None:
            return self._abort(report, f"round {server_round} was not configured by this SecureAggregation", started)
        report.sampled = pending.sampled
        if len(pending.digests) > 1:
            return self._abort(report, f"{type(self.strategy).__name__} sent {len(pending.digests)} different models "
                               "or configs to the nodes of one round; the nodes bind their session to theirs, so no "
                               "secure sum can form (one model per round)", started)
        reference = {name: array.numpy() for name, array in pending.arrays.items()}
        layout = Layout.of(reference, buffers=self.buffers)
        acknowledged = self._acknowledgements(replies, pending, report)
        chosen = self._common_layout(acknowledged, layout.dimension, report)
        nodes = sorted(node for node, node_layout in acknowledged.items() if node_layout == chosen)
        report.acknowledged = tuple(nodes)
        if chosen is None or not nodes:
            return self._abort(report, "no node acknowledged the round with a usable update", started)

        driver = self._driver
        if any(node not in (driver.federation or Federation({})).nodes for node in nodes):
            self._discover(driver)  # a node that joined since the last discovery
        members = set(driver.federation.clients) if driver.federation is not None else set()
        for node in [node for node in nodes if node not in members]:
            self._exclude(report, node, driver.discovery_failures.get(node, "not a client SuperNode of the "
                                                                               "discovered federation"))
        nodes = [node for node in nodes if node in members]
        if not nodes:
            return self._abort(report, "no acknowledging node is a client of the discovered federation", started)
        aggregator = self._dp_aggregator or SecureAggregator(self.protocol, buffers=self.buffers)
        ticket = pending.ticket

        def extra(node: int, index: int) -> RecordDict:
            return RecordDict({TICKET_KEY: ConfigRecord({"ticket": ticket, "round": int(server_round)})})

        self._node_errors = {}
        driver.last_dropped = {}
        try:
            plan = aggregator.open_round(cohort=len(nodes), dimension=chosen.aggregated, round=int(server_round),
                                         public_seed=ticket)
            aggregation = driver.aggregate(nodes, vector_length=chosen.length, round=int(server_round), extra=extra,
                                           digest=next(iter(pending.digests)))
            released = aggregator.release(plan, aggregation.aggregate, transcript=aggregation.transcript,
                                          metrics=aggregation.metrics)
        except (ProtocolAbort, ProtocolViolation) as abort:
            report.dropped = dict(driver.last_dropped)
            report.errors.update(self._node_errors)
            report.epsilon = self.epsilon
            return self._abort(report, f"{type(abort).__name__}: {abort}", started)
        report.errors.update(self._node_errors)
        report.errors.update(aggregation.errors)
        self._record(report, aggregation)
        report.epsilon = self.epsilon

        total = np.asarray(released.total, dtype=np.float64)
        if self.dp is None:
            report.weight_total = int(released.weight_total)
            statistics = join_digits(total[layout.dimension:], encoding=self.protocol.encoding)
            examples, clipped = int(np.rint(statistics[0])), int(np.rint(statistics[1]))
            if examples < 1:
                return self._abort(report, f"the secure sum carries {examples} examples", started)
            mean_update = total[: layout.dimension] / released.weight_total
            metrics = _metric_record(chosen, statistics[2:] / examples)
            report.clipped_coordinates = clipped
            if clipped:
                _log(WARNING, "securefl: round %d: the nodes' encoding cut %d coordinate(s) to the clip %g",
                     server_round, clipped, self.protocol.encoding.clip)
            if examples != released.weight_total:
                _log(INFO, "securefl: round %d: %d examples weigh %d (weights clamped to max_weight=%d): the mean "
                     "is within weight_error x clip of the example-weighted one", server_round, examples,
                     released.weight_total, self.protocol.encoding.max_weight)
        else:
            examples = len(released.included)
            mean_update = np.asarray(released.mean, dtype=np.float64)[: layout.dimension]
            metrics = MetricRecord()
        report.examples = examples
        metrics[str(getattr(self.strategy, "weighted_by_key", WEIGHT_KEY))] = examples
        start = layout.flatten(reference, client=-1)
        model = layout.rebuild(start + mean_update, fill=reference)
        arrays = ArrayRecord({name: Array(np.asarray(value)) for name, value in model.items()})
        key = str(getattr(self.strategy, "arrayrecord_key", "arrays"))
        secure_reply = Message(RecordDict({key: arrays, "metrics": metrics}), dst_node_id=0,
                               message_type=MessageType.TRAIN)
        report.seconds = time.perf_counter() - started
        _log(INFO, "securefl: round %d: secure sum of %d/%d node(s), %d examples%s", server_round,
             len(report.included), len(report.sampled), examples,
             f", dropped {report.dropped}" if report.dropped else "")
        return self.strategy.aggregate_train(server_round, [secure_reply])

    # -- evaluation: the wrapped strategy's --------------------------------------------------

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        federation = self.federation
        hidden = federation.helpers.values() if federation is not None else ()
        return self.strategy.configure_evaluate(server_round, arrays, config, _GridView(grid, hidden=hidden))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    # -- the parts -------------------------------------------------------------------------------

    def _driver_on(self, grid: Grid) -> FlowerDriver:
        if self._driver is None or self._grid is not grid:
            self._grid = grid
            view = _GridView(grid, message_type=self.message_type, on_error=self._note_error)
            protocol = self.dp.protocol_for(self.protocol) if self.dp is not None else self.protocol
            self._driver = FlowerDriver(view, protocol, timeout=self.timeout, poll_interval=self.poll_interval,
                                        host_helpers_in_server=self.host_helpers_in_server,
                                        on_phase_end=self.on_phase_end,
                                        semi_honest_server=True)  # self.protocol is already in its final mode
        return self._driver

    def _discover(self, driver: FlowerDriver) -> Federation:
        federation = driver.discover(min_nodes=1, wait=self.discovery_wait)
        for node, reason in driver.discovery_failures.items():
            _log(WARNING, "securefl: SuperNode %d is not part of the secure aggregation: %s", node, reason)
        _log(INFO, "securefl: %s over %d client SuperNode(s), helpers %s", self.protocol.describe(),
             len(federation.clients), federation.helpers or "none")
        return federation

    def _note_error(self, node: int, reason: str) -> None:
        self._node_errors[node] = reason
        _log(WARNING, "securefl: SuperNode %d refused: %s", node, reason)

    @staticmethod
    def _exclude(report: RoundReport, node: int, reason: str) -> None:
        report.errors[node] = reason
        _log(WARNING, "securefl: round %d: SuperNode %d left out: %s", report.round, node, reason)

    def _acknowledgements(self, replies: Iterable[Message], pending: _Pending,
                          report: RoundReport) -> dict[int, VectorLayout]:
        """{node: its vector layout} for the replies that acknowledge this round's ticket; the others logged."""
        acknowledged: dict[int, VectorLayout] = {}
        for reply in replies:
            node = pending.addressee(reply)
            if reply.has_error():
                self._exclude(report, node, reply.error.reason or f"error {reply.error.code}")
                continue
            content = reply.content
            record = content.config_records.get(ACK_KEY)
            if record is None:
                in_clear = bool(content.array_records or content.metric_records)
                self._exclude(report, node, "answered in the clear (its ClientApp has no securefl_mod); the reply "
                              "is not used" if in_clear else "sent no securefl acknowledgement")
            elif record.get("ticket") != pending.ticket or record.get("round") != pending.round:
                self._exclude(report, node, "acknowledged another round's ticket")
            else:
                try:
                    acknowledged[node] = VectorLayout.from_config(record)
                except InvalidMessage as error:
                    self._exclude(report, node, str(error))
        return acknowledged

    def _common_layout(self, acknowledged: Mapping[int, VectorLayout], dimension: int,
                       report: RoundReport) -> VectorLayout | None:
        """The layout the most nodes reported among those that fit the sent arrays and this wrapper's DP."""
        digits = stat_digits(self.protocol.encoding) if self.dp is None else None
        dp = self.dp.kind if self.dp is not None else ""
        fitting: dict[int, VectorLayout] = {}
        for node, layout in acknowledged.items():
            if layout.dimension != dimension:
                self._exclude(report, node, f"trained {layout.dimension} coordinates; the model has {dimension}")
            elif layout.dp != dp:
                self._exclude(report, node, f"runs DP {layout.dp or 'none'!r}; this server {dp or 'none'!r}")
            elif digits is not None and layout.digits != digits:
                self._exclude(report, node, f"writes statistics in {layout.digits} digits, not {digits}")
            else:
                fitting[node] = layout
        if not fitting:
            return None
        counts = Counter(fitting.values())
        chosen = max(counts, key=lambda layout: (counts[layout], layout.metric_names))
        for node, layout in fitting.items():
            if layout != chosen:
                self._exclude(report, node, f"reports metrics {list(layout.metric_names)}, the round "
                              f"{list(chosen.metric_names)}")
        return chosen

    @staticmethod
    def _record(report: RoundReport, aggregation: FlowerAggregation) -> None:
        report.included = aggregation.included_nodes
        report.dropped = dict(aggregation.dropped)
        report.protocol_metrics = dict(aggregation.metrics)

    def _abort(self, report: RoundReport, reason: str, started: float) -> tuple[None, None]:
        report.aborted = reason
        report.seconds = time.perf_counter() - started
        _log(WARNING, "securefl: round %d aborted, the model is unchanged: %s%s", report.round, reason,
             f" (stopped answering: {report.dropped})" if report.dropped else "")
        return None, None


def _metric_record(layout: VectorLayout, means: np.ndarray) -> MetricRecord:
    """The means of the metrics in ``layout``'s order (a list metric keeps its length)."""
    record = MetricRecord()
    offset = 0
    for name, size in zip(layout.metric_names, layout.metric_sizes):
        if size == 0:
            record[name] = float(means[offset])
            offset += 1
        else:
            record[name] = [float(value) for value in means[offset : offset + size]]
            offset += size
    return record
