"""``securefl_mod`` + ``SecureAggregation``: a standard Flower app switched to secure aggregation.

Two kinds of runs:

* Flower's own simulation (``flwr.simulation.run_simulation``, Ray backend,
  offline) of the test app ``template_app/`` -- ``flwr new``'s PyTorch
  template on the 8x8 digits with its own CNN -- for 3 rounds on 5
  SuperNodes, plain and switched to SecAgg+ (``template_app/secagg``, a
  few lines apart), and the switched app with FedAdam;
* the in-process ``FakeGrid`` (``flower_fakes``) for the mod's and the
  wrapper's behaviour one message at a time: acknowledgements, refusals,
  single use, aborts, DP, the exact per-round bound.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Krum  # noqa: E402

from securefl import ring  # noqa: E402
from securefl.encoding import Encoding  # noqa: E402
from securefl.errors import ConfigurationError, ProtocolAbort  # noqa: E402
from securefl.integrations.flower import SecureAggregation, securefl_mod, wire  # noqa: E402
from securefl.integrations.flower.mod import (  # noqa: E402
    ACK_KEY,
    METRIC_BOUND,
    STATE_KEY,
    TICKET_KEY,
    join_digits,
    split_digits,
    stat_digits,
)
from securefl.integrations.flower.server import FlowerDriver  # noqa: E402
from securefl.integrations.flower.strategy import _GridView  # noqa: E402
from securefl.privacy.plugins import CentralDP, DistributedDP  # noqa: E402
from securefl.protocols import Paillier, Plaintext, SecretSharing, ValidatedSharing  # noqa: E402
from securefl.protocols.secagg import SecAgg  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402

pytestmark = pytest.mark.flower

TEMPLATE = Path(__file__).parent / "template_app"
REPO = Path(__file__).resolve().parents[2]
SECAGG_PLUS = SecAgg(neighbors=4)
NODES = 5
ROUNDS = 3
ACK_FIELDS = {"ticket", "round", "dimension", "metric-names", "metric-sizes", "digits", "dp", "vector-length"}


# -- the switch -----------------------------------------------------------------------------------


def changed_lines(plain: Path, secure: Path) -> tuple[int, int]:
    """(+added, -removed) lines between two versions of a file."""
    diff = list(difflib.unified_diff(plain.read_text().splitlines(), secure.read_text().splitlines(), lineterm="", n=0))
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    return added, removed


def test_the_template_app_switches_to_secagg_plus_in_at_most_ten_changed_lines():
    files = ("client_app.py", "server_app.py", "pyproject.toml")
    counts = {name: changed_lines(TEMPLATE / "plain" / name, TEMPLATE / "secagg" / name) for name in files}
    added = sum(a for a, _ in counts.values())
    removed = sum(r for _, r in counts.values())
    # The mod (1 line changed), the wrapper (1 added), 2 imports on each side, the dependency.
    assert counts == {"client_app.py": (3, 1), "server_app.py": (3, 0), "pyproject.toml": (1, 0)}
    assert added + removed == 8 <= 10
    # task.py (model, data, training) is the same file for both.
    assert not (TEMPLATE / "secagg" / "task.py").exists()


# -- Flower's simulation of the template app ---------------------------------------------------


class RecordingGrid(Grid):
    """The ServerApp's Grid, keeping every message the server received (the replies it pulled)."""

    def __init__(self, grid: Grid, received: list[Message]) -> None:
        self._grid, self.received = grid, received

    def set_run(self, run):  # pragma: no cover - the simulation set it already
        self._grid.set_run(run)

    @property
    def run(self):  # pragma: no cover
        return self._grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # pragma: no cover
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self):
        return self._grid.get_node_ids()

    def push_messages(self, messages):
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self._grid.pull_messages(message_ids))
        self.received.extend(replies)
        return replies

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.received.extend(replies)
        return replies


