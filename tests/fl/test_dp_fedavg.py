import json

import numpy as np
import pytest

from securefl.cli import main
from securefl.errors import ConfigurationError
from securefl.fl.dp import CentralDP, DPFedAvg
from securefl.fl.fedavg import FedAvgConfig
from securefl.privacy.calibration import epsilon_for
from securefl.protocols import SecretSharing


def _trainer(**overrides):
    dp = CentralDP(noise_multiplier=overrides.pop("z", 1.5), clip=0.5, sample_rate=overrides.pop("q", 0.5),
                   noise_seed=3)
    config = FedAvgConfig(clients=overrides.pop("clients", 20), rounds=overrides.pop("rounds", 3), hidden=8, seed=1)
    return DPFedAvg(SecretSharing(), config, dp=dp)


def test_noise_on_the_mean_has_the_calibrated_scale():
    trainer = _trainer(clients=20, q=0.5, z=1.5)
    length = trainer._parameter_count()
    zeros = [np.zeros(length) for _ in range(4)]
    mean, result = trainer._aggregate(zeros, [1] * 4, 0)
    expected_std = 1.5 * 0.5 / (0.5 * 20)
    assert result is not None and result.included == (0, 1, 2, 3)
    assert abs(mean.std() / expected_std - 1) < 0.1  # ~770 coordinates
    assert abs(mean.mean()) < 4 * expected_std / np.sqrt(length)


def test_epsilon_is_the_accountants_for_the_rounds_run():
    trainer = _trainer(rounds=4, q=0.5, z=1.5)
    history = trainer.run()
    expected = epsilon_for(noise_multiplier=1.5, sample_rate=0.5, steps=4, delta=1e-5)
    assert history.records[-1].epsilon == pytest.approx(expected, rel=1e-9)
    assert [r.epsilon for r in history.records] == sorted(r.epsilon for r in history.records)


def test_poisson_sampling_rate_and_reproducibility():
    first = _trainer(clients=40, q=0.25, rounds=6).run()
    second = _trainer(clients=40, q=0.25, rounds=6).run()
    sampled = [len(r.sampled) for r in first.records]
    assert 0.1 < np.mean(sampled) / 40 < 0.4
    assert [r.accuracy for r in first.records] == [r.accuracy for r in second.records]
    assert all(r.weights == (1,) * len(r.sampled) for r in first.records)


def test_encoded_updates_stay_within_the_l2_bound():
    """The sensitivity the noise is calibrated to holds for what is summed: the quantised update."""
    trainer = _trainer()
    encoding = trainer.protocol.encoding
    rng = np.random.default_rng(0)
    for client in range(5):
        update, _ = trainer._local_update(client, trainer.global_state, round=0)
        for _ in range(20):
            decoded, weight = encoding.decode_sum(encoding.encode(update, weight=1, rng=rng))
            assert weight == 1
            assert np.linalg.norm(decoded) <= 0.5


def test_clip_below_the_rounding_error_is_refused():
    with pytest.raises(ConfigurationError, match="rounding error"):
        DPFedAvg(SecretSharing(), FedAvgConfig(hidden=64), dp=CentralDP(noise_multiplier=1.0, clip=0.01))


def test_calibration_meets_the_target():
    dp = CentralDP.for_target(epsilon=3.0, delta=1e-5, rounds=10, sample_rate=0.2)
    assert epsilon_for(noise_multiplier=dp.noise_multiplier, sample_rate=0.2, steps=10, delta=1e-5) <= 3.0


@pytest.mark.parametrize(
    "field, value",
    [("clip", 0), ("sample_rate", 1.5), ("delta", 1.0), ("noise_multiplier", -1), ("accountant", "x")],
)
def test_bad_parameters_refused(field, value):
    parameters = dict(noise_multiplier=1.0, clip=1.0, sample_rate=0.5, delta=1e-5, accountant="rdp")
    parameters[field] = value
    with pytest.raises(ConfigurationError):
        CentralDP(**parameters)


def test_dp_refuses_client_fraction():
    with pytest.raises(ConfigurationError, match="client_fraction"):
        DPFedAvg(SecretSharing(), FedAvgConfig(client_fraction=0.5), dp=CentralDP(noise_multiplier=1.0))


def test_cli_reports_epsilon_and_parameters(capsys):
    code = main(["run", "--protocol", "secret-sharing", "--clients", "20", "--rounds", "3", "--hidden", "8",
                 "--dp", "central", "--epsilon", "8", "--delta", "1e-5", "--sample-rate", "0.5", "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dp"] == "central"
    assert 7.9 < summary["epsilon"] <= 8.0
    assert summary["delta"] == 1e-5 and summary["clip"] == 1.0 and summary["noise_multiplier"] > 0
