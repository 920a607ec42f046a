"""FedAvg of :mod:`securefl.fl` over Flower: training on the SuperNodes, the update through the protocol.

Round r, as in process, but with each step where it belongs:

* server (ServerApp): ``_sample_clients(r)`` picks data partitions; the
  driver maps each to the SuperNode whose node config has that
  ``partition-id`` (a partition with no node is a dropout) and sends it the
  global model with the first protocol message;
* node (ClientApp): ``_local_update(partition, w, round=r)`` trains on the
  node's own partition, ``_weights([n])`` gives its weight, the protocol's
  encoding quantises ``w * u`` (the weight travels inside the secure sum),
  and the client engine answers the phases;
* server: ``_aggregate`` turns the protocol's result into the mean update
  (DP-FedAvg adds its noise and charges its accountant here, unchanged),
  ``_apply`` and ``_evaluate`` as in process.

The same FedAvg class (or subclass, e.g. ``securefl.fl.dp.DPFedAvg``) runs on
both sides: the server mixes in :class:`FlowerRounds`, the node builds a plain
instance with the same configuration (same seed, so the same partition) and
calls its local-training steps. What differs from the in-process record:
``weights`` is empty and ``server_saw_individual_updates``,
``clipped_fraction`` and ``l2_clip_fraction`` are not reported, since the
server never holds an individual update or weight (reporting them would leak
them); the weight of a client whose sample count exceeds the encoding's
``max_weight`` is clamped to ``max_weight`` (in process it is scaled by the
round's largest count, which no node knows); ``FedAvgConfig.dropout`` must be
0 (dropouts are real ones).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from logging import INFO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ArrayRecord, Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from securefl.errors import ConfigurationError, ProtocolAbort
from securefl.integrations.flower.binding import protocol_from_config
from securefl.integrations.flower.node import Contribution, Job, SecureFLNode
from securefl.integrations.flower.server import FlowerAggregation, FlowerDriver
from securefl.protocols.base import Protocol
from securefl.simulation import AggregationResult

if TYPE_CHECKING:
    # Type-checking only: securefl.fl needs torch, which this module imports on first use.
    from securefl.fl import FedAvg, FedAvgConfig, RoundRecord
    from securefl.fl.dp import CentralDP, DPFedAvg

    _MixinBase = FedAvg
else:
    _MixinBase = object

__all__ = [
    "MODEL_KEY",
    "FlowerRounds",
    "FlowerFedAvg",
    "FlowerDPFedAvg",
    "fedavg_config_from",
    "central_dp_from",
    "fedavg_input_fn",
    "fedavg_server_app",
    "fedavg_client_app",
]

MODEL_KEY = "securefl.model"


def fedavg_config_from(run_config: Mapping[str, Any]) -> FedAvgConfig:
    """A ``FedAvgConfig`` from the run config's kebab-case keys (``local-epochs``, ``lr``, ...)."""
    from securefl.fl import FedAvgConfig

    fields = {f.name for f in dataclasses.fields(FedAvgConfig)}
    values = {key.replace("-", "_"): value for key, value in run_config.items() if value != ""}
    return FedAvgConfig(**{key: value for key, value in values.items() if key in fields})


