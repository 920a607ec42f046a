"""A real Flower deployment on loopback: SuperLink and SuperNodes as processes, apps submitted with ``flwr run``.

One SuperLink, four client SuperNodes (partition ids 0-3) and, for
Paillier, one ``decryptor`` SuperNode, all started and stopped by this test
by pid, in insecure mode on 127.0.0.1 (TLS is what ``docs/flower.md``
configures for real deployments); a federation per protocol, since each
node's protocol is its operator's (``--node-config 'securefl-protocol=...'``),
not the run config's. The app (``flower_app/``) aggregates fixed ring
vectors derived from each partition id, so the test knows the exact sum.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from securefl import ring  # noqa: E402
from tests.integrations.flower_processes import DEPLOYMENT_MARKS, LocalFederation, wait_for  # noqa: E402

pytestmark = DEPLOYMENT_MARKS

APP = Path(__file__).parent / "flower_app"
CLIENTS = 4
LENGTH = 64
SEED = 7
RING_BITS = 32
RUN_SECONDS = 300  # bound on the wait for each file the ServerApp writes


def client_input(partition: int) -> np.ndarray:
    import sys

    sys.path.insert(0, str(APP))
    try:
        from securefl_deployment_test.inputs import client_input as make
    finally:
        sys.path.remove(str(APP))
    return make(partition, length=LENGTH, ring_bits=RING_BITS, seed=SEED)


def plaintext_sum(partitions) -> list[int]:
    total = np.zeros(LENGTH, dtype=ring.ring_dtype(RING_BITS))
    for partition in partitions:
        ring.add(total, client_input(partition), RING_BITS)
    return [int(v) for v in ring.to_signed(total, RING_BITS)]


# Each node's own protocol (the ServerApp's comes from the run config: it must run the same to be answered).
NODE_PROTOCOLS = {
    "paillier": 'securefl-protocol="paillier" securefl-key-bits=1024 securefl-max-clients=8 '
                'securefl-semi-honest-server=true',  # Paillier has no malicious-server mode
    "secagg": 'securefl-protocol="secagg" securefl-max-clients=8',
}


@pytest.fixture(scope="module")
def federation(request, tmp_path_factory):
    protocol = request.param
    federation = LocalFederation(tmp_path_factory.mktemp(f"flower-{protocol}"))
    try:
        federation.start_superlink()
        for partition in range(CLIENTS):
            federation.start_supernode(f"client-{partition}", f"partition-id={partition} {NODE_PROTOCOLS[protocol]}")
        if protocol == "paillier":
            federation.start_supernode("decryptor", f'securefl-role="decryptor" {NODE_PROTOCOLS[protocol]}')
        yield federation
    finally:
        federation.stop()
    assert not any(process.alive() for process in federation.processes)


def run(federation: LocalFederation, name: str, **run_config) -> Path:
    out = federation.root / name
    out.mkdir()
    helpers = 1 if run_config.get("protocol") == "paillier" else 0
    settings = {"output-dir": str(out), "vector-length": LENGTH, "input-seed": SEED, "min-nodes": CLIENTS + helpers}
    federation.run_app(APP, {**settings, **run_config})
    return out


def result(federation: LocalFederation, out: Path, round: int) -> dict:
    outcome = json.loads(wait_for(out / f"result-{round}.json", timeout=RUN_SECONDS, federation=federation).read_text())
    assert "error" not in outcome, f"{outcome['error']}\n{federation.logs_tail()}"
    return outcome


@pytest.mark.parametrize("federation", ["paillier"], indirect=True)
def test_paillier_over_flower_sums_exactly_with_the_key_on_its_own_supernode(federation):
    out = run(federation, "paillier", protocol="paillier", **{"semi-honest-server": True})

    outcome = result(federation, out, 0)

    assert outcome["included"] == list(range(CLIENTS)) and outcome["dropped"] == {}
    assert outcome["ring_sum"] == plaintext_sum(range(CLIENTS))
    assert set(outcome["helpers"]) == {"decryptor"}


@pytest.mark.parametrize("federation", ["secagg"], indirect=True)
def test_a_cohort_below_the_nodes_minimum_is_refused_by_the_nodes(federation):
    # The server's own copy of the protocol allows a sum of one; the target node's does not.
    out = run(federation, "cohort-of-one", protocol="secagg", **{"min-clients": 1, "cohort": 1})

    outcome = json.loads(wait_for(out / "result-0.json", timeout=RUN_SECONDS, federation=federation).read_text())

    assert "ring_sum" not in outcome and "ProtocolAbort" in outcome["error"], outcome
    assert "min_clients=2" in outcome["errors"]["0"]


@pytest.mark.parametrize("federation", ["secagg"], indirect=True)
def test_secagg_over_flower_sums_exactly_then_recovers_from_a_supernode_killed_between_phases(federation):
    victim = federation.nodes["client-1"]
    pause = {"pause-after": "share-keys", "pause-round": 1}
    out = run(federation, "secagg", protocol="secagg", aggregations=2, **pause)

    full = result(federation, out, 0)
    assert "consistency-check" in full["phases"]  # malicious-server mode: the default over Flower
    assert full["included"] == list(range(CLIENTS)) and full["dropped"] == {}
    assert full["ring_sum"] == plaintext_sum(range(CLIENTS))

    # Round 1: after share-keys, client 1 has handed out shares of its mask keys; kill it before masked-input.
    wait_for(out / "paused", timeout=RUN_SECONDS, federation=federation)
    victim.kill()
    deadline = time.monotonic() + 10
    while victim.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not victim.alive()
    (out / "resume").write_text("go")

    recovered = result(federation, out, 1)
    survivors = [p for p in range(CLIENTS) if p != 1]
    assert recovered["dropped"] == {"1": "masked-input"}
    assert recovered["included"] == survivors
    assert recovered["ring_sum"] == plaintext_sum(survivors)
