"""The server side: run a protocol's phases from a Flower ServerApp over the Grid.

:class:`FlowerDriver` discovers the SuperNodes (their roles, the helpers'
published keys) and runs each aggregation with the driver core -- the very
loop of the in-process simulator (:class:`securefl.driver.Round`) -- over a
:class:`~securefl.integrations.flower.transport.GridTransport`. For each
protocol phase the server engine opens the phase; the transport packs, for
every party addressed, the canonical bytes of its messages into one Flower
message to that party's SuperNode (:mod:`.wire`), pushes them all, and
pulls the replies until every node has answered or ``timeout`` seconds
have passed. Replies addressed to the server go to its engine; replies
addressed to another party (a client's share for an aggregator, a
ciphertext SecAgg relays) are delivered to that party in a further exchange
of the same phase. A node that does not answer in time, answers with an
error, or sends a message the server engine rejects is a dropout from then
on, exactly as a ``dropouts`` entry of the simulator: it is sent nothing
more and its late replies are ignored. The server engine then decides in
``end_phase`` whether it can go on (``ProtocolAbort`` if not).

Threat model: the ServerApp holds only the server engine. Helper parties run
on their own SuperNodes (node config ``securefl-role``), and what clients
send them is sealed end to end (:mod:`.wire`), so the server's view -- the
``transcript`` -- is what it is in process. ``host_helpers_in_server=True``
runs the helper engines inside the ServerApp instead, for tests and
benchmarks only: the server then holds every helper's secrets (the Paillier
private key, every aggregator's shares) and the protocol protects nothing
from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flwr.app import ConfigRecordValues, RecordDict
from flwr.serverapp import Grid

from securefl import validation
from securefl.aggregator import SecureAggregator
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SigningKey
from securefl.driver import AggregationResult, PhaseEnd, Round, TranscriptEntry, summarize_metrics
from securefl.errors import ConfigurationError
from securefl.integrations.flower import wire
from securefl.integrations.flower.binding import (
    against_malicious_server,
    bind,
    check_supported,
)
from securefl.integrations.flower.node import CLIENT
from securefl.integrations.flower.transport import ExtraContent, GridTransport, push_and_pull
from securefl.protocols.base import Engine, Protocol, RingAggregate
from securefl.protocols.wire import SESSION_BYTES, client_id

__all__ = ["NodeInfo", "Federation", "PhaseReport", "FlowerAggregation", "FlowerDriver"]


@dataclass(frozen=True)
class NodeInfo:
    """What a SuperNode told the server at discovery."""

    node_id: int
    role: str
    partition: int | None
    transport_key: bytes = b""
    parameters: bytes = b""
    verification_key: bytes = b""  # a client's Ed25519 key (its envelopes; SecAgg's malicious-server mode)

    @property
    def fingerprint(self) -> str:
        """A helper's fingerprint (``wire.helper_fingerprint``), a client's of its verification key, or ''."""
        if self.role == CLIENT:
            return wire.client_fingerprint(self.verification_key) if self.verification_key else ""
        return wire.helper_fingerprint(self.role, self.transport_key, self.parameters)


@dataclass(frozen=True)
class Federation:
    """The SuperNodes that answered discovery, by node id."""

    nodes: Mapping[int, NodeInfo]

    @property
    def clients(self) -> tuple[int, ...]:
        """Client node ids, ordered by partition id (nodes without one last), then node id."""
        members = [info for info in self.nodes.values() if info.role == CLIENT]
        members.sort(key=lambda info: (info.partition is None, info.partition or 0, info.node_id))
        return tuple(info.node_id for info in members)

    @property
    def helpers(self) -> dict[str, int]:
        """Helper party id -> node id."""
        return {info.role: info.node_id for info in self.nodes.values() if info.role != CLIENT}

    def node_for_partition(self, partition: int) -> int | None:
        for info in self.nodes.values():
            if info.role == CLIENT and info.partition == partition:
                return info.node_id
        return None


@dataclass(frozen=True)
class PhaseReport:
    """Handed to ``on_phase_end`` after each phase the server engine closed."""

    phase: str
    round: int
    session: bytes
    dropped: Mapping[int, str]
    seconds: float


@dataclass
class FlowerAggregation:
    """The outcome of one aggregation over Flower.

    ``aggregate`` is the server engine's result (ring sum and included client
    indices); ``nodes[i]`` is the node id that played client i;
    ``dropped`` maps node ids to the phase at which they stopped answering
    and ``errors`` to the reason when they refused; ``transcript`` is every
    message the server engine received, as bytes.
    """

    protocol: Protocol
    aggregate: RingAggregate
    nodes: tuple[int | None, ...]
    dropped: dict[int, str]
    errors: dict[int, str]
    transcript: list[TranscriptEntry]
    metrics: dict
    node_metrics: dict[int, dict[str, float]]
    seconds: float

    @property
    def included_nodes(self) -> tuple[int, ...]:
        # A client without a SuperNode drops out in the first phase, so every included one has a node.
        return tuple(node for node in (self.nodes[i] for i in self.aggregate.included) if node is not None)

    def result(self) -> AggregationResult:
        """The aggregate released by a plain :class:`~securefl.aggregator.SecureAggregator` (weights on the nodes)."""
        aggregator = SecureAggregator(self.protocol)
        plan = aggregator.open_round(cohort=len(self.nodes), dimension=int(self.aggregate.total.size) - 1)
        released = aggregator.release(plan, self.aggregate, transcript=self.transcript, metrics=self.metrics)
        for guessed in ("weights", "weight_error"):  # the nodes weigh themselves; the server's plan is not theirs
            released.metrics.pop(guessed, None)
        return released.result


class FlowerDriver:
    """Runs ``protocol`` aggregations from a ServerApp's ``main(grid, context)``.

    ``timeout`` bounds each exchange with the nodes (seconds); a node that
    has not answered by then is a dropout. ``poll_interval`` is the pause
    between pulls. ``on_phase_end`` is called with a :class:`PhaseReport`
    after each phase (logging, progress, tests that act between phases).
    ``protocol`` runs in its malicious-server mode, as on the nodes, unless
    ``semi_honest_server`` (see :func:`.binding.against_malicious_server`).
    """

    def __init__(
        self,
        grid: Grid,
        protocol: Protocol,
        *,
        timeout: float = 120.0,
        poll_interval: float = 0.1,
        host_helpers_in_server: bool = False,
        on_phase_end: Callable[[PhaseReport], None] | None = None,
        semi_honest_server: bool = False,
    ) -> None:
        protocol = against_malicious_server(protocol, semi_honest_server=semi_honest_server)
        check_supported(protocol)
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            validation.positive_float(value, f"{name} (seconds)")
        self.grid = grid
        self.protocol = protocol
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.host_helpers_in_server = bool(host_helpers_in_server)
        self.on_phase_end = on_phase_end
        self.federation: Federation | None = None
        self.discovery_failures: dict[int, str] = {}
        self.last_dropped: dict[int, str] = {}
        self.last_errors: dict[int, str] = {}

    # -- discovery ----------------------------------------------------------------

    def discover(self, *, min_nodes: int = 1, wait: float = 60.0) -> Federation:
        """Ask every connected SuperNode its role; wait up to ``wait`` s for ``min_nodes`` of them."""
        deadline = time.monotonic() + wait
        node_ids = sorted(self.grid.get_node_ids())
        while len(node_ids) < min_nodes and time.monotonic() < deadline:
            time.sleep(min(0.5, self.poll_interval * 5))
            node_ids = sorted(self.grid.get_node_ids())
        if len(node_ids) < min_nodes:
            raise ConfigurationError(f"{len(node_ids)} SuperNode(s) connected after {wait:.0f} s; need {min_nodes}")
        replies, failures = push_and_pull(
            self.grid,
            {node: wire.pack({"op": "discover", "protocol": self.protocol.name}, []) for node in node_ids},
            group="discover", timeout=self.timeout, poll_interval=self.poll_interval,
        )
        nodes: dict[int, NodeInfo] = {}
        roles: dict[str, int] = {}
        for node, (control, _) in replies.items():
            role = control.get("role")
            if not isinstance(role, str) or control.get("op") != "discover":
                failures[node] = "malformed discovery reply"
                continue
            if role != CLIENT and role in roles:
                raise ConfigurationError(f"SuperNodes {roles[role]} and {node} both claim the role {role!r}")
            if role != CLIENT:
                roles[role] = node
            if control.get("protocol") != self.protocol.name:
                failures[node] = f"configured for {control.get('protocol')!r}, not {self.protocol.name!r}"
                continue
            verification_key = bytes(control.get("verification-key", b""))
            if role == CLIENT and len(verification_key) != PUBLIC_KEY_BYTES:
                failures[node] = "published no client key"
                continue
            if role == CLIENT and control.get("registers-client-keys") is not self.protocol.registers_client_keys:
                failures[node] = ("configured without malicious_server=True" if self.protocol.registers_client_keys
                                  else "configured for malicious_server=True; this server runs without it")
                continue
            partition = control.get("partition", -1)
            nodes[node] = NodeInfo(
                node_id=node,
                role=role,
                partition=partition if isinstance(partition, int) and partition >= 0 else None,
                transport_key=bytes(control.get("transport-key", b"")),
                parameters=bytes(control.get("parameters", b"")),
                verification_key=verification_key,
            )
        self.discovery_failures = failures
        self.federation = Federation(nodes)
        return self.federation

    # -- one aggregation ------------------------------------------------------------

    def aggregate(
        self,
        clients: Sequence[int | None],
        *,
        vector_length: int,
        round: int = 0,
        session: bytes | None = None,
        extra: ExtraContent | None = None,
        digest: bytes | None = None,
    ) -> FlowerAggregation:
        """Aggregate the inputs of the client nodes ``clients`` (node ids; client i is ``clients[i]``).

        A ``None`` in ``clients`` is a client known to be unreachable (no
        SuperNode holds it): a dropout from the first phase.
        ``extra(node_id, index)`` may return records to attach to the first
        message each client receives (e.g. the global model its input
        function trains): the same for every client, since each binds its
        session to their digest (:func:`.wire.bound_session`; one model per
        round). ``digest`` names that digest when the clients trained on
        something else (the wrapper's train message). Raises ``ProtocolAbort``
        when the protocol cannot complete.
        """
        started = time.perf_counter()
        federation = self.federation if self.federation is not None else self.discover()
        clients = [None if node is None else int(node) for node in clients]
        present = [node for node in clients if node is not None]
        if len(set(present)) != len(present):
            raise ConfigurationError("a SuperNode appears twice among the clients")
        unknown = [node for node in present if node not in federation.nodes or federation.nodes[node].role != CLIENT]
        if unknown:
            raise ConfigurationError(f"nodes {unknown} are not client SuperNodes of the discovered federation")
        session = os.urandom(SESSION_BYTES) if session is None else session
        if digest is None:
            digests = wire.content_digests((extra(node, index) if extra is not None else None) or RecordDict()
                                           for index, node in enumerate(clients) if node is not None)
            if len(digests) > 1:
                raise ConfigurationError("extra attaches different records for different clients; every client of "
                                         "an aggregation must get the same model and config")
            digest = digests.pop() if digests else wire.empty_digest()
        bound = wire.bound_session(session, digest)
        if self.host_helpers_in_server:
            protocol = self.protocol
            helper_keys: dict[str, bytes] = {}
        else:
            helper_infos = {party: federation.nodes[node] for party, node in federation.helpers.items()}
            protocol = bind(self.protocol, {party: info.parameters for party, info in helper_infos.items()})
            helper_keys = {party: info.transport_key for party, info in helper_infos.items()}
        # Each client's own key, as published at discovery; a client without a SuperNode gets a key
        # nobody keeps (it drops out in the first phase; clients that pin keys refuse it).
        client_keys = [
            federation.nodes[node].verification_key if node is not None else SigningKey.generate().public_bytes
            for node in clients
        ]
        verification_keys = client_keys if protocol.registers_client_keys else []
        # The server's own engine only: no client's engine, no client's keys, no pool is made here.
        run_parameters = protocol.run_parameters(clients=len(clients), vector_length=vector_length, session=bound,
                                                 round=round, verification_keys=verification_keys)
        server_engine = protocol.server_engine(run_parameters)
        local_helpers: list[Engine] = []
        node_of: dict[str, int] = {client_id(i): node for i, node in enumerate(clients) if node is not None}
        for helper in protocol.helper_parties():
            if self.host_helpers_in_server:
                local_helpers.append(protocol.helper_engine(helper, run_parameters))
            elif helper in federation.helpers:
                node_of[helper] = federation.helpers[helper]
            else:
                raise ConfigurationError(
                    f"{protocol.name} needs a helper {helper!r}: start a SuperNode with "
                    f"--node-config 'securefl-role=\"{helper}\"' (or host_helpers_in_server=True for tests)"
                )
        helpers_used = [party for party in node_of if not party.startswith("client/")]
        setup: dict[str, ConfigRecordValues] = {
            "op": "phase",
            "session": session,
            "round-digest": digest,
            "round": int(round),
            "clients": len(clients),
            "vector-length": int(vector_length),
            "protocol": protocol.name,
            "helpers": helpers_used,
            "helper-keys": [helper_keys.get(party, b"") for party in helpers_used],
            "helper-parameters": [federation.nodes[node_of[party]].parameters for party in helpers_used],
        }
        if verification_keys:
            setup["verification-keys"] = verification_keys
        if helpers_used:  # the keys the helpers check the clients' envelopes against
            setup["client-keys"] = client_keys
        transport = GridTransport(self.grid, node_of=node_of, setup=setup, group=f"{round}", timeout=self.timeout,
                                  poll_interval=self.poll_interval, extra=extra)

        def nodes(dropped: Mapping[str, str]) -> dict[int, str]:
            return {node_of[party]: phase for party, phase in dropped.items() if party in node_of}

        def report(end: PhaseEnd) -> None:
            if self.on_phase_end is not None:
                self.on_phase_end(PhaseReport(phase=end.phase, round=round, session=session,
                                              dropped=nodes(end.dropped), seconds=end.seconds))

        run = Round(
            server=server_engine,
            phases=protocol.phases,
            transport=transport,
            hosted=local_helpers,
            absent={client_id(position): "no SuperNode" for position, node in enumerate(clients) if node is None},
            on_phase_end=report,
        )
        try:
            outcome = run.run()
        finally:
            # Who dropped and why, also when the protocol aborted (FedAvg records it for the aborted round).
            self.last_dropped = nodes(run.dropped)
            self.last_errors = {node_of[party]: reason for party, reason in run.errors.items() if party in node_of}
        aggregate = outcome.aggregate
        return FlowerAggregation(
            protocol=protocol,
            aggregate=aggregate,
            nodes=tuple(clients),
            dropped=nodes(outcome.dropped),
            errors={node_of[party]: reason for party, reason in outcome.errors.items() if party in node_of},
            transcript=outcome.transcript,
            metrics=summarize_metrics(outcome.ledger, len(clients), aggregate.included, transport.input_seconds),
            node_metrics={node_of[party]: values for party, values in transport.node_metrics.items()},
            seconds=time.perf_counter() - started,
        )
