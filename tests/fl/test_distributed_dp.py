import json
import math

import numpy as np
import pytest

from securefl.cli import main
from securefl.errors import ConfigurationError
from securefl.fl.distributed_dp import DistributedDP, DistributedDPFedAvg, minimum_survivors, with_ring_bits
from securefl.fl.fedavg import FedAvgConfig
from securefl.privacy.calibration import epsilon_for
from securefl.privacy.distributed import event_factory
from securefl.protocols import Plaintext, SecAgg, SecretSharing


def _trainer(protocol=None, **overrides):
    dp = DistributedDP(bits=overrides.pop("bits", 16), noise_multiplier=overrides.pop("z", 1.0), clip=0.5,
                       sample_rate=overrides.pop("q", 0.5), noise_seed=3,
                       mechanism=overrides.pop("mechanism", "skellam"))
    config = FedAvgConfig(clients=overrides.pop("clients", 12), rounds=overrides.pop("rounds", 3), hidden=8, seed=1,
                          dropout=overrides.pop("dropout", 0.0))
    return DistributedDPFedAvg(protocol or SecretSharing(min_clients=2), config, dp=dp)


def test_noise_on_the_mean_has_the_calibrated_scale():
    trainer = _trainer(q=0.5, clients=12)
    trainer._round_clients = [0, 1, 2, 3]
    length = trainer._parameter_count()
    mean, result = trainer._aggregate([np.zeros(length)] * 4, [1] * 4, 0)
    expected = trainer.pipeline.noise_std(clients=4, shares=2) / (0.5 * 12)
    assert result is not None and result.included == (0, 1, 2, 3)
    assert result.ring_bits == 16 and result.ring_sum.dtype == np.uint16
    assert mean.std() == pytest.approx(expected, rel=0.1)  # ~600 coordinates
    # every completed round carries at least the central variance: 4 shares of V/2
    assert expected >= trainer.pipeline.noise_multiplier * trainer.pipeline.l2_sensitivity / trainer.pipeline.scale / 6


def test_dropouts_down_to_the_threshold_keep_the_calibrated_noise():
    trainer = _trainer(SecAgg(), q=1.0, clients=6)
    trainer._round_clients = list(range(6))
    threshold = minimum_survivors(trainer.protocol, 6)
    length = trainer._parameter_count()
    dropouts = {0: "masked-input", 1: "masked-input"}
    mean, result = trainer._aggregate([np.zeros(length)] * 6, [1] * 6, 0, dropouts=dropouts)
    assert threshold == 4 and len(result.included) == 4
    central_std = trainer.pipeline.noise_multiplier * trainer.pipeline.l2_sensitivity / trainer.pipeline.scale
    assert mean.std() * 6 == pytest.approx(central_std, rel=0.1)


def test_epsilon_is_the_accountants_for_the_rounds_run():
    trainer = _trainer(rounds=3, q=0.5, z=1.0)
    history = trainer.run()
    pipeline = trainer.pipeline
    factory = event_factory(mechanism="skellam", dimension=pipeline.dimension, scale=pipeline.scale, clip=0.5)
    expected = epsilon_for(noise_multiplier=1.0, sample_rate=0.5, steps=3, delta=1e-5, event_for=factory)
    assert history.records[-1].epsilon == pytest.approx(expected, rel=1e-9)
    assert trainer.server_epsilon() >= history.records[-1].epsilon
    assert all(r.server_saw_individual_updates is False for r in history.records if not r.aborted)
    assert max(trainer.wrap_probabilities) <= 1e-6


def test_a_run_is_reproducible_and_learns():
    first = _trainer(rounds=4, z=0.3).run()
    second = _trainer(rounds=4, z=0.3).run()
    assert [r.accuracy for r in first.records] == [r.accuracy for r in second.records]
    assert first.final_accuracy > first.initial_accuracy + 0.2


def test_target_epsilon_is_calibrated_on_the_mechanisms_own_events():
    config = FedAvgConfig(clients=10, rounds=2, hidden=8, seed=0)
    dp = DistributedDP(bits=18, mechanism="ddgauss", target_epsilon=4.0, sample_rate=0.5, noise_seed=0)
    trainer = DistributedDPFedAvg(SecretSharing(min_clients=3), config, dp=dp)
    history = trainer.run()
    assert history.records[-1].epsilon <= 4.0
    assert trainer.dp.noise_multiplier == trainer.pipeline.noise_multiplier > 0


def test_minimum_survivors_follows_each_protocol():
    assert minimum_survivors(SecAgg(), 10) == 6
    assert minimum_survivors(SecAgg(threshold=1.0), 10) == 10
    assert minimum_survivors(SecretSharing(min_clients=3), 10) == 3
    assert minimum_survivors(SecretSharing(min_clients=3), 2) == 2
    assert minimum_survivors(Plaintext(), 10) == 2
    assert minimum_survivors(Plaintext(min_clients=1), 10) == 1
    assert minimum_survivors(SecAgg(min_clients=8), 10) == 8


def test_with_ring_bits_keeps_the_protocol_and_its_threshold():
    protocol = with_ring_bits(SecAgg(threshold=0.75), 18)
    assert isinstance(protocol, SecAgg) and protocol.threshold == 0.75
    assert protocol.encoding.ring_bits == protocol.ring_bits == 18 and protocol.encoding.clip == 1.0
    with pytest.raises(ConfigurationError, match="found 80"):
        with_ring_bits(SecAgg(), 80)


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(bits=1, noise_multiplier=1.0), "found 1"), (dict(mechanism="gauss", noise_multiplier=1.0), "found 'gauss'"),
     (dict(noise_multiplier=1.0, target_epsilon=2.0), "exactly one"),
     (dict(noise_multiplier=1.0, sample_rate=0.0), "found 0.0"),
     (dict(noise_multiplier=1.0, accountant="pld"), "RDP accountant only")],
)
def test_bad_parameters_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        DistributedDP(**options)


def test_cli_run_distributed_json(capsys):
    code = main(["run", "--protocol", "secagg", "--dp", "distributed", "--epsilon", "8", "--bits", "16",
                 "--clients", "8", "--rounds", "2", "--hidden", "8", "--sample-rate", "0.5", "--json", "--quiet"])
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
