"""FedAvg with DP as a plugin: central and distributed noise through one FedAvg, no subclass."""

import json
import math

import numpy as np
import pytest

from securefl.cli import main
from securefl.errors import ConfigurationError
from securefl.fl.fedavg import FedAvg, FedAvgConfig
from securefl.privacy.calibration import epsilon_for
from securefl.privacy.distributed import event_factory
from securefl.privacy.plugins import CentralDP, DistributedDP
from securefl.protocols import SecAgg, SecretSharing


def _central(**overrides):
    dp = CentralDP(noise_multiplier=overrides.pop("z", 1.5), clip=0.5, sample_rate=overrides.pop("q", 0.5))
    config = FedAvgConfig(clients=overrides.pop("clients", 20), rounds=overrides.pop("rounds", 3), hidden=8, seed=1)
    return FedAvg(SecretSharing(), config, dp=dp)


def _distributed(protocol=None, **overrides):
    dp = DistributedDP(bits=overrides.pop("bits", 16), noise_multiplier=overrides.pop("z", 1.0), clip=0.5,
                       sample_rate=overrides.pop("q", 0.5), mechanism=overrides.pop("mechanism", "skellam"))
    config = FedAvgConfig(clients=overrides.pop("clients", 12), rounds=overrides.pop("rounds", 3), hidden=8, seed=1)
    return FedAvg(protocol or SecretSharing(min_clients=2), config, dp=dp)


def test_central_epsilon_is_the_accountants_for_the_rounds_run():
    trainer = _central(rounds=4, q=0.5, z=1.5)
    history = trainer.run()
    expected = epsilon_for(noise_multiplier=1.5, sample_rate=0.5, steps=4, delta=1e-5)
    assert history.records[-1].epsilon == pytest.approx(expected, rel=1e-9)
    assert [r.epsilon for r in history.records] == sorted(r.epsilon for r in history.records)
    assert all(r.l2_clip_fraction is not None for r in history.records if not r.aborted)


def test_central_poisson_sampling_rate_and_reproducibility():
    first = _central(clients=40, q=0.25, rounds=6).run()
    second = _central(clients=40, q=0.25, rounds=6).run()
    sampled = [len(r.sampled) for r in first.records]
    assert 0.1 < np.mean(sampled) / 40 < 0.4
    assert [r.accuracy for r in first.records] == [r.accuracy for r in second.records]


def test_without_a_seed_two_runs_differ():
    config = FedAvgConfig(clients=20, rounds=2, hidden=8)
    first = FedAvg(SecretSharing(), config, dp=CentralDP(noise_multiplier=1.0, sample_rate=0.5)).run()
    second = FedAvg(SecretSharing(), config, dp=CentralDP(noise_multiplier=1.0, sample_rate=0.5)).run()
    assert [r.sampled for r in first.records] != [r.sampled for r in second.records] or \
        [r.loss for r in first.records] != [r.loss for r in second.records]


def test_without_a_seed_dp_clients_are_sampled_from_the_os_csprng(monkeypatch):
    import os

    from securefl.fl import fedavg

    drawn = []
    urandom = os.urandom

    def counting_urandom(count):
        drawn.append(count)
        return urandom(count)

    monkeypatch.setattr(fedavg.os, "urandom", counting_urandom)
    trainer = FedAvg(SecretSharing(), FedAvgConfig(clients=100, rounds=1, hidden=8),
                     dp=CentralDP(noise_multiplier=1.0, sample_rate=0.25, population=100))
    drawn.clear()
    samples = [trainer.sample_clients(r) for r in range(80)]
    assert drawn == [8 * 100] * 80  # 8 bytes (53 bits used) per client and round, nothing from a seeded stream
    rate = np.mean([len(sample) for sample in samples]) / 100  # 8000 Bernoulli(0.25): sd 0.0048
    assert abs(rate - 0.25) < 0.025
    assert trainer.summary()["client_sampling"] == "os-csprng"
    seeded, again = _central(), _central()
    assert seeded.summary()["client_sampling"] == "seeded"
    assert [seeded.sample_clients(r) for r in range(3)] == [again.sample_clients(r) for r in range(3)]


def test_os_uniforms_are_uniform_on_the_unit_interval():
    from scipy import stats

    from securefl.fl.fedavg import os_uniforms

    values = os_uniforms(20_000)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert stats.kstest(values, "uniform").pvalue > 1e-4


def test_central_clip_below_the_rounding_error_is_refused():
    with pytest.raises(ConfigurationError, match="rounding error"):
        FedAvg(SecretSharing(), FedAvgConfig(rounds=1, seed=0), dp=CentralDP(noise_multiplier=1.0, clip=0.01)).run()


def test_dp_refuses_client_fraction_and_a_foreign_population():
    with pytest.raises(ConfigurationError, match="client_fraction"):
        FedAvg(SecretSharing(), FedAvgConfig(client_fraction=0.5, seed=0), dp=CentralDP(noise_multiplier=1.0))
    with pytest.raises(ConfigurationError, match="population=7"):
        FedAvg(SecretSharing(), FedAvgConfig(seed=0), dp=CentralDP(noise_multiplier=1.0, population=7))


def test_distributed_epsilon_is_the_accountants_and_bounds_the_servers():
    trainer = _distributed(rounds=3, q=0.5, z=1.0)
    history = trainer.run()
    pipeline = trainer.aggregator.dp.pipeline
    factory = event_factory(mechanism="skellam", dimension=pipeline.dimension, scale=pipeline.scale, clip=0.5)
    expected = epsilon_for(noise_multiplier=1.0, sample_rate=0.5, steps=3, delta=1e-5, event_for=factory)
    assert history.records[-1].epsilon == pytest.approx(expected, rel=1e-9)
    summary = trainer.summary()
    assert summary["server_epsilon"] >= history.records[-1].epsilon
    assert all(r.server_saw_individual_updates is False for r in history.records if not r.aborted and r.included)
    assert summary["wrap_probability_max"] <= 1e-6


