import json

import numpy as np
import pytest
import torch

from securefl.aggregator import quantise_weights
from securefl.encoding import Encoding, flatten_state
from securefl.errors import ClippingWarning, ConfigurationError
from securefl.fl import FedAvg, FedAvgConfig, load_digits_data
from securefl.protocols import Plaintext, SecretSharing


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=0)


def states_equal(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# -- configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clients", 0),
        ("clients", 2.0),
        ("rounds", 0),
        ("local_epochs", -1),
        ("batch_size", True),
        ("hidden", 0),
        ("lr", 0.0),
        ("lr", float("inf")),
        ("client_fraction", 0.0),
        ("client_fraction", 1.01),
        ("dropout", -0.1),
        ("dropout", 1.5),
        ("partition", "pathological"),
        ("alpha", 0.0),
        ("mu", -1e-3),
        ("mu", float("nan")),
        ("seed", -1),
        ("seed", 0.5),
    ],
)
def test_config_refuses_bad_values_naming_field_and_value(field, value):
    with pytest.raises(ConfigurationError) as error:
        FedAvgConfig(**{field: value})
    assert field in str(error.value) and repr(value) in str(error.value)


def test_clients_per_round_rounds_the_fraction_and_samples_at_least_one():
    assert FedAvgConfig(clients=10, client_fraction=0.25, seed=0).clients_per_round == 3
    assert FedAvgConfig(clients=10, client_fraction=0.01, seed=0).clients_per_round == 1
    assert FedAvgConfig(clients=10, seed=0).clients_per_round == 10


def test_fedavg_refuses_more_clients_than_the_encoding_allows(digits):
    protocol = Plaintext(encoding=Encoding(max_clients=4))
    with pytest.raises(ConfigurationError, match="max_clients"):
        FedAvg(protocol, FedAvgConfig(clients=10, seed=0), dataset=digits)
    FedAvg(protocol, FedAvgConfig(clients=10, client_fraction=0.4, seed=0), dataset=digits)


def test_fedavg_refuses_non_protocols_and_non_configs(digits):
    with pytest.raises(ConfigurationError, match="protocol"):
        FedAvg("plaintext", FedAvgConfig(seed=0), dataset=digits)
    with pytest.raises(ConfigurationError, match="config"):
        FedAvg(Plaintext(), {"clients": 10}, dataset=digits)


# -- weights -----------------------------------------------------------------


def test_weights_are_sample_counts_when_they_fit():
    assert quantise_weights([143, 144, 1], max_weight=256) == [143, 144, 1]
    assert quantise_weights([256], max_weight=256) == [256]


def test_weights_are_scaled_proportionally_when_the_largest_exceeds_max_weight():
    counts = [1000, 500, 250, 3, 1]
    weights = quantise_weights(counts, max_weight=256)
    assert weights == [256, 128, 64, 1, 1]
    counts = [719, 719, 301]
    weights = quantise_weights(counts, max_weight=256)
    assert max(weights) == 256 and min(weights) >= 1
    for count, weight in zip(counts, weights):
        assert abs(weight - count * 256 / 719) <= 0.5


@pytest.mark.parametrize(("counts", "max_weight"), [([], 256), ([0, 3], 256), ([2.5], 256), ([3], 0)])
def test_weights_refuse_bad_input(counts, max_weight):
    with pytest.raises(ConfigurationError):
        quantise_weights(counts, max_weight=max_weight)


def test_large_clients_get_quantised_weights_within_the_encoding(digits):
    # Two clients hold ~719 samples each, above max_weight = 256.
    history = FedAvg(Plaintext(), FedAvgConfig(clients=2, rounds=1, seed=0), dataset=digits).run()
    assert history.records[0].weights == (256, 256)
    protocol = Plaintext(encoding=Encoding(max_weight=16))
    history = FedAvg(protocol, FedAvgConfig(partition="dirichlet", rounds=1, seed=0), dataset=digits).run()
    assert max(history.records[0].weights) == 16 and len(set(history.records[0].weights)) > 1


# -- training ------------------------------------------------------------------


