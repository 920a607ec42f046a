"""The Flower app of ``examples/flower``, its ServerApp and ClientApp as they ship, for 2 rounds on 5 SuperNodes.

The apps run over the in-process ``FakeGrid`` (``flower_fakes``): every
message and every node context goes through Flower's protobuf codec between
calls, as in a deployment, and the ServerApp's ``main`` runs Flower's own
``Strategy.start`` loop on it -- without Ray, so the test takes seconds on 2
cores. The run config is the app's own ``[tool.flwr.app.config]`` (as
``flwr run`` fuses it) with ``num-server-rounds = 2``; each node's config is
what Flower's simulation gives a virtual SuperNode (``partition-id``,
``num-partitions``). Also: a ServerApp switched to another protocol than
the nodes' gets no update, and the data split (held-out digits, IID and
Dirichlet partitions) is a partition of the data set.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")
pytest.importorskip("torch", reason="the example app needs PyTorch")
pytest.importorskip("sklearn", reason="the example app needs scikit-learn")

from flwr.app import Context, RecordDict  # noqa: E402

from securefl.errors import SecureFLError  # noqa: E402
from securefl.integrations.flower import SecureAggregation, wire  # noqa: E402
from securefl.integrations.flower.mod import ACK_KEY  # noqa: E402
from securefl.protocols import Plaintext  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402

pytestmark = pytest.mark.flower

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower"
NODES = 5
ROUNDS = 2


def example_run_config() -> dict:
    """``[tool.flwr.app.config]`` of the example's pyproject.toml."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "securefl_flower.server_app:app", "clientapp": "securefl_flower.client_app:app"}
    return dict(project["tool"]["flwr"]["app"]["config"])


@pytest.fixture
def example(monkeypatch):
    """The example's modules (protocol, task, client_app, server_app), imported from examples/flower."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    names = ("protocol", "task", "client_app", "server_app")
    return {name: importlib.import_module(f"securefl_flower.{name}") for name in names}


def server_context(run_config: dict) -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


def example_grid(example, run_config: dict) -> FakeGrid:
    """Five SuperNodes running the example's ClientApp, with the node config Flower's simulation gives them."""
    client_app = example["client_app"].app
    return FakeGrid([({"partition-id": p, "num-partitions": NODES}, client_app) for p in range(NODES)],
                    run_config=run_config)


def train_replies(grid: FakeGrid) -> list:
    return [m for m in grid.seen if m.metadata.reply_to_message_id and m.metadata.message_type == "train"]


def assert_no_update_in_the_clear(grid: FakeGrid) -> None:
    """No train reply the server received carries a node's arrays or metrics: protocol messages at most."""
    for reply in train_replies(grid):
        if reply.has_content():
            assert not reply.content.metric_records and set(reply.content.array_records) <= {wire.MESSAGES}


