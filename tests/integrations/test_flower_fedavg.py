"""FedAvg (and DP-FedAvg) of securefl.fl with training on the nodes and the update through the protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from flwr.app import Context, RecordDict  # noqa: E402

from securefl.errors import ConfigurationError  # noqa: E402
from securefl.fl import FedAvg, FedAvgConfig, load_digits_data  # noqa: E402
from securefl.integrations.flower import FlowerDriver  # noqa: E402
from securefl.integrations.flower.fedavg import (  # noqa: E402
    FlowerClients,
    central_dp_from,
    default_fedavg,
    fedavg_client_app,
    fedavg_config_from,
    fedavg_server_app,
)
from securefl.privacy.calibration import epsilon_for  # noqa: E402
from securefl.privacy.plugins import CentralDP, DistributedDP  # noqa: E402
from securefl.protocols import SecretSharing  # noqa: E402
from securefl.protocols.secagg import SecAgg  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402

pytestmark = pytest.mark.flower

CONFIG = FedAvgConfig(clients=4, rounds=2, seed=3)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=CONFIG.seed)


def grid_for(protocol, make, partitions=range(CONFIG.clients), helpers=(), run_config=None):
    app = fedavg_client_app(protocol, make_fedavg=make)
    nodes = [({"partition-id": p}, app) for p in partitions] + [({"securefl-role": h}, app) for h in helpers]
    return FakeGrid(nodes, run_config=run_config)


def over_flower(grid, protocol, config=CONFIG, *, min_nodes=None, timeout=5.0, on_phase_end=None, **fedavg):
    driver = FlowerDriver(grid, protocol, timeout=timeout, on_phase_end=on_phase_end)
    return FedAvg(protocol, config, clients=FlowerClients(driver, min_nodes=min_nodes), **fedavg)


@pytest.mark.parametrize("protocol, helpers", [(SecAgg(), ()), (SecretSharing(), ("aggregator/0", "aggregator/1"))])
def test_fedavg_over_flower_follows_the_in_process_run(digits, protocol, helpers):
    reference = FedAvg(protocol, CONFIG, dataset=digits).run()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits), helpers=helpers)
    fedavg = over_flower(grid, protocol, min_nodes=CONFIG.clients + len(helpers), dataset=digits)

    history = fedavg.run()

    # Same seed, same partitions, same local training: only the stochastic rounding differs (the nodes
    # round with OS randomness), by far less than it takes to move a test prediction.
    assert history.initial_accuracy == reference.initial_accuracy
    assert history.accuracies == reference.accuracies
    for ours, theirs in zip(history.records, reference.records, strict=True):
        assert ours.included == theirs.included == tuple(range(CONFIG.clients))
        assert ours.loss == pytest.approx(theirs.loss, rel=1e-2)
        assert ours.weights == () and ours.server_saw_individual_updates is None and math.isnan(ours.clipped_fraction)
        assert ours.client_train_seconds > 0 and ours.client_seconds > ours.client_train_seconds
        assert ours.bytes_up_per_client > 0


def test_dp_fedavg_over_flower_charges_the_accountant_as_in_process(digits):
    protocol = SecAgg()
    reference = FedAvg(protocol, CONFIG, dp=CentralDP(noise_multiplier=1.0, clip=0.5), dataset=digits).run()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dp=CentralDP(noise_multiplier=1.0, clip=0.5),
                                                       dataset=digits))
    fedavg = over_flower(grid, protocol, dp=CentralDP(noise_multiplier=1.0, clip=0.5), dataset=digits)

    history = fedavg.run()

    assert [r.epsilon for r in history.records] == [r.epsilon for r in reference.records]
    expected = epsilon_for(noise_multiplier=1.0, sample_rate=1.0, steps=CONFIG.rounds, delta=1e-5)
    assert history.records[-1].epsilon == pytest.approx(expected) == fedavg.epsilon()
    assert all(r.included == tuple(range(CONFIG.clients)) and not r.aborted for r in history.records)
    assert all(r.l2_clip_fraction is None for r in history.records)  # measured on the nodes, never reported


def test_a_dp_round_that_aborts_is_charged_all_the_same(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dp=CentralDP(noise_multiplier=1.0, clip=0.5),
                                                       dataset=digits), partitions=[0])
    fedavg = over_flower(grid, protocol, min_nodes=1, dp=CentralDP(noise_multiplier=1.0, clip=0.5), dataset=digits)

    history = fedavg.run()

    assert history.aborted_rounds == [0, 1]
    assert history.records[-1].epsilon == pytest.approx(
        epsilon_for(noise_multiplier=1.0, sample_rate=1.0, steps=2, delta=1e-5))
    assert history.final_accuracy == history.initial_accuracy


def test_a_partition_without_a_supernode_is_a_dropout_and_the_round_goes_on(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits), partitions=[0, 1, 3])
    fedavg = over_flower(grid, protocol, min_nodes=3, dataset=digits)

    record = fedavg.run().records[0]

    assert record.sampled == (0, 1, 2, 3) and record.included == (0, 1, 3)
    assert record.dropouts == {2: protocol.phases[0]} and record.dropped == 1 and not record.aborted
    assert record.accuracy != fedavg.evaluate(fedavg.initial_state)[0]


def test_a_round_the_protocol_aborts_keeps_the_model_and_records_who_dropped(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits))

    def on_phase_end(report):
        if report.round == 0 and report.phase == "advertise-keys":
            for node in fedavg.clients.driver.federation.clients[:3]:
                grid.kill(node)

    fedavg = over_flower(grid, protocol, FedAvgConfig(clients=4, rounds=1, seed=3), timeout=0.5,
                         on_phase_end=on_phase_end, dataset=digits)

    history = fedavg.run()

    record = history.records[0]
    assert record.aborted and record.abort_reason.startswith("ProtocolAbort") and "share-keys" in record.abort_reason
    assert record.dropouts == {0: "share-keys", 1: "share-keys", 2: "share-keys"}
    assert record.accuracy == history.initial_accuracy and record.included == ()


def test_simulated_dropouts_are_refused_over_flower(digits):
    protocol = SecAgg()
    fedavg = over_flower(FakeGrid([]), protocol, FedAvgConfig(clients=4, dropout=0.2, seed=0), dataset=digits)
    with pytest.raises(ConfigurationError, match="real ones"):
        fedavg.run()


def test_distributed_dp_and_another_protocol_are_refused_over_flower(digits):
    protocol = SecretSharing(min_clients=2)
    distributed = over_flower(FakeGrid([]), protocol, dp=DistributedDP(noise_multiplier=1.0), dataset=digits)
    with pytest.raises(ConfigurationError, match="only central DP"):
        distributed.run()
    driver = FlowerDriver(FakeGrid([]), SecAgg())
    other = FedAvg(protocol, CONFIG, dataset=digits, clients=FlowerClients(driver))
    with pytest.raises(ConfigurationError, match="the driver runs"):
        other.run()


def test_a_node_whose_model_differs_from_the_servers_refuses_and_drops_out(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, FedAvgConfig(clients=4, seed=3, hidden=8),
                                                       dataset=digits))
    fedavg = over_flower(grid, protocol, FedAvgConfig(clients=4, rounds=1, seed=3), dataset=digits)

    record = fedavg.run().records[0]

    assert record.aborted and record.dropouts == {p: protocol.phases[0] for p in range(4)}
    assert record.accuracy == fedavg.evaluate(fedavg.initial_state)[0]


def test_run_config_makes_the_fedavg_and_dp_configs():
    run_config = {"protocol": "secagg", "clients": 6, "rounds": 2, "local-epochs": 1, "lr": 0.2, "timeout": 30.0,
                  "dp-noise-multiplier": "", "dp-epsilon": "", "dp-delta": 1e-5}
    config = fedavg_config_from(run_config)
    assert (config.clients, config.rounds, config.local_epochs, config.lr, config.seed) == (6, 2, 1, 0.2, None)
    assert central_dp_from(run_config) is None

    dp = central_dp_from({**run_config, "dp-noise-multiplier": 1.1, "dp-clip": 0.5, "dp-accountant": "pld"})
    assert (dp.noise_multiplier, dp.clip, dp.accountant, dp.target_epsilon) == (1.1, 0.5, "pld", None)

    calibrated = central_dp_from({**run_config, "dp-epsilon": 8.0, "dp-sample-rate": 0.5})
    assert calibrated.target_epsilon == 8.0 and calibrated.rounds == 2 and calibrated.sample_rate == 0.5
    spent = epsilon_for(noise_multiplier=calibrated.z, sample_rate=0.5, steps=2, delta=1e-5)
    assert spent <= 8.0

    with pytest.raises(ConfigurationError, match="one of dp-noise-multiplier and dp-epsilon"):
        central_dp_from({**run_config, "dp-noise-multiplier": 1.1, "dp-epsilon": 8.0})
    with pytest.raises(ConfigurationError, match="dp-noise"):
        central_dp_from({**run_config, "dp-noise": 1.1})


def _context(run_config):
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))


def test_the_apps_fedavg_needs_a_seed_which_splits_the_data_but_leaves_the_servers_choices_to_the_os():
    run_config = {"clients": 4, "rounds": 1, "seed": 3, "hidden": 8}
    protocol = SecAgg()
    with pytest.raises(ConfigurationError, match="no seed"):
        default_fedavg(_context({**run_config, "seed": ""}), protocol)

    node = default_fedavg(_context(run_config), protocol)
    clients = FlowerClients(FlowerDriver(FakeGrid([]), protocol))
    server = default_fedavg(_context(run_config), protocol, clients)
    again = default_fedavg(_context(run_config), protocol, FlowerClients(FlowerDriver(FakeGrid([]), protocol)))

    assert node.config.seed == 3 and node.clients is not clients and server.clients is clients
    assert server.config.seed is None and server.config.clients == 4
    np.testing.assert_array_equal(server.dataset.test_y, node.dataset.test_y)  # the nodes' held-out split
    assert [server.sample_clients(r) for r in range(1)] == [[0, 1, 2, 3]]
    first = next(iter(server.initial_state.values()))
    assert not (first == next(iter(again.initial_state.values()))).all()  # the initial model from the OS


def test_the_server_app_trains_from_the_run_config_and_the_nodes_protect_themselves_by_node_config():
    run_config = {"protocol": "secagg", "clients": 4, "rounds": 2, "seed": 3, "local-epochs": 1, "timeout": 5.0,
                  "min-nodes": 4, "discovery-wait": 1.0}
    node_config = {"securefl-protocol": "secagg"}  # the node's own protocol; the run config's is the server's
    grid = FakeGrid([({"partition-id": p, **node_config}, fedavg_client_app()) for p in range(4)],
                    run_config=run_config)
    runs = []
    app = fedavg_server_app(done=lambda fedavg, history: runs.append(history))

    app(grid, _context(run_config))

    (history,) = runs
    assert [r.included for r in history.records] == [(0, 1, 2, 3)] * 2
    assert not history.aborted_rounds and history.final_accuracy > history.initial_accuracy


def test_the_server_app_refuses_a_run_config_without_a_seed():
    run_config = {"protocol": "secagg", "clients": 4, "rounds": 1}
    app = fedavg_server_app()
    with pytest.raises(ConfigurationError, match="no seed"):
        app(FakeGrid([], run_config=run_config), _context(run_config))


def test_a_node_trains_one_round_twice_into_two_different_updates():
    # The seed is public and splits the data; the minibatch order is the node's own, so a server that asks
    # for one round twice (and subtracts) gets two different trainings, not the same update twice.
    run_config = {"clients": 4, "rounds": 1, "seed": 3, "hidden": 8, "batch-size": 8}
    start = default_fedavg(_context(run_config), SecAgg()).initial_state
    node, again = (default_fedavg(_context(run_config), SecAgg()) for _ in range(2))
    np.testing.assert_array_equal(node.dataset.train_y, again.dataset.train_y)  # the same split
    first, second = (fedavg.local_update(0, start, round=1)[0] for fedavg in (node, again))
    assert any(not torch_equal(first[name], second[name]) for name in first)

    seeded = FedAvg(SecAgg(), FedAvgConfig(clients=4, seed=3, hidden=8, batch_size=8))  # in process: reproducible
    once, twice = (seeded.local_update(0, start, round=1)[0] for _ in range(2))
    assert all(torch_equal(once[name], twice[name]) for name in once)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
