"""FedAvg (and DP-FedAvg) of securefl.fl with training on the nodes and the update through the protocol."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from securefl.errors import ConfigurationError  # noqa: E402
from securefl.fl import FedAvg, FedAvgConfig, load_digits_data  # noqa: E402
from securefl.fl.dp import CentralDP, DPFedAvg  # noqa: E402
from securefl.integrations.flower import FlowerDriver  # noqa: E402
from securefl.integrations.flower.fedavg import (  # noqa: E402
    FlowerDPFedAvg,
    FlowerFedAvg,
    central_dp_from,
    fedavg_client_app,
    fedavg_config_from,
)
from securefl.protocols import SecretSharing  # noqa: E402
from securefl.protocols.secagg import SecAgg  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402

pytestmark = pytest.mark.flower

CONFIG = FedAvgConfig(clients=4, rounds=2, seed=3)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=CONFIG.seed)


def grid_for(protocol, make, partitions=range(CONFIG.clients), helpers=()):
    app = fedavg_client_app(protocol, make_fedavg=make)
    nodes = [({"partition-id": p}, app) for p in partitions] + [({"securefl-role": h}, app) for h in helpers]
    return FakeGrid(nodes)


@pytest.mark.parametrize("protocol, helpers", [(SecAgg(), ()), (SecretSharing(), ("aggregator/0", "aggregator/1"))])
def test_fedavg_over_flower_follows_the_in_process_run(digits, protocol, helpers):
    reference = FedAvg(protocol, CONFIG, dataset=digits).run()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits), helpers=helpers)
    fedavg = FlowerFedAvg(protocol, CONFIG, dataset=digits)
    fedavg.attach(FlowerDriver(grid, protocol, timeout=5), min_nodes=CONFIG.clients + len(helpers))

    history = fedavg.run()

    # Same seed, same partitions, same local training: only the stochastic rounding differs.
    for ours, theirs in zip(history.records, reference.records):
        assert ours.included == theirs.included == tuple(range(CONFIG.clients))
        assert abs(ours.accuracy - theirs.accuracy) <= 0.01
        assert ours.weights == () and ours.server_saw_individual_updates is None and math.isnan(ours.clipped_fraction)
        assert ours.client_train_seconds > 0 and ours.bytes_up_per_client > 0


def test_dp_fedavg_over_flower_charges_the_accountant_as_in_process(digits):
    dp = CentralDP(noise_multiplier=1.0, clip=0.5, noise_seed=5)
    protocol = SecAgg()
    reference = DPFedAvg(protocol, CONFIG, dp=dp, dataset=digits).run()
    grid = grid_for(protocol, lambda context, p: DPFedAvg(p, CONFIG, dp=dp, dataset=digits))
    fedavg = FlowerDPFedAvg(protocol, CONFIG, dp=dp, dataset=digits)
    fedavg.attach(FlowerDriver(grid, protocol, timeout=5))

    history = fedavg.run()

    assert [r.epsilon for r in history.records] == [r.epsilon for r in reference.records]
    assert history.records[-1].epsilon == pytest.approx(fedavg.epsilon())
    assert all(r.l2_clip_fraction is None for r in history.records)  # measured on the nodes, never reported


def test_a_partition_without_a_supernode_is_a_dropout_and_the_round_goes_on(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits), partitions=[0, 1, 3])
    fedavg = FlowerFedAvg(protocol, CONFIG, dataset=digits)
    fedavg.attach(FlowerDriver(grid, protocol, timeout=5), min_nodes=3)

    record = fedavg.run().records[0]

    assert record.sampled == (0, 1, 2, 3) and record.included == (0, 1, 3)
    assert record.dropouts == {2: protocol.phases[0]} and not record.aborted


def test_simulated_dropouts_are_refused_over_flower(digits):
    protocol = SecAgg()
    fedavg = FlowerFedAvg(protocol, FedAvgConfig(clients=4, dropout=0.2), dataset=digits)
    with pytest.raises(ConfigurationError, match="real ones"):
        fedavg.attach(FlowerDriver(FakeGrid([]), protocol))


def test_run_config_makes_the_fedavg_and_dp_configs():
    run_config = {"protocol": "secagg", "clients": 6, "rounds": 2, "local-epochs": 1, "lr": 0.2, "timeout": 30.0,
                  "dp-noise-multiplier": "", "dp-epsilon": "", "dp-delta": 1e-5}
    config = fedavg_config_from(run_config)
    assert (config.clients, config.rounds, config.local_epochs, config.lr) == (6, 2, 1, 0.2)
    assert central_dp_from(run_config) is None
    dp = central_dp_from({**run_config, "dp-noise-multiplier": 1.1, "dp-clip": 0.5})
    assert dp.noise_multiplier == 1.1 and dp.clip == 0.5


def test_a_round_the_protocol_aborts_keeps_the_model_and_records_who_dropped(digits):
    protocol = SecAgg()
    grid = grid_for(protocol, lambda context, p: FedAvg(p, CONFIG, dataset=digits))

    def on_phase_end(report):
        if report.round == 0 and report.phase == "advertise-keys":
            for node in driver.federation.clients[:3]:
                grid.kill(node)

    driver = FlowerDriver(grid, protocol, timeout=0.5, on_phase_end=on_phase_end)
    fedavg = FlowerFedAvg(protocol, FedAvgConfig(clients=4, rounds=1, seed=3), dataset=digits)
    fedavg.attach(driver)

    history = fedavg.run()

    record = history.records[0]
    assert record.aborted and "share-keys" in record.abort_reason
    assert record.dropouts == {0: "share-keys", 1: "share-keys", 2: "share-keys"}
    assert record.accuracy == history.initial_accuracy