def test_the_example_trains_through_secure_aggregation_of_all_five_nodes(example, tmp_path, monkeypatch, capsys):
    import torch

    task, server_app = example["task"], example["server_app"]
    protocol = example["protocol"].PROTOCOL
    run_config = {**example_run_config(), "num-server-rounds": ROUNDS, "final-model": str(tmp_path / "final.pt")}
    assert "protocol" not in run_config  # the protocol is the code's, not the run config's
    # Spy on the wrapper the ServerApp builds, to read its per-round reports afterwards.
    wrappers: list[SecureAggregation] = []

    class RecordingSecureAggregation(SecureAggregation):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            wrappers.append(self)

    monkeypatch.setattr(server_app, "SecureAggregation", RecordingSecureAggregation)
    grid = example_grid(example, run_config)

    server_app.app(grid, server_context(run_config))

    # Every round's secure sum included all five SuperNodes, with all their training examples.
    (strategy,) = wrappers
    assert strategy.protocol == protocol and protocol.secure
    nodes = tuple(sorted(grid.apps))
    examples = sum(len(task.load_data(p, NODES, seed=run_config["seed"])[0].dataset) for p in range(NODES))
    assert [report.round for report in strategy.reports] == list(range(1, ROUNDS + 1))
    for report in strategy.reports:
        assert report.aborted is None and not report.errors and not report.dropped
        assert tuple(sorted(report.sampled)) == report.acknowledged == report.included == nodes
        assert report.examples == examples
    printed = capsys.readouterr().out
    for round in range(1, ROUNDS + 1):
        assert f"round {round}: secure sum of {NODES}/{NODES} SuperNodes, {examples} examples" in printed

    # The server received no node's update or training metrics: acknowledgements and protocol messages only.
    replies = train_replies(grid)
    assert replies and not any(m.has_error() for m in replies)
    assert sum(ACK_KEY in m.content.config_records for m in replies) == NODES * ROUNDS
    assert_no_update_in_the_clear(grid)

    # The model changed, and it learned: accuracy on the held-out digits (on no node) far above chance (0.1).
    final = torch.load(run_config["final-model"])
    initial = task.new_model(run_config["seed"]).state_dict()
    assert final.keys() == initial.keys()
    moved = max(float((final[name] - initial[name]).abs().max()) for name in final)
    assert moved > 0.05
    model = task.Net()
    model.load_state_dict(final)
    device = torch.device("cpu")
    _, initial_accuracy = task.test(task.new_model(run_config["seed"]), task.load_centralized_testset(), device)
    _, accuracy = task.test(model, task.load_centralized_testset(), device)
    print(f"held-out accuracy {initial_accuracy:.3f} -> {accuracy:.3f} after {ROUNDS} rounds; moved {moved:.3g}")
    assert accuracy > 0.5 and accuracy > initial_accuracy + 0.3


def test_a_server_that_downgrades_the_protocol_gets_no_update(example, tmp_path, monkeypatch):
    import torch

    # The ServerApp switched to the plaintext baseline; the nodes keep their ClientApp's SecAgg+.
    server_app, task = example["server_app"], example["task"]
    monkeypatch.setattr(server_app, "PROTOCOL", Plaintext())
    run_config = {**example_run_config(), "num-server-rounds": 1, "final-model": str(tmp_path / "final.pt")}
    grid = example_grid(example, run_config)

    try:
        server_app.app(grid, server_context(run_config))
    except SecureFLError:
        pass  # the wrapper gave up: no node would aggregate under its protocol

    # The nodes trained and acknowledged, but none took part in the plaintext "aggregation".
    assert sum(m.has_content() and ACK_KEY in m.content.config_records for m in train_replies(grid)) == NODES
    assert_no_update_in_the_clear(grid)
    if (tmp_path / "final.pt").exists():  # the run ended: then with the initial model
        final, initial = torch.load(tmp_path / "final.pt"), task.new_model(run_config["seed"]).state_dict()
        assert all(torch.equal(final[name], initial[name]) for name in initial)


@pytest.mark.parametrize("partitioning", ["iid", "dirichlet"])
def test_the_partitions_and_the_held_out_digits_split_the_data_set(example, partitioning):
    task = example["task"]
    images, labels = task._digits()
    partitions = task._partitions(NODES, partitioning, 0.5, 0)
    held_out = np.arange(task._pool_size(), len(labels))
    everything = np.concatenate([*partitions, held_out])
    assert len(everything) == len(set(everything.tolist())) == len(labels)  # disjoint, and all of them
    assert len(held_out) == round(task.TEST_FRACTION * len(labels))
    for p in range(NODES):
        train, validation = task.load_data(p, NODES, partitioning=partitioning)
        assert len(train.dataset) > 0 and len(validation.dataset) > 0
        assert len(train.dataset) + len(validation.dataset) == len(partitions[p])
    sizes = [len(part) for part in partitions]
    if partitioning == "iid":
        assert max(sizes) - min(sizes) <= 1
        assert max(int(0.8 * size) for size in sizes) <= 256  # every weight exact: below max_weight
    else:  # label skew: the class mixes differ
        mixes = [np.bincount(labels[part], minlength=10) / len(part) for part in partitions]
        assert max(np.abs(mixes[0] - mix).sum() for mix in mixes[1:]) > 0.2