def test_distributed_run_is_reproducible_and_learns():
    first = _distributed(rounds=4, z=0.3).run()
    second = _distributed(rounds=4, z=0.3).run()
    assert [r.accuracy for r in first.records] == [r.accuracy for r in second.records]
    assert first.final_accuracy > first.initial_accuracy + 0.2


def test_distributed_target_epsilon_is_calibrated_on_the_mechanisms_own_events():
    config = FedAvgConfig(clients=10, rounds=2, hidden=8, seed=0)
    dp = DistributedDP(bits=18, mechanism="ddgauss", target_epsilon=4.0, rounds=2, sample_rate=0.5)
    trainer = FedAvg(SecretSharing(min_clients=3), config, dp=dp)
    history = trainer.run()
    assert history.records[-1].epsilon <= 4.0
    assert trainer.summary()["noise_multiplier"] > 0


def test_central_cli_reports_epsilon_and_parameters(capsys):
    code = main(["run", "--protocol", "secret-sharing", "--clients", "20", "--rounds", "3", "--hidden", "8",
                 "--dp", "central", "--epsilon", "8", "--delta", "1e-5", "--sample-rate", "0.5", "--json", "--quiet",
                 "--seed", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dp"] == "central"
    assert 7.9 < summary["epsilon"] <= 8.0
    assert summary["delta"] == 1e-5 and summary["clip"] == 1.0 and summary["noise_multiplier"] > 0


def test_distributed_cli_run_json(capsys):
    code = main(["run", "--protocol", "secagg", "--dp", "distributed", "--epsilon", "8", "--bits", "16",
                 "--clients", "8", "--rounds", "2", "--hidden", "8", "--sample-rate", "0.5", "--json", "--quiet",
                 "--seed", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["dp"] == "distributed" and summary["mechanism"] == "skellam"
    assert summary["epsilon"] <= 8.0 and summary["bits"] == 16 and "16-bit ring" in summary["description"]
    assert summary["wrap_probability_max"] <= 1e-4 and math.isfinite(summary["server_epsilon"])
    assert summary["server_saw_individual_updates"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--bits", "16"], "--bits needs --dp distributed"),
     (["--dp", "distributed", "--epsilon", "8", "--accountant", "pld"], "accountant rdp only"),
     (["--dp", "distributed", "--epsilon", "8", "--threshold", "0.8", "--protocol", "plaintext"], "share threshold"),
     (["--dp", "distributed"], "exactly one of --epsilon and --noise-multiplier")],
)
def test_cli_distributed_flags_are_checked(argv, message, capsys):
    code = main(["run", "--clients", "4", "--rounds", "1", "--quiet", *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_distributed_dp_needs_a_modular_sum(digits=None):
    from securefl.protocols import Paillier

    with pytest.raises(ConfigurationError, match="modular_sum"):
        FedAvg(Paillier(key_bits=1024), FedAvgConfig(clients=4, rounds=1, hidden=8, seed=0),
               dp=DistributedDP(noise_multiplier=1.0)).run()


def test_secagg_threshold_sets_the_distributed_shares():
    trainer = _distributed(SecAgg(), q=1.0, clients=6, rounds=1)
    trainer.run()
    assert trainer.summary()["design_threshold"] == SecAgg().minimum_inputs(6) == 4


@pytest.mark.parametrize("against", ["release", "server"])
def test_distributed_dp_meets_its_target_against_whom_it_says(against):
    from securefl.privacy.accountant import RDPAccountant

    dp = DistributedDP(target_epsilon=4.0, delta=1e-5, rounds=10, sample_rate=0.3, population=50, clip=1.0,
                       against=against)
    dp.bind(SecretSharing(min_clients=2), dimension=200, cohort=15)
    accountant = RDPAccountant()
    accountant.compose(dp.pipeline.event(sample_rate=0.3, shares=dp._design_shares), count=10)
    released, server = accountant.get_epsilon(1e-5), dp.server_epsilon(10)
    assert dp.summary()["dp_against"] == against
    assert released < server  # the server knows the sample: no amplification
    met = released if against == "release" else server
    assert 3.9 < met <= 4.0 + 1e-9


def test_dp_against_server_needs_distributed_dp_and_a_target(capsys):
    assert main(["run", "--dp", "central", "--epsilon", "8", "--dp-against", "server", "--quiet"]) == 2
    assert "--dp-against needs --dp distributed" in capsys.readouterr().err
    assert main(["run", "--dp", "distributed", "--noise-multiplier", "1", "--dp-against", "server", "--quiet"]) == 2
    assert "--dp-against server calibrates --epsilon" in capsys.readouterr().err


def test_a_sampled_cohort_below_min_clients_aborts_after_its_event_is_charged():
    from securefl.aggregator import SecureAggregator
    from securefl.errors import ProtocolAbort

    aggregator = SecureAggregator(SecretSharing(min_clients=3), dp=CentralDP(noise_multiplier=1.0, sample_rate=0.5,
                                                                             population=10))
    aggregator.aggregate_vectors([np.zeros(4)] * 3)
    before = aggregator.epsilon
    with pytest.raises(ProtocolAbort, match="min_clients=3"):
        aggregator.aggregate_vectors([np.zeros(4)] * 2)
    assert aggregator.epsilon > before


def test_against_the_server_needs_a_target_in_the_plugin_too():
    with pytest.raises(ConfigurationError, match="calibrates target_epsilon"):
        DistributedDP(noise_multiplier=1.0, against="server")
