"""securefl's Flower drop-in in a real deployment: SuperLink and SuperNodes as processes, the app run with ``flwr run``.

The app (``flower_mod_app/``) is an ordinary Flower app: a ``ClientApp``
whose ``@app.train`` returns arrays and a MetricRecord, switched to
complete-graph SecAgg by ``securefl_mod`` (the protocol fixed in the client's
code; over Flower in malicious-server mode, the default), and ``FedAvg``
wrapped in ``SecureAggregation``, started with ``Strategy.start``. One
SuperLink and four client SuperNodes (partition ids 0-3), started and
stopped by this test by pid, in insecure mode on 127.0.0.1.
In round 2 the test kills partition 2's SuperNode after ``share-keys`` (it
has handed out the shares of its mask keys) and before ``masked-input``.

The updates and example counts lie on the encoding's grid (``task.py``), so
every model is compared for equality with the example-weighted mean of the
included partitions' updates, not within the general per-round bound
n_I / W x step.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from tests.integrations.flower_processes import DEPLOYMENT_MARKS, LocalFederation, wait_for  # noqa: E402

pytestmark = DEPLOYMENT_MARKS

APP = Path(__file__).parent / "flower_mod_app"
CLIENTS = 4  # malicious-server SecAgg needs t > 2n/3: four clients survive one dropout
VICTIM = 2
ROUNDS = 2
RUN_SECONDS = 300  # bound on the wait for each file the ServerApp writes (under load a phase takes ~15 s)

sys.path.insert(0, str(APP))
try:
    from securefl_mod_test import task  # noqa: E402  # the app's updates, counts and encoding
finally:
    sys.path.remove(str(APP))


def weighted_mean(partitions) -> list[np.ndarray]:
    """sum_i n_i u_i / N over ``partitions``, in float64 (exact here: see ``task.py``)."""
    total = sum(task.examples_of(p) for p in partitions)
    updates = [task.update_for(p) for p in partitions]
    return [sum(task.examples_of(p) * update[k] for p, update in zip(partitions, updates)) / total
            for k in range(len(task.SHAPES))]


def mean_loss(partitions) -> float:
    total = sum(task.examples_of(p) for p in partitions)
    return sum(task.examples_of(p) * task.train_loss_of(p) for p in partitions) / total


def assert_model(got: list, expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for array, want in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(array, dtype=np.float64), want)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    federation = LocalFederation(tmp_path_factory.mktemp("flower-mod"))
    try:
        federation.start_superlink()
        for partition in range(CLIENTS):
            federation.start_supernode(f"client-{partition}", f"partition-id={partition}")
        yield federation
    finally:
        federation.stop()
    assert not any(process.alive() for process in federation.processes)


def test_securefl_mod_and_secure_fedavg_over_flower_exact_then_a_supernode_killed_between_phases(federation):
    assert task.ENCODING.step == 2**-8  # the grid the updates lie on
    victim = federation.nodes[f"client-{VICTIM}"]
    out = federation.root / "mod"
    out.mkdir()
    federation.run_app(APP, {"output-dir": str(out), "num-rounds": ROUNDS, "min-nodes": CLIENTS,
                             "pause-after": "share-keys", "pause-round": 2})

    # Round 2: after share-keys the victim has handed out shares of its mask keys; kill it before masked-input.
    paused = wait_for(out / "paused", timeout=RUN_SECONDS, federation=federation)
    assert paused.read_text() == "share-keys 2"
    victim.kill()
    deadline = time.monotonic() + 10
    while victim.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not victim.alive()
    (out / "resume").write_text("go")

    outcome = json.loads(wait_for(out / "result.json", timeout=RUN_SECONDS, federation=federation).read_text())
    assert "error" not in outcome, f"{outcome['error']}\n{federation.logs_tail()}"
    everyone, survivors = list(range(CLIENTS)), [p for p in range(CLIENTS) if p != VICTIM]
    print("per-phase seconds:", outcome["phases"])
    assert "consistency-check" in {entry["phase"] for entry in outcome["phases"]}  # malicious server: the default
    first, second = outcome["reports"]
    assert outcome["helpers"] == []
    for report in (first, second):  # partition ids, in node-id order: compare them sorted
        for key in ("sampled", "acknowledged", "included"):
            report[key] = sorted(report[key], key=str)

    # Round 1: every client trained, acknowledged and was summed; FedAvg's model is x0 + sum n_i u_i / N, exactly.
    assert first["sampled"] == first["acknowledged"] == first["included"] == everyone
    assert first["dropped"] == {} and first["errors"] == {} and first["aborted"] is None
    assert first["examples"] == first["weight_total"] == sum(map(task.examples_of, everyone))
    assert first["clipped_coordinates"] == 0
    initial = task.initial_arrays()
    assert_model(outcome["models"]["0"], initial)
    after_one = [x + u for x, u in zip(initial, weighted_mean(everyone))]
    assert_model(outcome["models"]["1"], after_one)
    assert outcome["train_metrics"]["1"]["train_loss"] == pytest.approx(mean_loss(everyone), abs=2**-20)

    # Round 2: the victim acknowledged (it trained), then stopped answering at masked-input; the survivors'
    # masks of it were removed with its shares, and the model is x1 + the survivors' weighted mean, exactly.
    assert second["sampled"] == second["acknowledged"] == everyone
    assert second["dropped"] == {str(VICTIM): "masked-input"}
    assert second["included"] == survivors
    assert set(second["errors"]) <= {str(VICTIM)} and second["aborted"] is None  # its timeout, if stated
    assert second["examples"] == second["weight_total"] == sum(map(task.examples_of, survivors))
    after_two = [x + u for x, u in zip(after_one, weighted_mean(survivors))]
    assert_model(outcome["models"]["2"], after_two)
    assert_model(outcome["final"], after_two)
    assert not all(np.array_equal(a, b) for a, b in zip(after_two, [x + u for x, u in zip(after_one,
                                                                                           weighted_mean(everyone))]))
    assert outcome["train_metrics"]["2"]["train_loss"] == pytest.approx(mean_loss(survivors), abs=2**-20)
    assert outcome["train_metrics"]["2"]["train_loss"] != pytest.approx(mean_loss(everyone), abs=1e-3)