def simulate(variant: str, server_modules: tuple[str, ...], tmp_path: Path, monkeypatch) -> list:
    """Run ``template_app/<variant>`` in Flower's simulation: its ServerApp mains one after the other.

    Returns, per main, (final state_dict, metrics history, the messages the server received).
    """
    import importlib

    import torch
    from flwr.simulation import run_simulation

    client = importlib.import_module(f"tests.integrations.template_app.{variant}.client_app")
    servers = [importlib.import_module(f"tests.integrations.template_app.{variant}.{name}") for name in server_modules]
    # Ray's workers import the app's modules (and the securefl mod) as this process does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    paths = [(tmp_path / f"{variant}-{name}.pt", tmp_path / f"{variant}-{name}.json") for name in server_modules]
    inboxes: list[list[Message]] = [[] for _ in server_modules]
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for server, (model_path, metrics_path), received in zip(servers, paths, inboxes):
            # As `flwr run --run-config` would: where the app writes its results.
            context.run_config.update({"final-model": str(model_path), "final-metrics": str(metrics_path)})
            server.main(RecordingGrid(grid, received), context)

    run_simulation(
        server_app=app,
        client_app=client.app,
        num_supernodes=NODES,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 1, "include_dashboard": False}},
    )
    return [(torch.load(model), json.loads(metrics.read_text()), received)
            for (model, metrics), received in zip(paths, inboxes)]


def assert_the_server_saw_no_update_and_no_training_metric(received: list[Message]) -> None:
    acknowledgements = 0
    for reply in received:
        if reply.has_error():
            continue
        content = reply.content
        if reply.metadata.message_type.startswith("evaluate"):
            assert not content.array_records  # federated evaluation: each node's evaluation metrics, as in Flower
            continue
        assert not content.metric_records
        assert set(content.array_records) <= {wire.MESSAGES}  # protocol messages only (masked vectors)
        if ACK_KEY in content.config_records:
            acknowledgements += 1
            assert set(content.config_records[ACK_KEY]) == ACK_FIELDS  # ticket and layout: no value of the node's
    assert acknowledgements == NODES * ROUNDS


@pytest.mark.slow
def test_template_app_with_secagg_plus_ends_at_the_plain_apps_model_and_fedadam_wrapped_alike_runs(
    tmp_path, monkeypatch
):
    import torch

    [(plain_model, plain_history, plain_inbox)] = simulate("plain", ("server_app",), tmp_path, monkeypatch)
    # The switched app, then its FedAdam variant: a run of its own, as the nodes give a round of a run (and a
    # model) one contribution each.
    [(secure_model, secure_history, secure_inbox)] = simulate("secagg", ("server_app",), tmp_path, monkeypatch)
    [(adam_model, adam_history, adam_inbox)] = simulate("secagg", ("server_app_fedadam",), tmp_path, monkeypatch)

    # The bound, per coordinate. One round: the secure mean S / W is within n / W x step <= step of the
    # w-weighted mean of the same updates (each node's stochastic rounding moves w_i u_i by < 1 unit), the
    # w-weighted mean within weight_error x clip of the example-weighted one (0 here: every node has fewer
    # than max_weight = 256 examples, so w_i = n_i), the encoding's clip cut nothing (reported: 0). Over R
    # rounds the errors add up to R x (step + weight_error x clip), as long as one round of local training
    # magnifies a difference of the starting models by less than (W / n)^(1 / (R - 1)) (= 13 here).
    encoding = SECAGG_PLUS.encoding
    weight_error = 0.0
    bound = ROUNDS * (encoding.step + weight_error * encoding.clip)
    initial = _initial_model()
    assert set(plain_model) == set(secure_model) == set(initial)
    difference = max(float((plain_model[k] - secure_model[k]).abs().max()) for k in plain_model)
    moved = max(float((plain_model[k] - initial[k]).abs().max()) for k in plain_model)
    print(f"max |plain - secure| = {difference:.3g} <= {bound:.3g} = {ROUNDS} x step; the model moved {moved:.3g}")
    assert difference <= bound
    assert moved > 10 * bound  # the models trained: the bound is not met by standing still
    # The training metrics came through the secure sum (example-weighted means, exact to 2^-20 on the
    # same updates); round 1 trains from one model in both runs, later rounds from models within the bound.
    assert plain_history["train"].keys() == secure_history["train"].keys() == {"1", "2", "3"}
    assert secure_history["train"]["1"]["train_loss"] == pytest.approx(plain_history["train"]["1"]["train_loss"],
                                                                       abs=1e-6)
    for round in plain_history["train"]:
        plain_metrics, secure_metrics = plain_history["train"][round], secure_history["train"][round]
        assert plain_metrics.keys() == secure_metrics.keys() == {"train_loss"}
        assert secure_metrics["train_loss"] == pytest.approx(plain_metrics["train_loss"], abs=1e-3)
        assert secure_history["evaluate"][round]["eval_acc"] == pytest.approx(
            plain_history["evaluate"][round]["eval_acc"], abs=0.02)
    # The server never received a node's arrays or training metrics; in the plain app it did.
    assert_the_server_saw_no_update_and_no_training_metric(secure_inbox)
    assert any("arrays" in reply.content.array_records for reply in plain_inbox if reply.has_content())

    # FedAdam wrapped the same way: it ran its 3 rounds on the secure means.
    assert all(torch.isfinite(adam_model[k]).all() for k in adam_model)
    assert max(float((adam_model[k] - initial[k]).abs().max()) for k in adam_model) > 1e-3
    assert adam_history["train"].keys() == {"1", "2", "3"}
    assert all(np.isfinite(metrics["train_loss"]) for metrics in adam_history["train"].values())
    assert_the_server_saw_no_update_and_no_training_metric(adam_inbox)