class FlowerRounds(_MixinBase):
    """Mixin for a ``FedAvg`` (sub)class: its rounds run over Flower (see the module docstring).

    ``class FlowerFedAvg(FlowerRounds, FedAvg)``; for DP-FedAvg,
    ``class FlowerDPFedAvg(FlowerRounds, DPFedAvg)``. Call :meth:`attach`
    with a :class:`FlowerDriver` before ``run()``.
    """

    def attach(self, driver: FlowerDriver, *, min_nodes: int | None = None, wait: float = 120.0) -> None:
        """Use ``driver`` for the rounds; discover the SuperNodes (at least ``min_nodes``, default ``clients``)."""
        if self.config.dropout != 0:
            raise ConfigurationError(
                f"dropout={self.config.dropout}: over Flower dropouts are real ones; leave FedAvgConfig.dropout at 0"
            )
        if driver.protocol != self.protocol:
            raise ConfigurationError("the driver runs another protocol than this FedAvg")
        self._driver = driver
        driver.discover(min_nodes=self.config.clients if min_nodes is None else min_nodes, wait=wait)
        self._vector_length = sum(int(v.numel()) for v in self.initial_state.values()) + 1
        self.last_aggregation: FlowerAggregation | None = None

    def _sample_dropouts(self, sampled: Sequence[int]) -> dict[int, str]:
        return {}

    def _secure_sum(
        self, updates: Sequence[np.ndarray], weights: Sequence[int], round: int, *, dropouts: Mapping[int, str]
    ) -> AggregationResult:
        """The round's aggregation over Flower (the updates are on the nodes, not here)."""
        nodes, extra = self._flower_round
        aggregation = self._driver.aggregate(nodes, vector_length=self._vector_length, round=round, extra=extra)
        self.last_aggregation = aggregation
        return aggregation.result()

    def _round(self, round: int) -> RoundRecord:
        from securefl.fl import RoundRecord

        if getattr(self, "_driver", None) is None:
            raise ConfigurationError("call attach(driver) before run()")
        started = time.perf_counter()
        sampled = self._sample_clients(round)
        federation = self._driver.federation
        if federation is None:
            raise ConfigurationError("call attach(driver) before run(): no federation was discovered")
        nodes = [federation.node_for_partition(partition) for partition in sampled]
        model = ArrayRecord(torch_state_dict=dict(self.global_state))
        self._flower_round = (nodes, lambda node, index: RecordDict({MODEL_KEY: model}))
        self.last_aggregation = None
        self._driver.last_dropped = {}

        result: AggregationResult | None = None
        abort_reason: str | None = None
        try:
            # The updates are on the nodes; the in-process steps only need one entry per sampled client.
            placeholders: list[Any] = [None] * len(sampled)
            mean_update, result = self._aggregate(placeholders, [], round, dropouts={})
        except ProtocolAbort as abort:
            abort_reason = str(abort)
        else:
            self.global_state = self._apply(self.global_state, mean_update)
        accuracy, loss = self._evaluate(self.global_state)

        aggregation: FlowerAggregation | None = self.last_aggregation  # set by _secure_sum, if it ran
        metrics = result.metrics if result is not None else {}
        first_phase = self._driver.protocol.phases[0]
        dropouts = {partition: first_phase for partition, node in zip(sampled, nodes) if node is None}
        node_partition = dict(zip(nodes, sampled))
        dropouts.update({node_partition[node]: phase for node, phase in self._driver.last_dropped.items()
                         if node in node_partition})
        node_metrics = list(aggregation.node_metrics.values()) if aggregation is not None else []
        train = [m["train-seconds"] for m in node_metrics if "train-seconds" in m]
        inputs = [m["input-seconds"] for m in node_metrics if "input-seconds" in m]
        train_mean = float(np.mean(train)) if train else 0.0
        input_mean = float(np.mean(inputs)) if inputs else 0.0
        extras = dict(self._round_extras())
        if "l2_clip_fraction" in extras:
            extras["l2_clip_fraction"] = None  # measured on the nodes, never reported to the server
        return RoundRecord(
            round=round,
            accuracy=accuracy,
            loss=loss,
            sampled=tuple(sampled),
            included=tuple(sampled[i] for i in result.included) if result is not None else (),
            dropped=len(dropouts),
            dropouts=dict(sorted(dropouts.items())),
            aborted=abort_reason is not None,
            abort_reason=abort_reason,
            weights=(),
            bytes_up_per_client=float(metrics.get("bytes_up_per_client", 0.0)),
            bytes_down_per_client=float(metrics.get("bytes_down_per_client", 0.0)),
            client_seconds=input_mean + float(metrics.get("client_seconds_mean", 0.0)),
            client_train_seconds=train_mean,
            server_seconds=float(metrics.get("server_seconds", 0.0)),
            seconds=time.perf_counter() - started,
            server_saw_individual_updates=None,
            clipped_fraction=math.nan,
            **extras,
        )


@functools.cache
def _fedavg_classes() -> dict[str, type]:
    from securefl.fl import FedAvg
    from securefl.fl.dp import DPFedAvg

    class FlowerFedAvg(FlowerRounds, FedAvg):
        """FedAvg whose rounds run over Flower (see :mod:`securefl.integrations.flower.fedavg`)."""

    class FlowerDPFedAvg(FlowerRounds, DPFedAvg):
        """DP-FedAvg over Flower: L2 clipping on the nodes, noise and accountant on the server."""

    classes = {"FlowerFedAvg": FlowerFedAvg, "FlowerDPFedAvg": FlowerDPFedAvg}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = __name__, name
    return classes


def __getattr__(name: str) -> Any:
    # The FedAvg classes need torch (through securefl.fl). They are made on first use so
    # that a ClientApp process, started anew for every message, imports torch only when
    # it trains, not for every protocol phase.
    if name in ("FlowerFedAvg", "FlowerDPFedAvg"):
        classes = _fedavg_classes()
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # made by _fedavg_classes on first use (see __getattr__)

    class FlowerFedAvg(FlowerRounds, FedAvg): ...

    class FlowerDPFedAvg(FlowerRounds, DPFedAvg): ...


def central_dp_from(run_config: Mapping[str, Any]) -> CentralDP | None:
    """``CentralDP`` from ``dp-noise-multiplier`` (or ``dp-epsilon``, calibrated over ``rounds``),
    ``dp-clip``, ``dp-sample-rate``, ``dp-delta``, ``dp-accountant``; None when neither is set
    (an empty string is unset)."""
    from securefl.fl.dp import CentralDP

    options = {
        key[3:].replace("-", "_"): value for key, value in run_config.items() if key.startswith("dp-") and value != ""
    }
    if "noise_multiplier" not in options and "epsilon" not in options:
        return None
    if "epsilon" in options:
        epsilon = options.pop("epsilon")
        options.pop("noise_multiplier", None)
        return CentralDP.for_target(epsilon=epsilon, rounds=int(run_config.get("rounds", 20)),
                                    delta=options.pop("delta", 1e-5), **options)
    return CentralDP(**options)


