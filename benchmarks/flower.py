"""One Flower app's round four ways: Flower's SecAggPlusWorkflow, securefl's SecAgg+ drop-in (semi-honest and
against a malicious server), no secure aggregation.

Workload (defaults): 10 virtual SuperNodes in Flower's Ray simulation engine,
a model of 100,000 float32 parameters, 4 rounds, no training: each client
returns the arrays it received plus a fixed random update of its partition
(N(0, 0.1), 10 examples), so a round is the model down to every client, the
replies (masked or not) back, and the server's aggregation. Sides:

* ``flower`` -- Flower's own secure aggregation on the legacy API: a
  ``NumPyClient`` behind ``ClientApp(mods=[secaggplus_mod])``, the server
  ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=k + 1,
  reconstruction_threshold=t, clipping_range=1.0))`` with the legacy
  ``FedAvg``; a round is the fit workflow (configure_fit, its four stages,
  aggregate_fit).
* ``securefl`` -- securefl's drop-in on the Message API: an ordinary
  ``@app.train`` ClientApp returning ``{"arrays": ArrayRecord, "metrics":
  MetricRecord({"num-examples": n})}`` behind ``ClientApp(mods=[securefl_mod(
  SecAgg(neighbors=k, threshold=t, encoding=Encoding(clip=1.0)))])``, the
  server ``SecureAggregation(FedAvg(fraction_train=1.0,
  fraction_evaluate=0.0, min_available_nodes=n), protocol,
  timeout=600).start(...)``; k + 1 shares per client (itself included), as
  in Flower, and ``semi_honest_server=True`` on both sides: the threat model
  of Flower's SecAgg+, which trusts the server to follow the protocol.
* ``securefl-malicious`` -- the same drop-in in its default over Flower,
  malicious-server mode (``SecAgg(neighbors=k, malicious_server=True)``, the
  smallest threshold above 2(k+1)/3): signed keys, the coins that draw the
  graph (one more exchange) and the consistency check (one more).
* ``plain`` -- the same Message-API ClientApp and ``FedAvg`` without secure
  aggregation (no mod, no wrapper).
* ``driver`` (only with ``--only driver``) -- securefl's low-level
  ``FlowerDriver.aggregate`` with ``make_client_app``: the global model
  attached to the first protocol message, then the decoded mean.

For ``securefl`` and ``plain`` a round is the time from the strategy's
``configure_train`` to the end of its ``aggregate_train`` (``Strategy.start``
calls them around ``grid.send_and_receive``; the evaluation that follows is
skipped, ``fraction_evaluate=0``): the same span as Flower's fit workflow.
Every side runs under ``flwr.simulation.run_simulation`` with the same
backend settings, in a fresh child process (its own Ray instance). The
report gives every round, the median of the rounds after the first (warm),
the process wall time, the ratios of the warm medians, and per side the
largest deviation of the final model from the mean of the updates computed
in the clear; for ``securefl`` and ``plain`` also each round's split into
the train exchange and ``aggregate_train``, for ``securefl`` each protocol
phase's wall time, the engines' seconds and the bytes per client. A side
that did not aggregate all n clients in every round, or whose model is off
by more than the quantisation allows, fails the run.

    python benchmarks/flower.py                          # 10 clients, k = 4, t = 3, all four sides
    python benchmarks/flower.py --neighbors 9 --threshold 6   # complete graph
    python benchmarks/flower.py --clients 100 --neighbors 10 --threshold 6 --only securefl
    python benchmarks/flower.py --only driver            # securefl's low-level FlowerDriver

Prints JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import emit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = 10  # every client's "num-examples": equal weights, the mean of the updates
SIDES = {  # CLI name -> JSON key, what one round's time covers
    "flower": ("flower_secaggplus", "Flower SecAggPlusWorkflow fit workflow: configure_fit, setup, share keys, "
               "collect masked vectors (model down, masked update up), unmask, aggregate_fit"),
    "securefl": ("securefl", "SecureAggregation configure_train .. aggregate_train: train message with the model "
                 "down, acknowledgements up, then the SecAgg+ phases and the release inside aggregate_train "
                 "(semi-honest server)"),
    "securefl-malicious": ("securefl_malicious", "as securefl, in malicious-server mode (the default over Flower): "
                           "+ commit-coins and consistency-check"),
    "plain": ("plain", "FedAvg configure_train .. aggregate_train: model down, trained arrays up, weighted mean"),
    "driver": ("securefl_driver", "FlowerDriver.aggregate with the model attached to the first protocol message, "
               "then decoding"),
}
DEFAULT_SIDES = ("flower", "plain", "securefl", "securefl-malicious")


def _update(partition: int, parameters: int) -> np.ndarray:
    return np.random.default_rng(partition).normal(0.0, 0.1, parameters).astype(np.float32)


def _backend(clients: int) -> dict:
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}


def _expected_model(args: argparse.Namespace) -> np.ndarray:
    """The model after ``--rounds`` rounds of mean_p(received + update_p), in float64 and in the clear."""
    updates = np.stack([_update(p, args.parameters).astype(np.float64) for p in range(args.clients)])
    return args.rounds * updates.mean(axis=0)


# -- (b), (c): the Message-API app, with and without securefl -------------------------------------


def _message_client_app(args: argparse.Namespace, mods: list):
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=mods)
    parameters = args.parameters

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        received = msg.content["arrays"]["model"].numpy()
        trained = received + _update(int(context.node_config["partition-id"]), parameters)
        content = RecordDict({"arrays": ArrayRecord({"model": Array(trained)}),
                              "metrics": MetricRecord({"num-examples": EXAMPLES})})
        return Message(content=content, reply_to=msg)

    return app


def _timed(base: type, log: dict) -> type:
    """``base`` (a Message-API strategy) recording each round's configure_train .. aggregate_train in ``log``."""

    class Timed(base):
        def configure_train(self, server_round, arrays, config, grid):
            self._round_started = time.perf_counter()
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            aggregating = time.perf_counter()
            result = super().aggregate_train(server_round, replies)
            done = time.perf_counter()
            log["round_seconds"].append(done - self._round_started)
            log["aggregate_train_seconds"].append(done - aggregating)
            log["replies"].append(sum(1 for reply in replies if not reply.has_error()))
            return result

    Timed.__name__ = Timed.__qualname__ = f"Timed{base.__name__}"
    return Timed