def _initial_model():
    from tests.integrations.template_app.task import new_model

    return new_model(0).state_dict()


# -- the mod and the wrapper, message by message (in-process Grid) --------------------------------

DIMENSIONS = (3, (2, 2))


def update_for(partition: int) -> list[np.ndarray]:
    """A node's update, independent of the model: the exact bound then holds round after round."""
    rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(partition,)))
    return [rng.uniform(-0.5, 0.5, size=shape).astype(np.float32) for shape in DIMENSIONS]


def examples_of(partition: int) -> int:
    return 40 + 37 * partition


def numpy_app(mods=(), *, metrics=None):
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(message: Message, context: Context) -> Message:
        partition = context.node_config["partition-id"]
        arrays = message.content["arrays"].to_numpy_ndarrays()
        trained = [array + step for array, step in zip(arrays, update_for(partition))]
        values = {"num-examples": examples_of(partition), "loss": 0.25 * partition + 1.0,
                  "per-class": [0.1 * partition, 2.0 - partition]}
        values = metrics(partition, values) if metrics is not None else values
        return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(values)}),
                       reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 7, "eval_acc": 0.5})}), reply_to=message)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return Message(RecordDict({"config": ConfigRecord({"echo": 1})}), reply_to=message)

    return app


def initial_arrays() -> ArrayRecord:
    return ArrayRecord([np.zeros(DIMENSIONS[0], dtype=np.float32), np.ones(DIMENSIONS[1], dtype=np.float32)])


def fake_grid(app_for=lambda partition: numpy_app([securefl_mod(SECAGG_PLUS)]), partitions=range(NODES)):
    return FakeGrid([({"partition-id": p, "num-partitions": NODES}, app_for(p)) for p in partitions])


def run(grid, strategy, rounds=ROUNDS):
    return strategy.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=rounds, timeout=5)


