"""ServerApp: FedAvg wrapped in SecureAggregation, run with Strategy.start; the outcome written as JSON.

``output-dir/result.json`` holds the global arrays before round 1 and after
each round (from ``evaluate_fn``), the aggregated training metrics and, per
round, what ``SecureAggregation.reports`` says (node ids mapped to partition
ids). With ``pause-after = "<phase>"`` the ServerApp stops after that phase of
server round ``pause-round`` until the file ``output-dir/resume`` appears, so
the test can kill a SuperNode between two protocol phases.
"""

import json
import time
import traceback
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from securefl.integrations.flower import PhaseReport, SecureAggregation
from securefl.protocols.secagg import SecAgg
from securefl_mod_test.task import ENCODING, initial_arrays

app = ServerApp()


def _write(path: Path, outcome: dict) -> None:
    path.with_suffix(".tmp").write_text(json.dumps(outcome))
    path.with_suffix(".tmp").rename(path)


def _report(report, partition_of) -> dict:
    def partitions(nodes):
        return [partition_of(node) for node in nodes]

    return {
        "round": report.round,
        "sampled": sorted(partitions(report.sampled), key=str),
        "acknowledged": partitions(report.acknowledged),
        "included": partitions(report.included),
        "dropped": {str(partition_of(node)): phase for node, phase in report.dropped.items()},
        "errors": {str(partition_of(node)): reason for node, reason in report.errors.items()},
        "examples": report.examples,
        "weight_total": report.weight_total,
        "clipped_coordinates": report.clipped_coordinates,
        "aborted": report.aborted,
        "seconds": round(report.seconds, 2),
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    out = Path(str(config["output-dir"]))
    pause_after, pause_round = str(config["pause-after"]), int(config["pause-round"])
    min_nodes = int(config["min-nodes"])

    phases: list[dict] = []

    def on_phase_end(report: PhaseReport) -> None:
        phases.append({"round": report.round, "phase": report.phase, "seconds": round(report.seconds, 2)})
        if report.phase == pause_after and report.round == pause_round:
            (out / "paused").write_text(f"{report.phase} {report.round}")
            deadline = time.monotonic() + 120
            while not (out / "resume").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    models: dict[int, list] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> None:
        models[server_round] = [array.tolist() for array in arrays.to_numpy_ndarrays()]
        return None

    strategy = SecureAggregation(
        FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=min_nodes),
        SecAgg(encoding=ENCODING),
        timeout=float(config["timeout"]),
        on_phase_end=on_phase_end,
    )
    outcome: dict = {}
    try:
        # Every client SuperNode connected before the first round (and its discovery).
        deadline = time.monotonic() + 60
        while len(list(grid.get_node_ids())) < min_nodes and time.monotonic() < deadline:
            time.sleep(0.2)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial_arrays()),
                                num_rounds=int(config["num-rounds"]), timeout=float(config["round-timeout"]),
                                evaluate_fn=evaluate_fn)
        outcome["train_metrics"] = {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()}
        outcome["final"] = [array.tolist() for array in result.arrays.to_numpy_ndarrays()]
    except Exception as error:  # noqa: BLE001 - the test reports it with the logs
        outcome["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    federation = strategy.federation
    nodes = federation.nodes if federation is not None else {}

    def partition_of(node: int):
        info = nodes.get(node)
        return info.partition if info is not None else f"node {node}"

    outcome["models"] = {str(r): model for r, model in models.items()}
    outcome["reports"] = [_report(report, partition_of) for report in strategy.reports]
    outcome["phases"] = phases  # how long each exchange took (diagnostics)
    outcome["helpers"] = sorted(federation.helpers) if federation is not None else []
    _write(out / "result.json", outcome)