# -- the node side ------------------------------------------------------------------

def fedavg_input_fn(make_fedavg: Callable[[Context, Protocol], Any]) -> Callable[[Job], Contribution]:
    """An input function that trains ``make_fedavg(context, protocol)`` on the node's partition.

    The FedAvg object is made once per process (the digits data set and the
    partition are rebuilt from the seed). Its ``_local_update`` and
    ``_weights`` steps run here; the update is encoded with fresh OS
    randomness for the stochastic rounding.
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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            started = time.perf_counter()
            update, count = fedavg._local_update(partition, state, round=job.round)
            train_seconds = time.perf_counter() - started
        finally:
            torch.set_num_threads(threads)
        weight = fedavg._weights([count])[0]
        encoding = job.protocol.encoding
        warn_clipped(clipped=encoding.count_clipped(update), coordinates=int(np.size(update)), clip=encoding.clip)
        vector = encoding.encode(update, weight=weight, rng=np.random.default_rng())
        if vector.size != job.vector_length:
            raise ConfigurationError(
                f"the model has {vector.size - 1} parameters; the server expects {job.vector_length - 1}"
            )
        return Contribution(vector=vector, metrics={"train-seconds": train_seconds})

    return input_fn


def _default_node_fedavg(context: Context, protocol: Protocol) -> FedAvg:
    """FedAvg, or DPFedAvg when the run config sets ``dp-noise-multiplier`` or ``dp-epsilon``."""
    from securefl.fl import FedAvg
    from securefl.fl.dp import DPFedAvg

    config = fedavg_config_from(context.run_config)
    dp = central_dp_from(context.run_config)
    return FedAvg(protocol, config) if dp is None else DPFedAvg(protocol, config, dp=dp)


def _default_server_fedavg(context: Context, protocol: Protocol) -> FlowerRounds:
    config = fedavg_config_from(context.run_config)
    dp = central_dp_from(context.run_config)
    classes = _fedavg_classes()
    if dp is None:
        return classes["FlowerFedAvg"](protocol, config)
    return classes["FlowerDPFedAvg"](protocol, config, dp=dp)


def fedavg_client_app(
    protocol: Protocol | Callable[[Context], Protocol] | None = None,
    *,
    make_fedavg: Callable[[Context, Protocol], Any] = _default_node_fedavg,
) -> ClientApp:
    """The ClientApp of a FedAvg federation: plays a client (or, by node config, a helper) party."""
    app = ClientApp()
    app.query("securefl")(SecureFLNode(protocol, input_fn=fedavg_input_fn(make_fedavg)))
    return app


def fedavg_server_app(
    protocol: Protocol | Callable[[Context], Protocol] | None = None,
    *,
    make_fedavg: Callable[[Context, Protocol], Any] | None = None,
    progress: Callable[[Any], None] | None = None,
    done: Callable[[Any, Any], None] | None = None,
) -> ServerApp:
    """The ServerApp of a FedAvg federation; everything else comes from the run config.

    Run-config keys: the protocol's (see ``protocol_from_config``), the
    ``FedAvgConfig`` fields in kebab case, ``timeout`` (seconds per
    exchange, default 120), ``min-nodes`` (SuperNodes to wait for, default
    ``clients``; count the helpers too), ``discovery-wait`` (seconds,
    default 120) and ``history-file`` (where to write the history as JSON).
    ``make_fedavg(context, protocol)`` returns the server's FedAvg, whose
    class must mix in :class:`FlowerRounds` (default ``FlowerFedAvg``, or
    ``FlowerDPFedAvg`` when the run config sets ``dp-noise-multiplier`` or
    ``dp-epsilon``, see :func:`central_dp_from`); ``done(fedavg, history)``
    is called at the end.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from flwr.common.logger import log

        config = context.run_config
        chosen = protocol(context) if callable(protocol) and not isinstance(protocol, Protocol) else protocol
        chosen = chosen or protocol_from_config(config)
        fedavg = (make_fedavg or _default_server_fedavg)(context, chosen)
        if not isinstance(fedavg, FlowerRounds):
            raise ConfigurationError("make_fedavg must return a FedAvg that mixes in FlowerRounds")
        driver = FlowerDriver(grid, chosen, timeout=float(config.get("timeout", 120.0)))
        min_nodes = config.get("min-nodes", "")
        fedavg.attach(driver, min_nodes=None if min_nodes == "" else int(min_nodes),
                      wait=float(config.get("discovery-wait", 120.0)))
        federation = driver.federation
        if federation is None:
            raise ConfigurationError("call attach(driver) before run(): no federation was discovered")
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