def test_fedavg_gets_the_secure_mean_within_n_over_w_steps_per_round_and_the_exact_metrics():
    plain = run(fake_grid(lambda p: numpy_app()), FedAvg(min_available_nodes=NODES))
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5)
    result = run(fake_grid(), secure)

    counts = [examples_of(p) for p in range(NODES)]
    # Per round and coordinate |S / W - sum n_i u_i / N| < n / W x step (W = N: no count above 256), plus
    # float32 rounding of the model (both apps keep it in float32).
    per_round = NODES / sum(counts) * SECAGG_PLUS.encoding.step
    for theirs, ours in zip(plain.arrays.to_numpy_ndarrays(), result.arrays.to_numpy_ndarrays()):
        assert np.abs(theirs - ours).max() <= ROUNDS * per_round + 1e-6
    for round in range(1, ROUNDS + 1):
        theirs, ours = plain.train_metrics_clientapp[round], result.train_metrics_clientapp[round]
        assert theirs.keys() == ours.keys() == {"loss", "per-class"}
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=2**-20)
        assert ours["per-class"] == pytest.approx(theirs["per-class"], abs=2**-20)
        assert result.evaluate_metrics_clientapp[round] == plain.evaluate_metrics_clientapp[round]
    for report in secure.reports:
        assert report.included == report.acknowledged == tuple(sorted(report.sampled)) and not report.errors
        assert report.examples == report.weight_total == sum(counts)
        assert report.clipped_coordinates == 0 and report.aborted is None


def test_fedprox_and_fedadam_run_unchanged_on_the_secure_mean():
    for strategy in (FedProx(min_available_nodes=NODES, proximal_mu=0.1),
                     FedAdam(min_available_nodes=NODES, eta=0.05)):
        secure = SecureAggregation(strategy, SECAGG_PLUS, timeout=5)
        result = run(fake_grid(), secure, rounds=2)
        assert all(report.aborted is None and len(report.included) == NODES for report in secure.reports)
        assert not np.allclose(result.arrays.to_numpy_ndarrays()[0], 0.0)


def test_nodes_acknowledge_training_with_a_ticket_and_a_layout_only_and_keep_plain_bytes():
    grid = fake_grid()
    run(grid, SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5), rounds=1)

    acknowledgements = [m for m in grid.seen if m.has_content() and ACK_KEY in m.content.config_records]
    assert len(acknowledgements) == NODES
    for reply in acknowledgements:
        assert not reply.content.array_records and not reply.content.metric_records
        assert set(reply.content.config_records[ACK_KEY]) == ACK_FIELDS
    for reply in grid.seen:
        if reply.metadata.reply_to_message_id and reply.has_content() and reply.metadata.message_type == "train":
            assert not reply.content.metric_records and set(reply.content.array_records) <= {wire.MESSAGES}
    for context in grid.contexts.values():
        stored = context.state.config_records[STATE_KEY]
        assert stored["vector"] == b""  # used by the round's sum, and only by it
        assert all(isinstance(value, (bytes, int, str)) for value in stored.values())


def test_other_messages_pass_through_and_a_train_message_without_a_ticket_is_refused():
    grid = fake_grid()
    node = next(iter(grid.apps))
    query = Message(RecordDict({"config": ConfigRecord({"x": 1})}), dst_node_id=node, message_type="query")
    train = Message(RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})}),
                    dst_node_id=node, message_type="train")

    echoed, refused = grid.send_and_receive([query, train])

    assert echoed.content.config_records["config"]["echo"] == 1
    assert refused.has_error() and not refused.has_content()
    assert "SecureAggregation" in refused.error.reason  # says how to fix it; no update in the clear


def test_a_trained_update_feeds_one_aggregation_only():
    grid = fake_grid()
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5)
    run(grid, secure, rounds=1)
    ticket = next(m.content.config_records[TICKET_KEY] for m in grid.seen
                  if m.has_content() and TICKET_KEY in m.content.config_records)
    driver = FlowerDriver(_GridView(grid, message_type="train"), SECAGG_PLUS, timeout=5)
    driver.discover()
    replay = RecordDict({TICKET_KEY: ConfigRecord(dict(ticket))})

    with pytest.raises(ProtocolAbort):
        driver.aggregate(sorted(grid.apps), vector_length=secure_layout_length(), round=1,
                         extra=lambda node, index: RecordDict(dict(replay.items())))
    errors = [m.error.reason for m in grid.seen if m.has_error()]
    assert len(errors) == NODES and all("no trained update waits" in reason for reason in errors)


