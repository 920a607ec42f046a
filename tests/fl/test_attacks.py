"""Model replacement through FedAvg: averaged in by plain sharing, rejected by validated sharing's verification."""

import pytest
import torch

from securefl.errors import ConfigurationError
from securefl.fl import FedAvg, FedAvgConfig, ModelReplacement
from securefl.protocols.catalog import make_protocol


def test_poison_boosts_the_update_from_the_reference():
    attack = ModelReplacement(clients=(1,), boost=10.0)
    reference = {"w": torch.zeros(3), "steps": torch.tensor([4])}
    local = {"w": torch.tensor([1.0, -2.0, 0.5]), "steps": torch.tensor([5])}
    poisoned = attack.poison(local, reference)
    assert torch.equal(poisoned["w"], torch.tensor([10.0, -20.0, 5.0]))
    assert torch.equal(poisoned["steps"], torch.tensor([5]))


@pytest.mark.parametrize("options", [dict(clients=()), dict(clients=(-1,)), dict(clients=(1, 1)),
                                     dict(clients=(0,), boost=0.0), dict(clients=(0,), boost=float("inf"))])
def test_invalid_attacks_are_refused(options):
    with pytest.raises(ConfigurationError):
        ModelReplacement(**options)


def test_an_attacker_outside_the_federation_is_refused():
    with pytest.raises(ConfigurationError, match="not among the 4 clients"):
        FedAvg(make_protocol("secret-sharing"), FedAvgConfig(clients=4, rounds=1, seed=0),
               attack=ModelReplacement(clients=(7,)))


@pytest.mark.filterwarnings("ignore::securefl.errors.ClippingWarning")
def test_validated_sharing_rejects_the_boosted_client_every_round_and_plain_sharing_does_not():
    config = FedAvgConfig(clients=4, rounds=2, local_epochs=1, seed=1)
    attack = ModelReplacement(clients=(2,), boost=100.0)
    validated = FedAvg(make_protocol("validated-sharing"), config, attack=attack).run()
    for record in validated.records:
        assert record.rejected == {2: "norm-exceeded"}
        assert record.included == (0, 1, 3)
        assert record.l2_clip_fraction == 0.0  # the honest clients were within the bound
    plain = FedAvg(make_protocol("secret-sharing"), config, attack=attack).run()
    assert all(record.rejected == {} and record.included == (0, 1, 2, 3) for record in plain.records)
    clean = FedAvg(make_protocol("validated-sharing"), config).run()
    assert all(record.rejected == {} for record in clean.records)
    assert validated.records[0].to_dict()["rejected"] == {"2": "norm-exceeded"}


def test_validated_sharing_under_central_dp_still_rejects_the_boosted_client():
    from securefl import CentralDP

    config = FedAvgConfig(clients=4, rounds=1, local_epochs=1, seed=1)
    dp = CentralDP(noise_multiplier=0.5, clip=1.0, rng=__import__("numpy").random.default_rng(3))
    run = FedAvg(make_protocol("validated-sharing"), config, dp=dp,
                 attack=ModelReplacement(clients=(2,), boost=100.0)).run()
    assert run.records[0].rejected == {2: "norm-exceeded"} and run.records[0].included == (0, 1, 3)