def _protocol_figures(metrics: dict) -> dict:
    """The driver's per-round metrics, compact: the server engine's seconds per phase, the clients' mean, bytes."""
    phases = metrics.get("seconds_per_phase_per_party", {})
    return {"server_seconds_per_phase": {phase: parties.get("server", 0.0) for phase, parties in phases.items()},
            "client_engine_seconds_mean": metrics.get("client_seconds_mean"),
            "client_encode_seconds_mean": metrics.get("client_encode_seconds_mean"),
            "bytes_up_per_client": metrics.get("bytes_up_per_client"),
            "bytes_down_per_client": metrics.get("bytes_down_per_client")}


def run_message_api(args: argparse.Namespace, *, secure: bool, malicious: bool = False) -> dict:
    from flwr.app import Array, ArrayRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from securefl.encoding import Encoding
    from securefl.integrations.flower import SecureAggregation, securefl_mod
    from securefl.protocols.secagg import SecAgg

    protocol = SecAgg(neighbors=args.neighbors, threshold=None if malicious else args.threshold,
                      malicious_server=malicious, encoding=Encoding(clip=1.0))
    trust = {"semi_honest_server": not malicious}
    log: dict = {"round_seconds": [], "aggregate_train_seconds": [], "replies": []}
    outcome: dict = {}
    phase_walls: dict[int, dict[str, float]] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        fedavg = dict(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=args.clients)
        if secure:
            options = {}
            if "on_phase_end" in inspect.signature(SecureAggregation).parameters:  # each phase's wall time
                options["on_phase_end"] = lambda end: phase_walls.setdefault(end.round, {}).__setitem__(
                    end.phase, end.seconds)
            strategy = _timed(SecureAggregation, log)(FedAvg(**fedavg), protocol, timeout=600, **options, **trust)
        else:
            strategy = _timed(FedAvg, log)(**fedavg)
        initial = ArrayRecord({"model": Array(np.zeros(args.parameters, dtype=np.float32))})
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=args.rounds)
        outcome["model"] = result.arrays["model"].numpy()
        if secure:
            outcome["aggregated"] = [len(report.included) if report.aborted is None else 0
                                     for report in strategy.reports]
            outcome["aborted"] = [report.aborted for report in strategy.reports if report.aborted is not None]
            outcome["secure_aggregation_seconds"] = [report.seconds for report in strategy.reports]
            outcome["protocol_per_round"] = [
                {**({"phase_wall_seconds": phase_walls[report.round]} if report.round in phase_walls else {}),
                 **_protocol_figures(report.protocol_metrics)}
                for report in strategy.reports
            ]
        else:
            outcome["aggregated"] = list(log["replies"])

    client = _message_client_app(args, [securefl_mod(protocol, **trust)] if secure else [])
    run_simulation(server, client, num_supernodes=args.clients, backend_config=_backend(args.clients))
    model = outcome["model"]
    expected = _expected_model(args)
    return {**log, "aggregated": outcome["aggregated"], "aborted": outcome.get("aborted", []),
            **({key: outcome[key] for key in ("secure_aggregation_seconds", "protocol_per_round")} if secure else {}),
            "max_abs_error": float(np.max(np.abs(model.astype(np.float64) - expected))),
            "error_bound": args.rounds * protocol.encoding.step if secure else 1e-5}