def test_nodes_refuse_an_aggregation_under_another_ticket_and_still_answer_their_own():
    grid = fake_grid()
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5)
    messages = secure.configure_train(1, initial_arrays(), ConfigRecord(), grid)
    acknowledgements = list(grid.send_and_receive(messages))
    ticket = dict(acknowledgements[0].content.config_records[ACK_KEY])
    driver = FlowerDriver(_GridView(grid, message_type="train"), SECAGG_PLUS, timeout=5)
    driver.discover()
    trained_on = wire.content_digest(list(messages)[0].content, skip=(TICKET_KEY,))  # the session's binding

    def with_ticket(token):
        return lambda node, index: RecordDict({TICKET_KEY: ConfigRecord({"ticket": token, "round": 1})})

    with pytest.raises(ProtocolAbort):
        driver.aggregate(sorted(grid.apps), vector_length=secure_layout_length(), round=1,
                         extra=with_ticket(os.urandom(16)), digest=trained_on)
    errors = [m.error.reason for m in grid.seen if m.has_error()]
    assert len(errors) == NODES and all("ticket is not the one" in reason for reason in errors)

    aggregation = driver.aggregate(sorted(grid.apps), vector_length=secure_layout_length(), round=1,
                                   extra=with_ticket(ticket["ticket"]), digest=trained_on)
    assert aggregation.included_nodes == tuple(sorted(grid.apps))


def secure_layout_length() -> int:
    dimension = 3 + 4
    return dimension + (2 + 1 + 2) * stat_digits(SECAGG_PLUS.encoding) + 1


def test_an_aborted_round_leaves_the_model_unchanged_and_reports_why(caplog):
    grid = fake_grid()
    # No federated evaluation: with three nodes dead, FedAvg's sampling would wait for five forever.
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES, fraction_evaluate=0.0), SECAGG_PLUS, timeout=0.5,
                               poll_interval=0.01)
    killed = []

    def kill_three_after_the_first_phase(messages):
        if killed or not any(m.metadata.message_type == "train" and wire.CONTROL in m.content.config_records
                             and m.content.config_records[wire.CONTROL].get("phase") == "share-keys"
                             for m in messages):
            return
        for node in sorted(grid.apps)[:3]:
            grid.kill(node)
            killed.append(node)

    grid.on_push = kill_three_after_the_first_phase
    with caplog.at_level(logging.WARNING):
        result = run(grid, secure, rounds=1)

    report = secure.reports[0]
    assert report.aborted is not None and "ProtocolAbort" in report.aborted
    assert set(report.dropped) == set(killed)
    assert any("aborted, the model is unchanged" in record.getMessage() for record in caplog.records)
    for theirs, ours in zip(initial_arrays().to_numpy_ndarrays(), result.arrays.to_numpy_ndarrays()):
        np.testing.assert_array_equal(theirs, ours)
    assert 1 not in result.train_metrics_clientapp


@pytest.mark.parametrize("when", ["train", "masked-input"])
def test_the_superlinks_error_reply_for_an_offline_node_is_that_nodes_in_the_report(when):
    # The SuperLink answers for a node it marked offline: the reply comes from node 1, the SuperLink.
    grid = fake_grid()
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES, fraction_evaluate=0.0), SECAGG_PLUS, timeout=5,
                               poll_interval=0.01)
    victim = sorted(grid.apps)[2]

    def offline_at(messages):
        for message in messages:
            control = message.content.config_records.get(wire.CONTROL)
            if (control is None and when == "train") or (control is not None and control.get("phase") == when):
                grid.kill(victim, offline=True)

    grid.on_push = offline_at
    run(grid, secure, rounds=1)

    report = secure.reports[0]
    assert any(m.has_error() and m.metadata.src_node_id == 1 for m in grid.replies_made)
    assert report.aborted is None
    assert report.dropped == ({} if when == "train" else {victim: "masked-input"})
    assert set(report.errors) == {victim} and "unavailable" in report.errors[victim].lower()
    assert report.included == tuple(node for node in sorted(grid.apps) if node != victim)