def test_iid_reaches_90_percent_in_20_rounds_with_plaintext_and_secret_sharing_alike(digits):
    config = FedAvgConfig(seed=0)  # 10 IID clients, 20 rounds, seed 0
    plaintext = FedAvg(Plaintext(), config, dataset=digits).run()
    shared = FedAvg(SecretSharing(), config, dataset=digits).run()

    assert len(plaintext.records) == len(shared.records) == 20
    assert plaintext.final_accuracy >= 0.90
    assert shared.final_accuracy >= 0.90
    assert abs(plaintext.final_accuracy - shared.final_accuracy) <= 0.01
    # Secret sharing sums exactly in the ring and the stochastic rounding draws
    # from the same seeded stream, so the two runs are in fact identical.
    assert plaintext.accuracies == shared.accuracies
    assert all(r.server_saw_individual_updates is True for r in plaintext.records)
    assert all(r.server_saw_individual_updates is False for r in shared.records)
    assert plaintext.secure is False and shared.secure is True
    for record in plaintext.records + shared.records:
        assert not record.aborted and record.included == tuple(range(10))
        assert record.bytes_up_per_client > 4 * 4810  # one 32-bit ring coordinate per parameter
        assert record.client_seconds >= record.client_train_seconds > 0
        assert record.seconds > 0 and record.server_seconds > 0


def test_same_seed_same_history_other_seed_other_history(digits):
    config = FedAvgConfig(rounds=3, client_fraction=0.5, dropout=0.3, seed=7)
    first = FedAvg(SecretSharing(), config).run()
    again = FedAvg(SecretSharing(), config).run()
    other = FedAvg(SecretSharing(), FedAvgConfig(rounds=3, client_fraction=0.5, dropout=0.3, seed=8)).run()
    key = lambda h: [(r.accuracy, r.loss, r.sampled, r.included, r.dropouts) for r in h.records]  # noqa: E731
    assert key(first) == key(again)
    assert key(first) != key(other)


def test_run_twice_restarts_from_the_initial_model(digits):
    trainer = FedAvg(Plaintext(), FedAvgConfig(rounds=2, seed=0), dataset=digits)
    first = trainer.run()
    second = trainer.run()
    assert first.accuracies == second.accuracies


def test_aborted_rounds_leave_the_model_unchanged(digits):
    class EveryoneDrops(FedAvg):
        def sample_dropouts(self, sampled):
            # No share reaches the aggregators: the server aborts at 'report'.
            return {position: "upload" for position in range(len(sampled))}

    trainer = EveryoneDrops(SecretSharing(), FedAvgConfig(rounds=2, seed=0), dataset=digits)
    history = trainer.run()
    assert history.aborted_rounds == [0, 1]
    assert states_equal(trainer.global_state, trainer.initial_state)
    for record in history.records:
        assert record.aborted and "report" in record.abort_reason
        assert record.included == () and record.server_saw_individual_updates is None
        assert record.accuracy == history.initial_accuracy
    assert history.final_accuracy == history.initial_accuracy


def test_a_cohort_that_can_never_reach_min_clients_is_refused(digits):
    # Ten clients can never satisfy min_clients=100: a configuration error, not ten aborted rounds.
    with pytest.raises(ConfigurationError, match="min_clients=100"):
        FedAvg(SecretSharing(min_clients=100), FedAvgConfig(rounds=2, seed=0), dataset=digits).run()


def test_an_aborted_round_between_good_rounds_keeps_the_previous_model(digits):
    class AbortRoundOne(FedAvg):
        rounds_seen = 0

        def sample_dropouts(self, sampled):
            # Every client drops at upload in round 1: the plaintext server has nothing.
            self.rounds_seen += 1
            return {position: "upload" for position in range(len(sampled))} if self.rounds_seen == 2 else {}

    history = AbortRoundOne(Plaintext(), FedAvgConfig(rounds=3, seed=0), dataset=digits).run()
    assert history.aborted_rounds == [1]
    assert history.records[1].accuracy == history.records[0].accuracy
    assert history.records[1].loss == history.records[0].loss
    assert history.records[2].loss != history.records[1].loss


def test_dropouts_remove_clients_that_stop_before_sending(digits):
    config = FedAvgConfig(rounds=6, dropout=0.5, seed=1)
    history = FedAvg(SecretSharing(), config, dataset=digits).run()
    phases = [phase for record in history.records for phase in record.dropouts.values()]
    assert phases and set(phases) <= set(SecretSharing.phases)
    for record in history.records:
        assert record.dropped == len(record.dropouts)
        assert set(record.dropouts) <= set(record.sampled)
        assert set(record.included) <= set(record.sampled)
        early = {client for client, phase in record.dropouts.items() if phase == "upload"}
        assert not early & set(record.included)
        if not record.aborted:
            # Aggregators already hold the shares of clients that leave later.
            assert set(record.included) == set(record.sampled) - early
    assert history.final_accuracy > history.initial_accuracy + 0.3