# -- (a): Flower's SecAggPlusWorkflow --------------------------------------------------------------


def run_flower(args: argparse.Namespace) -> dict:
    from flwr.app import Context
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    seconds: list[float] = []
    aggregated: list[int] = []
    models: list[np.ndarray] = []
    clipping_range = 1.0

    class CountingFedAvg(FedAvg):
        """FedAvg that records how many clients' results each round aggregated, and the model."""

        def aggregate_fit(self, server_round, results, failures):
            aggregated.append(len(results))
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            if parameters is not None:
                models.append(parameters_to_ndarrays(parameters)[0])
            return parameters, metrics

    parameters = args.parameters

    class Client(NumPyClient):
        def __init__(self, partition: int) -> None:
            self.partition = partition

        def get_parameters(self, config):
            return [np.zeros(parameters, dtype=np.float32)]

        def fit(self, received, config):
            return [received[0] + _update(self.partition, parameters)], EXAMPLES, {}

    def client_fn(context: Context):
        return Client(int(context.node_config["partition-id"])).to_client()

    client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    secagg = SecAggPlusWorkflow(num_shares=args.neighbors + 1, reconstruction_threshold=args.threshold,
                                clipping_range=clipping_range)

    def timed_fit(grid: Grid, context) -> None:
        started, before = time.perf_counter(), len(aggregated)
        secagg(grid, context)
        seconds.append(time.perf_counter() - started)
        if len(aggregated) == before:  # the workflow halted before aggregate_fit
            aggregated.append(0)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = CountingFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.clients,
                                  min_available_clients=args.clients)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=args.rounds), strategy=strategy)
        DefaultWorkflow(fit_workflow=timed_fit)(grid, legacy)

    run_simulation(server, client, num_supernodes=args.clients, backend_config=_backend(args.clients))
    error = float(np.max(np.abs(models[-1].astype(np.float64) - _expected_model(args)))) if models else float("inf")
    # secaggplus_mod scales the parameters by num_examples / max_weight (10 / 1000), clips them to
    # [-clip, clip] and rounds them stochastically to quantization_range = 2^22 levels over that interval:
    # at most one level, 2 clip / 2^22 / (10 / 1000) in parameter units, per round of the mean.
    unit = 2 * clipping_range / 2**22 / (EXAMPLES / 1000.0)
    return {"round_seconds": seconds, "aggregated": aggregated, "aborted": [], "max_abs_error": error,
            "error_bound": args.rounds * unit + 1e-5}


# -- the low-level driver (--only driver) --------------------------------------------------------


def run_driver(args: argparse.Namespace) -> dict:
    from flwr.app import Array, ArrayRecord, Context, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from securefl.encoding import Encoding
    from securefl.integrations.flower import Contribution, FlowerDriver, Job, make_client_app
    from securefl.protocols.secagg import SecAgg

    protocol = SecAgg(neighbors=args.neighbors, threshold=args.threshold, encoding=Encoding(clip=1.0))
    seconds: list[float] = []
    aggregated: list[int] = []
    means: list[np.ndarray] = []
    model = np.zeros(args.parameters, dtype=np.float32)
    parameters = args.parameters

    def input_fn(job: Job) -> Contribution:
        assert "model" in job.message.content.array_records  # the global model came down
        update = _update(job.partition, parameters)
        rng = np.random.default_rng()
        return Contribution(vector=job.protocol.encoding.encode(update, weight=EXAMPLES, rng=rng))

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        driver = FlowerDriver(grid, protocol, timeout=600, poll_interval=0.1, semi_honest_server=True)
        federation = driver.discover(min_nodes=args.clients, wait=120)
        record = ArrayRecord({"model": Array(model)})
        for round in range(args.rounds):
            started = time.perf_counter()
            aggregation = driver.aggregate(
                federation.clients, vector_length=args.parameters + 1, round=round,
                extra=lambda node, index: RecordDict({"model": record}),
            )
            result = aggregation.result()
            mean = result.total / result.weight_total
            seconds.append(time.perf_counter() - started)
            aggregated.append(len(result.included))
            means.append(mean)

    run_simulation(server, make_client_app(protocol, input_fn=input_fn, semi_honest_server=True),
                   num_supernodes=args.clients,
                   backend_config=_backend(args.clients))
    expected = np.mean([_update(p, args.parameters).astype(np.float64) for p in range(args.clients)], axis=0)
    error = max((float(np.max(np.abs(mean - expected))) for mean in means), default=float("inf"))
    return {"round_seconds": seconds, "aggregated": aggregated, "aborted": [], "max_abs_error": error,
            "error_bound": protocol.encoding.step}