def as_flower_runs_it(app):
    """A ClientApp as a SuperNode runs it: an exception becomes an error reply (the fake Grid lets it through)."""

    def handle(message: Message, context: Context) -> Message:
        try:
            return app(message, context)
        except Exception as error:  # what Flower's ClientApp runtime does with an app's exception
            return Message(Error(code=0, reason=f"{type(error).__name__}: {error}"), reply_to=message)

    return handle


def test_a_nodes_refusal_reaches_the_log_and_the_report_with_its_reason_and_the_others_still_sum(caplog):
    def app_for(partition):
        if partition == 0:  # no example count: this node refuses to train into the sum
            return numpy_app([securefl_mod(SECAGG_PLUS)], metrics=lambda p, v: {"loss": v["loss"]})
        if partition == 1:  # no mod: answers in the clear; the server drops the reply unused
            return as_flower_runs_it(numpy_app())
        return numpy_app([securefl_mod(SECAGG_PLUS)])

    grid = fake_grid(app_for)
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5)
    with caplog.at_level(logging.WARNING):
        result = run(grid, secure, rounds=1)

    report = secure.reports[0]
    logged = [record.getMessage() for record in caplog.records]
    for node, reason in report.errors.items():
        assert any(f"SuperNode {node}" in line and reason in line for line in logged)
    by_partition = {grid.contexts[node].node_config["partition-id"]: node for node in grid.apps}
    assert "num-examples" in report.errors[by_partition[0]]
    assert "in the clear" in report.errors[by_partition[1]]
    assert report.included == tuple(sorted(by_partition[p] for p in (2, 3, 4)))
    assert report.examples == sum(examples_of(p) for p in (2, 3, 4))
    assert result.train_metrics_clientapp[1]["loss"] == pytest.approx(
        sum(examples_of(p) * (0.25 * p + 1.0) for p in (2, 3, 4)) / report.examples, abs=2**-20)


def test_central_dp_runs_with_the_same_plugin_on_both_sides():
    def app_for(partition):
        return numpy_app([securefl_mod(SECAGG_PLUS, dp=CentralDP(noise_multiplier=0.5, clip=1.0))])

    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5,
                               dp=CentralDP(noise_multiplier=0.5, clip=1.0))
    result = run(fake_grid(app_for), secure, rounds=2)

    assert secure.epsilon is not None and secure.epsilon > 0
    assert all(report.examples == NODES and report.clipped_coordinates is None for report in secure.reports)
    assert set(result.train_metrics_clientapp[1]) == set()  # under DP no metric is aggregated
    assert np.isfinite(result.arrays.to_numpy_ndarrays()[0]).all()


def test_a_dp_mismatch_between_node_and_server_leaves_the_node_out():
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5,
                               dp=CentralDP(noise_multiplier=0.5, clip=1.0))
    run(fake_grid(), secure, rounds=1)

    report = secure.reports[0]
    assert report.aborted is not None and len(report.errors) == NODES
    assert all("DP" in reason for reason in report.errors.values())


def test_strategies_that_need_individual_updates_are_refused():
    with pytest.raises(ConfigurationError, match="Krum"):
        SecureAggregation(Krum(), SECAGG_PLUS)


@pytest.mark.parametrize("protocol", [Plaintext(), SecAgg()], ids=["plaintext", "secagg"])
def test_the_plaintext_baseline_and_complete_graph_secagg_also_plug_in(protocol):
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), protocol, timeout=5)
    run(fake_grid(lambda p: numpy_app([securefl_mod(protocol)])), secure, rounds=1)
    assert secure.reports[0].aborted is None
    assert len(secure.reports[0].included) == NODES


# -- the statistics' digits ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [Encoding(), Encoding(value_bits=8, clip=0.1), Encoding(value_bits=20,
                                                                                           ring_bits=64)])