def test_the_same_clients_drop_in_every_protocol_at_one_seed(digits):
    from securefl.protocols.secagg import SecAgg

    config = FedAvgConfig(rounds=4, dropout=0.3, seed=3, local_epochs=1)
    dropped = {}
    for protocol in (Plaintext(), SecretSharing(), SecAgg()):
        trainer = FedAvg(protocol, config, dataset=digits)
        dropped[protocol.name] = [trainer.sample_dropouts(trainer.sample_clients(r)).keys() for r in range(4)]
    assert any(dropped["plaintext"]) and len({str(v) for v in dropped.values()}) == 1, dropped


def test_plaintext_dropout_at_every_client_aborts_every_round(digits):
    history = FedAvg(Plaintext(), FedAvgConfig(rounds=2, dropout=1.0, seed=0), dataset=digits).run()
    assert history.aborted_rounds == [0, 1]
    assert all(set(r.dropouts) == set(r.sampled) for r in history.records)


def test_client_sampling_takes_the_configured_fraction(digits):
    history = FedAvg(Plaintext(), FedAvgConfig(rounds=4, client_fraction=0.3, seed=0), dataset=digits).run()
    samples = [record.sampled for record in history.records]
    assert all(len(s) == 3 and list(s) == sorted(set(s)) for s in samples)
    assert len(set(samples)) > 1


def test_fedprox_runs_and_its_proximal_term_shrinks_local_updates(digits):
    history = FedAvg(Plaintext(), FedAvgConfig(rounds=2, mu=0.1, partition="dirichlet", seed=0), dataset=digits).run()
    assert history.final_accuracy > history.initial_accuracy
    norms = {}
    for mu in (0.0, 1.0):
        trainer = FedAvg(Plaintext(), FedAvgConfig(mu=mu, local_epochs=5, seed=0), dataset=digits)
        state, count = trainer.local_update(0, trainer.initial_state, round=0)
        norms[mu] = np.linalg.norm(flatten_state(state)[0] - flatten_state(trainer.initial_state)[0])
        assert count == trainer.client_indices[0].size
    assert norms[1.0] < 0.8 * norms[0.0]


def test_updates_beyond_the_encoding_clip_are_counted_and_the_step_stays_within_it(digits):
    clip = 0.01
    trainer = FedAvg(Plaintext(encoding=Encoding(clip=clip)), FedAvgConfig(rounds=1, seed=0), dataset=digits)
    state, _ = trainer.local_update(3, trainer.initial_state, round=0)
    update = flatten_state(state)[0] - flatten_state(trainer.initial_state)[0]
    assert np.abs(update).max() > clip  # the local step itself is not cut
    with pytest.warns(ClippingWarning, match="cut to the clip 0.01"):
        history = trainer.run()
    assert history.records[0].clipped_fraction > 0
    step = flatten_state(trainer.global_state)[0] - flatten_state(trainer.initial_state)[0]
    # The mean of clipped updates is within the clip, up to one quantisation step.
    assert np.abs(step).max() <= clip + trainer.protocol.encoding.step


def test_progress_is_called_once_per_round_and_history_is_json(digits):
    seen = []
    trainer = FedAvg(SecretSharing(), FedAvgConfig(rounds=2, dropout=0.5, seed=3), dataset=digits)
    history = trainer.run(progress=seen.append)
    assert [r.round for r in seen] == [0, 1] and seen == history.records
    data = json.loads(json.dumps(history.to_dict()))
    assert data["final_accuracy"] == history.final_accuracy
    assert data["config"]["rounds"] == 2 and data["secure"] is True
    assert len(data["rounds"]) == 2 and set(data["rounds"][0]) >= {
        "round", "accuracy", "loss", "sampled", "included", "dropped", "dropouts", "aborted",
        "bytes_up_per_client", "bytes_down_per_client", "client_seconds", "server_seconds",
        "seconds", "server_saw_individual_updates",
    }


def test_run_leaves_global_random_state_and_thread_count_alone(digits):
    numpy_before = np.random.get_state()[1].copy()
    torch_before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    FedAvg(Plaintext(), FedAvgConfig(rounds=1, dropout=0.5, seed=0), dataset=digits).run()
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    assert torch.equal(torch.random.get_rng_state(), torch_before)
    assert torch.get_num_threads() == threads
