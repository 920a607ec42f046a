"""FedAvg of :mod:`securefl.fl` over Flower: training on the SuperNodes, the update through the protocol.

One ``FedAvg`` runs on each side, composed, not subclassed: the server's is
``FedAvg(protocol, config, dp=..., clients=FlowerClients(driver))``, each
node's a plain ``FedAvg`` with the same configuration (same seed, so the same
data split and partition). Round r:

* server: ``fedavg.sample_clients(r)`` picks data partitions;
  :class:`FlowerClients` opens the round on the server's
  ``SecureAggregator`` (``open_round``: under DP the accountant's event is
  charged here, whether or not the round completes), maps each partition to
  the SuperNode whose node config has that ``partition-id`` (a partition with
  no node is a dropout at the first phase) and sends it the global model w
  with the first protocol message;
* node (:func:`fedavg_input_fn`): ``fedavg.local_update(partition, w,
  round=r)`` trains on the node's own partition; the node's own
  ``SecureAggregator`` turns u = w_i - w into the ring vector
  (``client_round`` + ``client_input``: without DP ``min(n_i, max_weight) u``
  with the weight in the last coordinate, under central DP ``clip_C(u)`` at
  weight 1), rounding with fresh OS randomness, and the client engine answers
  the phases;
* server: ``release`` turns the ring aggregate into the mean update (central
  DP adds its noise here), w <- w + mean, and ``fedavg.evaluate``.

Threat model: the protocol's; the server never holds an individual update or
weight, so the round's record differs from the in-process one:
``weights`` is empty and ``server_saw_individual_updates`` (no audit),
``clipped_fraction`` and ``l2_clip_fraction`` are not reported (measured on
the nodes, reporting them would leak them); a client whose sample count
exceeds the encoding's ``max_weight`` has its weight clamped to
``max_weight`` (in process it is scaled by the round's largest count, which
no node knows); ``FedAvgConfig.dropout`` must be 0 (dropouts are real ones).
Only central DP runs over Flower (a distributed-DP noise share depends on a
cohort the server would have to announce).

The seed of the run config fixes the data split and the partitions, so it is
public to every node. The apps' server therefore takes its own random choices
(client sampling, the initial model, the DP noise) from the OS entropy pool:
noise drawn from a seed the nodes know could be subtracted by them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from logging import INFO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

import numpy as np
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from securefl.aggregator import Aggregate, Layout
from securefl.errors import ConfigurationError, ProtocolAbort, ProtocolViolation
from securefl.integrations.flower.binding import against_malicious_server, protocol_from_config
from securefl.integrations.flower.node import Contribution, Job, SecureFLNode
from securefl.integrations.flower.server import Federation, FlowerAggregation, FlowerDriver
from securefl.protocols.base import Protocol

if TYPE_CHECKING:
    # Type-checking only: securefl.fl needs torch, which this module imports on first use (a
    # ClientApp process, started anew for every message, imports torch only when it trains).
    from securefl.fl.fedavg import ClientsOutcome, FedAvg, FedAvgConfig
    from securefl.privacy.plugins import CentralDP

__all__ = [
    "MODEL_KEY",
    "FlowerClients",
    "MakeFedAvg",
    "default_fedavg",
    "fedavg_config_from",
    "central_dp_from",
    "fedavg_input_fn",
    "fedavg_server_app",
    "fedavg_client_app",
]

MODEL_KEY = "securefl.model"

#: Run-config keys ``dp-<name>`` -> ``CentralDP`` field.
_DP_KEYS = {
    "dp-noise-multiplier": "noise_multiplier",
    "dp-epsilon": "target_epsilon",
    "dp-clip": "clip",
    "dp-delta": "delta",
    "dp-sample-rate": "sample_rate",
    "dp-accountant": "accountant",
}


class MakeFedAvg(TypingProtocol):
    """``make_fedavg(context, protocol, clients=None)``: the FedAvg of one side of a federation.

    The server calls it with its :class:`FlowerClients` (pass them on as
    ``FedAvg(..., clients=clients)``), a node with ``clients=None``.
    """

    def __call__(self, context: Context, protocol: Protocol, clients: FlowerClients | None = None) -> FedAvg: ...


def fedavg_config_from(run_config: Mapping[str, Any]) -> FedAvgConfig:
    """A ``FedAvgConfig`` from the run config's kebab-case keys (``local-epochs``, ``lr``, ...).

    An empty string leaves a field at its default.
    """
    from securefl.fl import FedAvgConfig

    fields = {f.name for f in dataclasses.fields(FedAvgConfig)}
    values = {key.replace("-", "_"): value for key, value in run_config.items() if value != ""}
    return FedAvgConfig(**{key: value for key, value in values.items() if key in fields})


def central_dp_from(run_config: Mapping[str, Any]) -> CentralDP | None:
    """``CentralDP`` from the run config; None when neither ``dp-noise-multiplier`` nor ``dp-epsilon`` is set.

    ``dp-noise-multiplier`` is z; ``dp-epsilon`` a target epsilon, the
    smallest z meeting it over ``rounds`` rounds (the run config's, default
    FedAvg's); ``dp-clip``, ``dp-delta``, ``dp-sample-rate`` and
    ``dp-accountant`` ("rdp" or "pld") as in ``CentralDP``. An empty string
    is unset; an unknown ``dp-`` key is refused.
    """
    from securefl.fl import FedAvgConfig
    from securefl.privacy.plugins import CentralDP

    unknown = sorted(key for key in run_config if key.startswith("dp-") and key not in _DP_KEYS)
    if unknown:
        raise ConfigurationError(f"unknown run-config key(s) {', '.join(unknown)}; known: {', '.join(_DP_KEYS)}")
    options = {field: run_config[key] for key, field in _DP_KEYS.items() if run_config.get(key, "") != ""}
    if "noise_multiplier" not in options and "target_epsilon" not in options:
        return None
    if "noise_multiplier" in options and "target_epsilon" in options:
        raise ConfigurationError(
            f"set one of dp-noise-multiplier and dp-epsilon; found dp-noise-multiplier={options['noise_multiplier']} "
            f"and dp-epsilon={options['target_epsilon']}"
        )
    if "target_epsilon" in options:
        rounds = run_config.get("rounds", "")
        options["rounds"] = int(rounds) if rounds != "" else FedAvgConfig().rounds
    return CentralDP(**options)


# -- the server side ------------------------------------------------------------------


class FlowerClients:
    """The clients' side of a FedAvg round on Flower SuperNodes (``FedAvg(..., clients=FlowerClients(driver))``).

    Implements ``train_and_aggregate`` as :class:`securefl.fl.fedavg.InProcessClients`
    does, with the training and the client stage on the nodes (see the
    module docstring): the server's ``SecureAggregator`` opens and releases
    the round, ``driver`` runs the protocol. The SuperNodes are discovered
    on first use unless ``driver.discover`` ran already: at least
    ``min_nodes`` of them (default ``FedAvgConfig.clients``; count the
    helpers too), waiting up to ``wait`` seconds. ``last_aggregation`` is the
    driver's outcome of the latest round (None when it did not run).

    A round is charged to the DP accountant when it opens; the server keeps
    no individual update (``audit`` is None). A seeded server FedAvg draws
    sampling and DP noise from its seed: reproducible, for tests only.
    """

    def __init__(self, driver: FlowerDriver, *, min_nodes: int | None = None, wait: float = 120.0) -> None:
        if not isinstance(driver, FlowerDriver):
            raise ConfigurationError(f"driver must be a FlowerDriver; found {type(driver).__name__}")
        if min_nodes is not None and (not isinstance(min_nodes, int) or min_nodes < 1):
            raise ConfigurationError(f"min_nodes must be a positive integer or None; found {min_nodes!r}")
        self.driver = driver
        self.min_nodes = min_nodes
        self.wait = float(wait)
        self.last_aggregation: FlowerAggregation | None = None

    def check(self, fedavg: FedAvg) -> None:
        """Refuse a FedAvg this deployment cannot run (simulated dropouts, another protocol, distributed DP)."""
        if fedavg.config.dropout != 0:
            raise ConfigurationError(
                f"dropout={fedavg.config.dropout}: over Flower dropouts are real ones; leave FedAvgConfig.dropout at 0"
            )
        if self.driver.protocol not in (fedavg.protocol, against_malicious_server(fedavg.protocol)):
            raise ConfigurationError(
                f"the driver runs {self.driver.protocol.describe()}; the FedAvg {fedavg.protocol.describe()}"
            )
        if fedavg.dp is not None and fedavg.dp.kind != "central":
            raise ConfigurationError(
                f"over Flower only central DP runs (a {fedavg.dp.kind}-DP noise share depends on the round's "
                "cohort, which the nodes do not know)"
            )

    def discover(self, fedavg: FedAvg) -> Federation:
        """The driver's federation, discovered now if it was not yet (after :meth:`check`)."""
        self.check(fedavg)
        if self.driver.federation is None:
            minimum = fedavg.config.clients if self.min_nodes is None else self.min_nodes
            self.driver.discover(min_nodes=minimum, wait=self.wait)
        federation = self.driver.federation
        if federation is None:  # pragma: no cover - discover sets it or raises
            raise ConfigurationError("no federation was discovered")
        return federation

    def train_and_aggregate(self, fedavg: FedAvg, sampled: Sequence[int], *, round: int) -> ClientsOutcome:
        """One round on the nodes: open, send the model, run the protocol, release (see the module docstring)."""
        from flwr.app import ArrayRecord

        from securefl.fl.fedavg import ClientsOutcome

        federation = self.discover(fedavg)
        aggregator = fedavg.aggregator
        reference = fedavg.global_state
        layout = Layout.of(reference, buffers=aggregator.buffers)
        start = layout.flatten(reference, client=-1)
        nodes = [federation.node_for_partition(partition) for partition in sampled]
        model = ArrayRecord(torch_state_dict=dict(reference))

        def extra(node: int, index: int) -> RecordDict:
            return RecordDict({MODEL_KEY: model})

        self.last_aggregation = None
        self.driver.last_dropped = {}
        aggregate: Aggregate | None = None
        abort_reason: str | None = None
        try:
            if not sampled and fedavg.dp is None:
                raise ProtocolAbort(f"round {round}: no client was sampled")
            plan = aggregator.open_round(cohort=len(sampled), dimension=layout.dimension, round=round)
            if sampled:
                aggregation = self.driver.aggregate(nodes, vector_length=layout.dimension + 1, round=round,
                                                    extra=extra)
                self.last_aggregation = aggregation
                aggregate = aggregator.release(plan, aggregation.aggregate, transcript=aggregation.transcript,
                                               metrics=aggregation.metrics)
            else:  # nobody was sampled: central DP releases its noise all the same
                aggregate = aggregator.release(plan, None)
        except (ProtocolAbort, ProtocolViolation) as abort:
            abort_reason = f"{type(abort).__name__}: {abort}"
        if aggregate is not None:
            # The weights of the plan are the server's guess; the nodes weighed themselves (min(n_i, max_weight)).
            for unknown in ("weights", "weight_error"):
                aggregate.metrics.pop(unknown, None)
            aggregate.metrics["skipped_entries"] = list(layout.skipped)
            aggregate.model = layout.rebuild(start + aggregate.mean, fill=reference)
            aggregate.mean = layout.rebuild(aggregate.mean)
            aggregate.total = layout.rebuild(aggregate.total)

        first_phase = self.driver.protocol.phases[0]
        dropouts = {partition: first_phase for partition, node in zip(sampled, nodes, strict=True) if node is None}
        partition_of = {node: partition for partition, node in zip(sampled, nodes, strict=True) if node is not None}
        dropouts.update({partition_of[node]: phase for node, phase in self.driver.last_dropped.items()
                         if node in partition_of})
        train_seconds, protocol_seconds = self._seconds()
        return ClientsOutcome(aggregate=aggregate, abort_reason=abort_reason, dropouts=dropouts,
                              train_seconds=train_seconds, protocol_seconds=protocol_seconds, audit=None)

    def _seconds(self) -> tuple[float, float]:
        """(training, the rest of a client's time): means over the nodes that reported them.

        A node reports ``train-seconds`` and the driver its input function's
        whole time (``input-seconds``); the rest of it (encoding) plus the
        engine's seconds is the protocol's share.
        """
        aggregation = self.last_aggregation
        if aggregation is None:
            return 0.0, 0.0
        reports = list(aggregation.node_metrics.values())
        train = [m["train-seconds"] for m in reports if "train-seconds" in m]
        encode = [m["input-seconds"] - m.get("train-seconds", 0.0) for m in reports if "input-seconds" in m]
        engine = float(aggregation.metrics.get("client_seconds_mean", 0.0))
        return (float(np.mean(train)) if train else 0.0,
                engine + (float(np.mean(encode)) if encode else 0.0))


# -- the node side ------------------------------------------------------------------


def fedavg_input_fn(make_fedavg: MakeFedAvg | Callable[[Context, Protocol], FedAvg]) -> Callable[[Job], Contribution]:
    """An input function that trains ``make_fedavg(context, protocol)`` on the node's partition.

    The FedAvg object (and with it the node's ``SecureAggregator``) is made
    once per process and run config; the digits data set and the partition
    are rebuilt from the seed. Its ``local_update`` trains from the global
    model the server sent; ``client_round`` + ``client_input`` encode the
    difference, with fresh OS randomness for the stochastic rounding. A
    ``ClippingWarning`` says how many coordinates the encoding cut.
    """

    made: dict[Any, Any] = {}  # per process: (protocol, run config) -> FedAvg

    def input_fn(job: Job) -> Contribution:
        import torch

        from securefl.encoding import warn_clipped

        partition = job.partition
        if partition is None:
            raise ConfigurationError("this SuperNode has no partition-id in its node config; it holds no data")
        key = (job.protocol.describe(), tuple(sorted(job.context.run_config.items())))
        fedavg = made.get(key)
        if fedavg is None:
            fedavg = made[key] = make_fedavg(job.context, job.protocol)
        if not 0 <= partition < fedavg.config.clients:
            raise ConfigurationError(f"partition-id {partition} is outside [0, {fedavg.config.clients})")
        if MODEL_KEY not in job.message.content.array_records:
            raise ConfigurationError("the server sent no global model with this aggregation")
        state = job.message.content.array_records[MODEL_KEY].to_torch_state_dict()
        aggregator = fedavg.aggregator
        layout = Layout.of(state, buffers=aggregator.buffers)
        own = Layout.of(fedavg.initial_state, buffers=aggregator.buffers)
        if _shapes(layout) != _shapes(own):
            theirs, ours = next(((a, b) for a, b in zip(_shapes(layout) + [None], _shapes(own) + [None]) if a != b))
            raise ConfigurationError(
                f"the server's model ({layout.dimension} parameters) is not structured like this node's "
                f"({own.dimension}): entry {theirs} where this node has {ours}"
            )
        if layout.dimension + 1 != job.vector_length:
            raise ConfigurationError(
                f"the model has {layout.dimension} parameters; the server expects {job.vector_length - 1}"
            )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            started = time.perf_counter()
            local_state, count = fedavg.local_update(partition, state, round=job.round)
            train_seconds = time.perf_counter() - started
        finally:
            torch.set_num_threads(threads)
        update = layout.flatten(local_state, client=partition) - layout.flatten(state, client=-1)
        plan = aggregator.client_round(round=job.round, dimension=layout.dimension, count=count)
        encoding = plan.protocol.encoding
        if encoding != job.protocol.encoding:
            raise ConfigurationError("this node's FedAvg encodes for another protocol than the server runs")
        stage = aggregator.client_input(plan, update, position=0, rng=np.random.default_rng())
        warn_clipped(clipped=stage.clipped_coordinates, coordinates=int(update.size), clip=encoding.clip)
        if stage.vector.size != job.vector_length:
            raise ConfigurationError(
                f"the encoded update has {stage.vector.size} coordinates; the server expects {job.vector_length}"
            )
        return Contribution(vector=stage.vector, metrics={"train-seconds": train_seconds})

    return input_fn


def _shapes(layout: Layout) -> list[tuple[str | int, tuple[int, ...]]]:
    return [(entry.name, entry.shape) for entry in layout.entries]


# -- the apps -------------------------------------------------------------------------


def default_fedavg(context: Context, protocol: Protocol, clients: FlowerClients | None = None) -> FedAvg:
    """The apps' FedAvg of the digits from the run config, with ``CentralDP`` when ``dp-*`` keys set it.

    The run config must give a ``seed``: it fixes the data split and the
    partitions, on which the server and every node must agree. On a node
    (``clients`` None) the FedAvg is seeded with it; on the server it
    splits the data only, and sampling, the initial model and the DP noise
    come from the OS entropy pool (the nodes know the seed).
    """
    from securefl.fl import FedAvg, load_digits_data

    config = fedavg_config_from(context.run_config)
    if config.seed is None:
        raise ConfigurationError(
            "the run config gives no seed: the server and the nodes must agree on the data split and the "
            "partitions (set seed = <integer> in [tool.flwr.app.config] or --run-config 'seed=0')"
        )
    dp = central_dp_from(context.run_config)
    if clients is None:  # a node: the seed splits the data; its training order is its own, fresh every round
        return FedAvg(protocol, config, dp=dp, fresh_local_order=True)
    dataset = load_digits_data(seed=config.seed % 2**63)  # the nodes' split (FedAvg seeds the data this way)
    return FedAvg(protocol, dataclasses.replace(config, seed=None), dp=dp, dataset=dataset, clients=clients)


def fedavg_client_app(
    protocol: Protocol | Callable[[Context], Protocol] | None = None,
    *,
    make_fedavg: MakeFedAvg | Callable[[Context, Protocol], FedAvg] = default_fedavg,
    semi_honest_server: bool = False,
) -> ClientApp:
    """The ClientApp of a FedAvg federation: plays a client (or, by node config, a helper) party.

    ``protocol`` None: the node config's (``securefl-protocol`` ..., see
    :class:`SecureFLNode`), never the run config's. ``make_fedavg(context,
    protocol)`` makes the node's FedAvg (default :func:`default_fedavg`).
    """
    app = ClientApp()
    app.query("securefl")(SecureFLNode(protocol, input_fn=fedavg_input_fn(make_fedavg),
                                       semi_honest_server=semi_honest_server))
    return app


def fedavg_server_app(
    protocol: Protocol | Callable[[Context], Protocol] | None = None,
    *,
    make_fedavg: MakeFedAvg = default_fedavg,
    progress: Callable[[Any], None] | None = None,
    done: Callable[[Any, Any], None] | None = None,
    semi_honest_server: bool = False,
) -> ServerApp:
    """The ServerApp of a FedAvg federation; everything else comes from the run config.

    Run-config keys: the protocol's (see ``protocol_from_config``), the
    ``FedAvgConfig`` fields in kebab case (``seed`` required by the default
    FedAvg), the ``dp-*`` keys of :func:`central_dp_from`, ``timeout``
    (seconds per exchange, default 120), ``min-nodes`` (SuperNodes to wait
    for, default ``clients``; count the helpers too), ``discovery-wait``
    (seconds, default 120) and ``history-file`` (where to write the history
    as JSON). ``make_fedavg(context, protocol, clients)`` returns the
    server's FedAvg, which must run its rounds on ``clients`` (default
    :func:`default_fedavg`); ``done(fedavg, history)`` is called at the end.
    The protocol runs in its malicious-server mode unless ``semi_honest_server``
    (the nodes decide theirs in their own ClientApp or node config).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from flwr.common.logger import log

        config = context.run_config
        chosen = protocol(context) if callable(protocol) and not isinstance(protocol, Protocol) else protocol
        chosen = against_malicious_server(chosen or protocol_from_config(config),
                                          semi_honest_server=semi_honest_server)
        driver = FlowerDriver(grid, chosen, timeout=float(config.get("timeout", 120.0)), semi_honest_server=True)
        min_nodes = config.get("min-nodes", "")
        clients = FlowerClients(driver, min_nodes=None if min_nodes == "" else int(min_nodes),
                                wait=float(config.get("discovery-wait", 120.0)))
        fedavg = make_fedavg(context, chosen, clients)
        if fedavg.clients is not clients:
            raise ConfigurationError("make_fedavg must pass its clients on: FedAvg(..., clients=clients)")
        federation = clients.discover(fedavg)
        log(INFO, "securefl: %s over %d client SuperNode(s), helpers %s", chosen.describe(),
            len(federation.clients), federation.helpers or "none")

        def report(record: Any) -> None:
            log(INFO, "securefl: round %d accuracy %.4f included %d/%d dropped %s%s", record.round, record.accuracy,
                len(record.included), len(record.sampled), record.dropouts or "none",
                f" aborted: {record.abort_reason}" if record.aborted else "")
            if progress is not None:
                progress(record)

        history = fedavg.run(progress=report)
        history_file = config.get("history-file", "")
        if history_file:
            Path(str(history_file)).write_text(json.dumps(history.to_dict(), indent=2))
        if done is not None:
            done(fedavg, history)

    return app