def test_statistics_sum_exactly_through_the_encoding_to_n_times_2_to_the_minus_20(encoding):
    rng = np.random.default_rng(3)
    values = [np.array([1.0, 12345.678, -3.25e11, 0.0]) * rng.uniform(0.5, 1, size=4) for _ in range(7)]
    weights = [1, 7, 256, 31, 2, 99, 128]
    total = np.zeros(4 * stat_digits(encoding) + 1, dtype=ring.ring_dtype(encoding.ring_bits))
    for value, weight in zip(values, weights):
        coordinates = split_digits(value, encoding=encoding)
        assert np.abs(coordinates).max() <= encoding.clip
        ring.add(total, encoding.encode(coordinates, weight=weight, rng=rng), encoding.ring_bits)
    released, weight_total = encoding.decode_sum(total)

    sums = join_digits(released, encoding=encoding)

    assert weight_total == sum(weights)
    exact = sum(weight * value for weight, value in zip(weights, values))
    np.testing.assert_allclose(sums, exact, rtol=1e-13, atol=len(weights) * 2**-20)


def test_a_statistic_beyond_the_bound_is_refused():
    with pytest.raises(Exception, match="2\\^40"):
        split_digits(np.array([2 * METRIC_BOUND]), encoding=Encoding())


# -- protocols with helper parties: the helpers are SuperNodes of their own -----------------------


HELPER_PROTOCOLS = {
    "secret-sharing": (SecretSharing(min_clients=3), ("aggregator/0", "aggregator/1")),
    "paillier": (Paillier(key_bits=512, encoding=Encoding(max_clients=8), min_clients=3), ("decryptor",)),
    "validated-sharing": (ValidatedSharing(min_clients=3), ("aggregator/0", "aggregator/1")),
}


@pytest.mark.parametrize("name", sorted(HELPER_PROTOCOLS))
def test_helper_protocols_plug_in_with_their_helpers_on_supernodes_hidden_from_the_strategys_sampling(name):
    protocol, roles = HELPER_PROTOCOLS[name]
    trust = {"semi_honest_server": name == "paillier"}  # Paillier has no malicious-server mode
    clients = [({"partition-id": p, "num-partitions": NODES}, numpy_app([securefl_mod(protocol, **trust)]))
               for p in range(NODES)]
    helpers = [({"securefl-role": role}, numpy_app([securefl_mod(protocol, **trust)])) for role in roles]
    grid = FakeGrid(clients + helpers)
    helper_nodes = sorted(grid.apps)[NODES:]
    plain = run(fake_grid(lambda p: numpy_app()), FedAvg(min_available_nodes=NODES), rounds=2)
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), protocol, timeout=5, **trust)

    result = run(grid, secure, rounds=2)

    assert sorted(secure.federation.helpers) == sorted(roles)
    assert sorted(secure.federation.helpers.values()) == helper_nodes
    for report in secure.reports:
        assert report.aborted is None and set(report.sampled).isdisjoint(helper_nodes)
        assert report.included == tuple(sorted(grid.apps)[:NODES])
    # No helper trained or was asked to: every train message with arrays went to a client node.
    assert not any(m.metadata.dst_node_id in helper_nodes and m.content.array_records.get("arrays") is not None
                   for m in grid.seen)
    counts = [examples_of(p) for p in range(NODES)]
    per_round = NODES / sum(counts) * protocol.encoding.step
    for theirs, ours in zip(plain.arrays.to_numpy_ndarrays(), result.arrays.to_numpy_ndarrays()):
        assert np.abs(theirs - ours).max() <= 2 * per_round + 1e-6
    assert result.train_metrics_clientapp[2]["loss"] == pytest.approx(plain.train_metrics_clientapp[2]["loss"],
                                                                      abs=2**-20)


def distributed_dp():
    return DistributedDP(noise_multiplier=0.5, clip=2.0, population=NODES, sample_rate=1.0, bits=20)


