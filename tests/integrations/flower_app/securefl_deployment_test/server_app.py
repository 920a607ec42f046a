"""ServerApp: discover the SuperNodes, run ``aggregations`` aggregations, write each outcome as JSON.

``output-dir/result-<round>.json`` holds the signed ring sum and who was
included or dropped, by partition id; ``cohort = k`` aggregates the first k
clients only. With ``pause-after = "<phase>"`` the
ServerApp stops after that phase of aggregation ``pause-round`` until the
file ``output-dir/resume`` appears, so the test can kill a SuperNode between
two protocol phases.
"""

import json
import time
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from securefl import ring
from securefl.errors import SecureFLError
from securefl.integrations.flower import FlowerDriver, PhaseReport, protocol_from_config

app = ServerApp()


def _write(path: Path, outcome: dict) -> None:
    path.with_suffix(".tmp").write_text(json.dumps(outcome))
    path.with_suffix(".tmp").rename(path)


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    out = Path(str(config["output-dir"]))
    pause_after, pause_round = str(config.get("pause-after", "")), int(config.get("pause-round", 0))
    protocol = protocol_from_config(config)

    def on_phase_end(report: PhaseReport) -> None:
        if report.phase == pause_after and report.round == pause_round:
            (out / "paused").write_text(report.phase)
            deadline = time.monotonic() + 120
            while not (out / "resume").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    try:
        driver = FlowerDriver(grid, protocol, timeout=float(config["timeout"]), on_phase_end=on_phase_end,
                              semi_honest_server=bool(config.get("semi-honest-server", False)))
        federation = driver.discover(min_nodes=int(config["min-nodes"]), wait=60)
    except SecureFLError as error:
        _write(out / "result-0.json", {"error": f"{type(error).__name__}: {error}"})
        return
    partition_of = {node: info.partition for node, info in federation.nodes.items()}
    helpers = {info.role: info.fingerprint for info in federation.nodes.values() if info.role != "client"}
    dropped_before: set[int] = set()
    cohort = int(config.get("cohort", 0)) or None
    for round in range(int(config["aggregations"])):
        outcome: dict = {"protocol": protocol.name, "phases": list(driver.protocol.phases), "round": round,
                         "helpers": helpers}
        try:
            clients = [node for node in federation.clients if node not in dropped_before][:cohort]
            aggregation = driver.aggregate(clients, vector_length=int(config["vector-length"]), round=round)
            dropped_before |= set(aggregation.dropped)
            outcome.update(
                ring_sum=[int(v) for v in ring.to_signed(aggregation.aggregate.total, protocol.encoding.ring_bits)],
                clients=[partition_of[node] for node in aggregation.nodes],
                included=[partition_of[node] for node in aggregation.included_nodes],
                dropped={str(partition_of[node]): phase for node, phase in aggregation.dropped.items()},
                errors={str(partition_of[node]): reason for node, reason in aggregation.errors.items()},
                seconds=aggregation.seconds,
                bytes_server_received=aggregation.metrics["bytes_server_received"],
            )
        except SecureFLError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"
            outcome["errors"] = {str(partition_of[node]): reason for node, reason in driver.last_errors.items()}
        _write(out / f"result-{round}.json", outcome)