# -- the parent -----------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    runs = {"flower": run_flower, "driver": run_driver,
            "securefl": lambda a: run_message_api(a, secure=True),
            "securefl-malicious": lambda a: run_message_api(a, secure=True, malicious=True),
            "plain": lambda a: run_message_api(a, secure=False)}
    Path(args.output).write_text(json.dumps(runs[args.child](args)))


def run_side(name: str, args: argparse.Namespace) -> dict:
    """One side's rounds in a fresh child process (its own Ray instance); ``args`` as the CLI's."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "side.json"
        command = [sys.executable, __file__, "--child", name, "--output", str(output),
                   "--clients", str(args.clients), "--parameters", str(args.parameters), "--rounds", str(args.rounds),
                   "--neighbors", str(args.neighbors), "--threshold", str(args.threshold)]
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_DEDUP_LOGS": "1",
               "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path}
        started = time.perf_counter()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - started
        if completed.returncode != 0 or not output.exists():
            raise RuntimeError(f"{name} run failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
        side = json.loads(output.read_text())
    rounds = side["round_seconds"]
    if len(rounds) != args.rounds or side["aggregated"] != [args.clients] * args.rounds:
        hint = " (Flower's SecAgg+ needs an odd number of shares, k + 1)" if name == "flower" else ""
        raise RuntimeError(f"{name}: {len(rounds)} of {args.rounds} rounds timed; clients aggregated per round "
                           f"{side['aggregated']}, not {args.clients} each{hint}; aborted: {side['aborted']}")
    if not side["max_abs_error"] <= side["error_bound"]:
        raise RuntimeError(f"{name}: the final model is {side['max_abs_error']:.3g} off the mean of the updates "
                           f"(bound {side['error_bound']:.3g})")
    warm = rounds[1:] or rounds
    figures = {"round": SIDES[name][1], "round_seconds": rounds, "median_warm_round_seconds": statistics.median(warm),
               "process_wall_seconds": wall, "clients_aggregated_per_round": side["aggregated"],
               "max_abs_error_vs_clear_mean": side["max_abs_error"], "error_bound": side["error_bound"]}
    if "aggregate_train_seconds" in side:  # configure_train + send_and_receive: the train exchange
        figures["train_exchange_seconds"] = [total - aggregate for total, aggregate in
                                             zip(rounds, side["aggregate_train_seconds"])]
    for extra in ("aggregate_train_seconds", "secure_aggregation_seconds", "protocol_per_round"):
        if extra in side:
            figures[extra] = side[extra]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--parameters", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--neighbors", type=int, default=4, help="k: each client masks with k others (k+1 shares)")
    parser.add_argument("--threshold", type=int, default=3, help="t: shares needed to reconstruct a secret")
    parser.add_argument("--only", choices=tuple(SIDES), default=None, help="one side (default: all but driver)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per side's child process")
    parser.add_argument("--child", choices=tuple(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    import flwr

    sides = [args.only] if args.only else list(DEFAULT_SIDES)
    figures: dict = {
        "benchmark": "one training round of the same Flower app in Flower's simulation engine (Ray): Flower's "
                     "SecAggPlusWorkflow, securefl's SecAgg+ drop-in (securefl_mod + SecureAggregation; semi-honest "
                     "and malicious-server mode), plain FedAvg",
        "workload": {"clients": args.clients, "parameters": args.parameters, "dtype": "float32",
                     "rounds": args.rounds, "neighbors": args.neighbors, "shares_per_client": args.neighbors + 1,
                     "threshold": args.threshold, "clip": 1.0, "num_examples_per_client": EXAMPLES,
                     "training": "none (received arrays + a fixed N(0, 0.1) update per partition)",
                     "backend_config": _backend(args.clients)},
        "flwr": flwr.__version__,
        "command": " ".join(["python", "benchmarks/flower.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
    }
    for side in sides:
        figures[SIDES[side][0]] = run_side(side, args)

    def ratio(numerator: str, denominator: str) -> None:
        if numerator in figures and denominator in figures:
            figures[f"{numerator}_over_{denominator}"] = (
                figures[numerator]["median_warm_round_seconds"] / figures[denominator]["median_warm_round_seconds"]
            )

    ratio("flower_secaggplus", "securefl")
    ratio("securefl_malicious", "securefl")
    ratio("securefl", "plain")
    ratio("flower_secaggplus", "plain")
    emit(figures)


if __name__ == "__main__":
    main()