def test_distributed_dp_runs_with_the_same_plugin_on_both_sides_and_releases_the_noisy_mean():
    grid = fake_grid(lambda p: numpy_app([securefl_mod(SECAGG_PLUS, dp=distributed_dp())]))
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), SECAGG_PLUS, timeout=5, dp=distributed_dp())
    result = run(grid, secure, rounds=2)

    assert all(report.aborted is None and len(report.included) == NODES for report in secure.reports)
    assert secure.epsilon is not None and secure.epsilon > 0
    # Every node sent a ring vector of the padded dimension over the plugin's 20-bit ring, nothing in the clear.
    model = np.concatenate([a.ravel() for a in result.arrays.to_numpy_ndarrays()])
    start = np.concatenate([a.ravel() for a in initial_arrays().to_numpy_ndarrays()])
    exact = np.mean([np.concatenate([u.ravel() for u in update_for(p)]) for p in range(NODES)], axis=0)
    noise = (model - start) / 2 - exact  # two rounds of the same mean update, each with its noise / N
    sigma = 0.5 * 2.0 / NODES  # z C / (q N) per round
    assert np.abs(noise).max() < 6 * sigma and np.abs(noise).max() > 0


def test_distributed_dp_over_flower_needs_the_population_on_both_sides():
    with pytest.raises(ConfigurationError, match="population"):
        securefl_mod(SECAGG_PLUS, dp=DistributedDP(noise_multiplier=0.5))
    with pytest.raises(ConfigurationError, match="population"):
        SecureAggregation(FedAvg(), SECAGG_PLUS, dp=DistributedDP(noise_multiplier=0.5))


def test_the_distributed_dp_rotation_is_public_and_the_same_on_node_and_server():
    node, server = distributed_dp(), distributed_dp()
    for plugin in (node, server):
        plugin.bind(SECAGG_PLUS, dimension=7, cohort=NODES)
    ticket = bytes(range(16))
    same = [plugin.begin_round(3, cohort=NODES, public_seed=ticket).signs for plugin in (node, server)]
    other = node.begin_round(3, cohort=NODES, public_seed=bytes(16)).signs
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)


def test_under_validated_sharing_an_update_above_the_bound_is_scaled_but_its_statistics_sum_exactly():
    bound = 0.6  # below four nodes' update norms, above every node's statistics' (at most 0.52)
    protocol = ValidatedSharing(norm_bound=bound, min_clients=3)
    clients = [({"partition-id": p, "num-partitions": NODES}, numpy_app([securefl_mod(protocol)]))
               for p in range(NODES)]
    helpers = [({"securefl-role": role}, numpy_app([securefl_mod(protocol)])) for role in protocol.helper_parties()]
    plain = run(fake_grid(lambda p: numpy_app()), FedAvg(min_available_nodes=NODES), rounds=1)
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES), protocol, timeout=5)

    grid = FakeGrid(clients + helpers)
    result = run(grid, secure, rounds=1)

    assert secure.reports[0].aborted is None and secure.reports[0].included == tuple(sorted(grid.apps)[:NODES])
    theirs, ours = plain.train_metrics_clientapp[1], result.train_metrics_clientapp[1]
    assert ours["loss"] == pytest.approx(theirs["loss"], abs=2**-20)
    assert ours["per-class"] == pytest.approx(theirs["per-class"], abs=2**-20)
    counts = [examples_of(p) for p in range(NODES)]
    moved = [np.concatenate([u.ravel() for u in update_for(p)]) for p in range(NODES)]
    assert sum(np.linalg.norm(u) > bound for u in moved) == 4  # 0.90, 0.73, 0.71, 0.47, 0.78
    start = np.concatenate([a.ravel() for a in initial_arrays().to_numpy_ndarrays()])
    step = np.concatenate([a.ravel() for a in result.arrays.to_numpy_ndarrays()]) - start
    unclipped = np.average(moved, axis=0, weights=counts)
    assert np.linalg.norm(step) < 0.9 * np.linalg.norm(unclipped)  # the nodes' scaled updates moved it less
