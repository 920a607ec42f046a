"""securefl's SecAgg+ over Flower vs Flower's own SecAggPlusWorkflow, on the same simulation workload.

Workload (defaults): 10 virtual SuperNodes in Flower's Ray simulation engine,
100,000 float32 parameters per client, one secure aggregation per round. The
clients do no training (each returns a fixed random update), so a round is
the aggregation itself: the global model down to every client, the update
quantised and masked, the protocol's phases, the server's unmasked sum.

* Flower: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=k + 1,
  reconstruction_threshold=t))`` with ``secaggplus_mod`` on the ClientApp; the
  figure is the time of the fit workflow of one round.
* securefl: ``FlowerDriver.aggregate`` with ``SecAgg(neighbors=k,
  threshold=t)`` (k + 1 shares per client, itself included, as in Flower),
  the global model attached to the first message, then the decoded mean;
  the figure is that call plus decoding.

Both run under ``flwr.simulation.run_simulation`` with the same backend
settings, each in a fresh child process (its own Ray instance), for
``--rounds`` rounds; the report gives every round and the median of the
rounds after the first (warm). ``--clients 100`` gives the scale figure.

    python benchmarks/flower.py                          # 10 clients, k = 4, t = 3
    python benchmarks/flower.py --neighbors 9 --threshold 6   # complete graph
    python benchmarks/flower.py --clients 100 --neighbors 10 --threshold 6 --only securefl

Prints JSON.
"""

from __future__ import annotations

import argparse
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


def _update(partition: int, parameters: int) -> np.ndarray:
    return np.random.default_rng(partition).normal(0.0, 0.1, parameters).astype(np.float32)


def _backend(clients: int) -> dict:
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}


def run_securefl(args: argparse.Namespace) -> list[float]:
    from flwr.app import Array, ArrayRecord, Context, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from securefl.encoding import Encoding
    from securefl.integrations.flower import Contribution, FlowerDriver, Job, make_client_app
    from securefl.protocols.secagg import SecAgg

    protocol = SecAgg(neighbors=args.neighbors, threshold=args.threshold, encoding=Encoding(clip=1.0))
    seconds: list[float] = []
    model = np.zeros(args.parameters, dtype=np.float32)

    def input_fn(job: Job) -> Contribution:
        assert "model" in job.message.content.array_records  # the global model came down
        update = _update(job.partition, args.parameters)
        rng = np.random.default_rng()
        return Contribution(vector=job.protocol.encoding.encode(update, weight=10, rng=rng))

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        driver = FlowerDriver(grid, protocol, timeout=600, poll_interval=0.1)
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
            assert len(result.included) == args.clients and mean.size == args.parameters

    run_simulation(server, make_client_app(protocol, input_fn=input_fn), num_supernodes=args.clients,
                   backend_config=_backend(args.clients))
    return seconds


def run_flower(args: argparse.Namespace) -> list[float]:
    from flwr.app import Context
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    seconds: list[float | None] = []
    aggregated: list[int] = []

    class CountingFedAvg(FedAvg):
        """FedAvg that records how many clients' results each round aggregated."""

        def aggregate_fit(self, server_round, results, failures):
            aggregated.append(len(results))
            return super().aggregate_fit(server_round, results, failures)

    class Client(NumPyClient):
        def __init__(self, partition: int) -> None:
            self.update = _update(partition, args.parameters)

        def get_parameters(self, config):
            return [np.zeros(args.parameters, dtype=np.float32)]

        def fit(self, parameters, config):
            return [self.update], 10, {}

    def client_fn(context: Context):
        return Client(int(context.node_config["partition-id"])).to_client()

    client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    secagg = SecAggPlusWorkflow(num_shares=args.neighbors + 1, reconstruction_threshold=args.threshold,
                                clipping_range=1.0)

    def timed_fit(grid: Grid, context) -> None:
        started, before = time.perf_counter(), len(aggregated)
        secagg(grid, context)
        complete = len(aggregated) == before + 1 and aggregated[-1] == args.clients
        # A round that halted or lost clients has no time worth reporting: recorded as None.
        seconds.append(time.perf_counter() - started if complete else None)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = CountingFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.clients,
                          min_available_clients=args.clients)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=args.rounds), strategy=strategy)
        DefaultWorkflow(fit_workflow=timed_fit)(grid, legacy)

    run_simulation(server, client, num_supernodes=args.clients, backend_config=_backend(args.clients))
    return seconds


def _child(args: argparse.Namespace) -> None:
    seconds = run_securefl(args) if args.child == "securefl" else run_flower(args)
    Path(args.output).write_text(json.dumps(seconds))


def run_side(name: str, args: argparse.Namespace) -> dict:
    """One side's rounds in a fresh child process (its own Ray instance); ``args`` as the CLI's."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "seconds.json"
        command = [sys.executable, __file__, "--child", name, "--output", str(output),
                   "--clients", str(args.clients), "--parameters", str(args.parameters), "--rounds", str(args.rounds),
                   "--neighbors", str(args.neighbors), "--threshold", str(args.threshold)]
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_DEDUP_LOGS": "1"}
        started = time.perf_counter()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - started
        if completed.returncode != 0 or not output.exists():
            raise RuntimeError(f"{name} run failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
        rounds = json.loads(output.read_text())
    if None in rounds:
        raise RuntimeError(f"{name}: round {rounds.index(None)} did not aggregate all {args.clients} clients "
                           f"(Flower's SecAgg+ needs an odd number of shares, k + 1)")
    warm = rounds[1:] or rounds
    return {"round_seconds": rounds, "median_warm_round_seconds": statistics.median(warm),
            "process_wall_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--parameters", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--neighbors", type=int, default=4, help="k: each client masks with k others (k+1 shares)")
    parser.add_argument("--threshold", type=int, default=3, help="t: shares needed to reconstruct a secret")
    parser.add_argument("--only", choices=("securefl", "flower"), default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--child", choices=("securefl", "flower"), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    import flwr

    sides = [args.only] if args.only else ["securefl", "flower"]
    figures: dict = {
        "benchmark": "secure aggregation round in Flower's simulation engine (Ray)",
        "workload": {"clients": args.clients, "parameters": args.parameters, "rounds": args.rounds,
                     "neighbors": args.neighbors, "shares_per_client": args.neighbors + 1,
                     "threshold": args.threshold, "training": "none (fixed update per client)"},
        "flwr": flwr.__version__,
        "command": " ".join(["python", "benchmarks/flower.py", *sys.argv[1:]]),
    }
    for side in sides:
        figures[side] = run_side(side, args)
    if len(sides) == 2:
        figures["flower_over_securefl"] = (
            figures["flower"]["median_warm_round_seconds"] / figures["securefl"]["median_warm_round_seconds"]
        )
    emit(figures)


if __name__ == "__main__":
    main()
