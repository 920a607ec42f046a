"""SecureAggregator: the user's own structures, sample counts of any size, buffers, clipping, DP plugins."""

import warnings

import numpy as np
import pytest
import torch

from securefl.aggregator import Layout, SecureAggregator, quantise_weights, weight_error
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate, ProtocolAbort
from securefl.privacy.plugins import CentralDP, DistributedDP
from securefl.protocols import Paillier, Plaintext, SecAgg, SecretSharing
from securefl.simulation import server_saw_individual_updates


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 3))


def _perturbed(reference, scale, rng):
    state = {}
    for name, value in reference.items():
        if value.is_floating_point():
            noise = torch.from_numpy(rng.normal(0, scale, size=tuple(value.shape))).to(value.dtype)
            state[name] = value + noise
        else:
            state[name] = value + int(rng.integers(1, 5))
    return state


@pytest.mark.parametrize("protocol", [SecAgg(), SecretSharing(), Paillier(key_bits=1024)], ids=lambda p: p.name)
def test_state_dict_mean_keeps_structure_and_dtypes_and_is_exact_within_quantisation(protocol):
    rng = np.random.default_rng(0)
    reference = _net().state_dict()
    updates = [{k: v - reference[k] for k, v in _perturbed(reference, 0.05, rng).items()} for _ in range(4)]
    aggregate = SecureAggregator(protocol, rng=np.random.default_rng(1)).aggregate(updates)
    assert list(aggregate.mean) == list(reference)
    for name, value in aggregate.mean.items():
        assert value.dtype == reference[name].dtype and value.shape == reference[name].shape
    layout = Layout.of(updates[0], buffers="skip")
    exact = np.mean([layout.flatten(u, client=i) for i, u in enumerate(updates)], axis=0)
    mean = layout.flatten(aggregate.mean, client=0)
    # stochastic rounding moves each coordinate by less than one step; float32 storage adds its own rounding
    assert np.abs(mean - exact).max() <= protocol.encoding.step + 1e-6
    assert aggregate.metrics["skipped_entries"] == ["1.num_batches_tracked"]
    assert aggregate.included == (0, 1, 2, 3) and aggregate.epsilon is None
    assert server_saw_individual_updates(aggregate.result, [layout.flatten(u, client=0) for u in updates]) is False


def test_aggregate_models_adds_the_mean_update_back_and_keeps_the_reference_buffers():
    rng = np.random.default_rng(2)
    net = _net()
    reference = net.state_dict()
    states = [_perturbed(reference, 0.02, rng) for _ in range(3)]
    aggregate = SecureAggregator(SecretSharing(), rng=np.random.default_rng(3)).aggregate_models(
        states, reference=reference, weights=[10, 20, 30])
    model = aggregate.model
    assert torch.equal(model["1.num_batches_tracked"], reference["1.num_batches_tracked"])
    running_var = np.average([s["1.running_var"].numpy() for s in states], axis=0, weights=[1, 2, 3])
    assert np.abs(model["1.running_var"].numpy() - running_var).max() < 1e-3  # a variance of ~1 stays ~1
    net.load_state_dict(model)  # loads: same names, shapes and dtypes


def test_sample_counts_from_1_to_100000_within_the_reported_weight_error():
    rng = np.random.default_rng(4)
    counts = [1, 7, 300, 4_000, 100_000]
    updates = [rng.uniform(-0.5, 0.5, size=200) for _ in counts]
    aggregate = SecureAggregator(SecAgg(), rng=np.random.default_rng(5)).aggregate(updates, weights=counts)
    exact = np.average(updates, axis=0, weights=counts)
    error = aggregate.metrics["weight_error"]
    assert 0 < error < 0.05
    bound = error * max(np.abs(u).max() for u in updates) + SecAgg().encoding.step
    assert np.abs(aggregate.mean - exact).max() <= bound
    assert aggregate.metrics["weights"] == quantise_weights(counts, max_weight=SecAgg().encoding.max_weight)
    assert weight_error(counts, counts) == 0.0


def test_buffers_error_policy_refuses_integer_entries():
    state = _net().state_dict()
    with pytest.raises(InvalidUpdate, match="num_batches_tracked"):
        SecureAggregator(SecAgg(), buffers="error").aggregate([state, state])
    with pytest.raises(ConfigurationError, match="buffers"):
        SecureAggregator(SecAgg(), buffers="average")


def test_updates_of_other_structures_and_non_finite_values_are_refused_naming_the_client():
    aggregator = SecureAggregator(SecAgg())
    with pytest.raises(InvalidUpdate, match="client 1"):
        aggregator.aggregate([{"w": torch.zeros(3)}, {"w": torch.zeros(4)}])
    with pytest.raises(InvalidUpdate, match="client 1 holds 1 NaN"):
        SecureAggregator(SecAgg()).aggregate([np.zeros(3), np.array([0.0, np.nan, 0.0])])
    with pytest.raises(InvalidUpdate, match="state_dict, a tensor"):
        SecureAggregator(SecAgg()).aggregate([object(), object()])


def test_tensors_arrays_and_lists_come_back_as_they_went_in():
    rng = np.random.default_rng(6)
    tensors = [torch.from_numpy(rng.normal(0, 0.1, size=(2, 3))).float() for _ in range(3)]
    mean = SecureAggregator(SecAgg(), rng=np.random.default_rng(0)).aggregate(tensors).mean
    assert isinstance(mean, torch.Tensor) and mean.dtype == torch.float32 and mean.shape == (2, 3)
    arrays = [[rng.normal(0, 0.1, size=4), rng.normal(0, 0.1, size=(2, 2))] for _ in range(3)]
    mean = SecureAggregator(SecAgg(), rng=np.random.default_rng(0)).aggregate(arrays).mean
    assert isinstance(mean, list) and [m.shape for m in mean] == [(4,), (2, 2)]


def test_clipping_is_counted_and_warned_once():
    updates = [[0.5] * 5, [3, 0.1, -7, 0.2, 0]]
    with pytest.warns(ClippingWarning) as caught:
        aggregate = SecureAggregator(SecAgg(), rng=np.random.default_rng(0)).aggregate(updates)
    assert len(caught) == 1 and "2 of 10 coordinates" in str(caught[0].message)
    assert aggregate.metrics["clipped_coordinates"] == 2 and aggregate.metrics["clipped_fraction"] == 0.2


def test_rounds_count_up_and_a_structure_change_between_rounds_is_refused():
    aggregator = SecureAggregator(SecAgg(), rng=np.random.default_rng(0))
    aggregator.aggregate([np.zeros(4), np.zeros(4)])
    aggregator.aggregate([np.zeros(4), np.zeros(4)])
    assert aggregator.rounds == 2
    with pytest.raises(InvalidUpdate):
        aggregator.aggregate([np.zeros(5), np.zeros(5)])


def test_a_cohort_of_one_is_refused_by_every_secure_protocol():
    for protocol in (SecAgg(), SecretSharing(), Plaintext()):
        with pytest.raises(ConfigurationError, match="min_clients"):
            SecureAggregator(protocol).aggregate([np.zeros(3)])


# -- DP plugins ---------------------------------------------------------------------------


def test_central_noise_on_the_mean_has_the_calibrated_scale_and_epsilon_grows():
    dp = CentralDP(noise_multiplier=1.5, clip=0.5, sample_rate=0.5, population=20, rng=np.random.default_rng(3))
    aggregator = SecureAggregator(SecretSharing(), dp=dp, rng=np.random.default_rng(4))
    zeros = [np.zeros(2000) for _ in range(4)]
    aggregate = aggregator.aggregate(zeros)
    expected_std = 1.5 * 0.5 / (0.5 * 20)
    assert aggregate.included == (0, 1, 2, 3) and aggregate.weight_total == 4
    assert abs(aggregate.mean.std() / expected_std - 1) < 0.05
    first = aggregate.epsilon
    second = aggregator.aggregate(zeros).epsilon
    assert 0 < first < second


def test_central_dp_refuses_weights_and_keeps_the_quantised_update_within_the_clip():
    dp = CentralDP(noise_multiplier=1.0, clip=0.5)
    aggregator = SecureAggregator(SecAgg(), dp=dp, rng=np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="weighs 1"):
        aggregator.aggregate([np.ones(10), np.ones(10)], weights=[1, 2])
    protocol = aggregator.bound_protocol(10, 2)
    plan = aggregator.open_round(cohort=1, dimension=10)
    encoding = protocol.encoding
    for _ in range(50):
        stage = aggregator.client_input(plan, np.full(10, 3.0), position=0)
        decoded, weight = encoding.decode_sum(stage.vector)
        assert weight == 1 and stage.l2_clipped and np.linalg.norm(decoded) <= 0.5


def test_dp_events_are_charged_for_aborted_and_empty_rounds():
    dp = CentralDP(noise_multiplier=1.0, sample_rate=0.5, population=10)
    aggregator = SecureAggregator(SecretSharing(min_clients=3), dp=dp, rng=np.random.default_rng(0))
    aggregator.aggregate([np.zeros(5)] * 3)
    one = aggregator.epsilon
    with pytest.raises(ProtocolAbort):
        aggregator.aggregate([np.zeros(5)] * 3, dropouts={0: "upload", 1: "upload"})
    two = aggregator.epsilon
    empty = aggregator.aggregate([])  # nobody sampled: the noise is still released
    assert empty.included == () and empty.mean.shape == (5,) and np.any(empty.mean != 0)
    assert one < two < aggregator.epsilon


def test_distributed_noise_survives_dropouts_down_to_the_threshold():
    dp = DistributedDP(noise_multiplier=1.0, clip=0.5, rng=np.random.default_rng(1))
    aggregator = SecureAggregator(SecAgg(), dp=dp, rng=np.random.default_rng(2))
    aggregate = aggregator.aggregate([np.zeros(600)] * 6, dropouts={0: "masked-input", 1: "masked-input"})
    pipeline = dp.pipeline
    assert len(aggregate.included) == 4 == SecAgg().minimum_inputs(6)
    assert aggregate.result.ring_bits == 16 and aggregate.result.ring_sum.dtype == np.uint16
    central_std = pipeline.noise_multiplier * pipeline.l2_sensitivity / pipeline.scale
    assert aggregate.mean.std() * 6 == pytest.approx(central_std, rel=0.1)
    assert aggregator.server_epsilon >= aggregate.epsilon > 0


def test_distributed_dp_is_refused_for_paillier_by_its_declaration():
    assert Paillier.modular_sum is False and SecAgg.modular_sum is True
    with pytest.raises(ConfigurationError, match="modular_sum"):
        SecureAggregator(Paillier(key_bits=1024), dp=DistributedDP(noise_multiplier=1.0)).aggregate([np.zeros(3)] * 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(bits=1, noise_multiplier=1.0), "bits"), (dict(mechanism="gauss", noise_multiplier=1.0), "found 'gauss'"),
     (dict(noise_multiplier=1.0, target_epsilon=2.0), "exactly one"),
     (dict(target_epsilon=2.0), "rounds"),
    ],
)
def test_distributed_bad_parameters_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        DistributedDP(**options)


@pytest.mark.parametrize(
    "field, value",
    [("clip", 0), ("sample_rate", 1.5), ("delta", 1.0), ("noise_multiplier", -1), ("accountant", "x")],
)
def test_central_bad_parameters_refused(field, value):
    parameters = dict(noise_multiplier=1.0, clip=1.0, sample_rate=0.5, population=10, delta=1e-5, accountant="rdp")
    parameters[field] = value
    with pytest.raises(ConfigurationError):
        CentralDP(**parameters)


def test_central_target_epsilon_is_met():
    from securefl.privacy.calibration import epsilon_for

    dp = CentralDP(target_epsilon=3.0, delta=1e-5, rounds=10, sample_rate=0.2, population=100)
    assert epsilon_for(noise_multiplier=dp.z, sample_rate=0.2, steps=10, delta=1e-5) <= 3.0


def test_protocol_minimum_inputs_follows_each_protocol():
    assert SecAgg().minimum_inputs(10) == 6
    assert SecAgg(threshold=1.0).minimum_inputs(10) == 10
    assert SecretSharing(min_clients=3).minimum_inputs(10) == 3
    assert SecretSharing(min_clients=3).minimum_inputs(2) == 2
    assert Plaintext().minimum_inputs(10) == 2
    assert SecAgg(min_clients=8).minimum_inputs(10) == 8


def test_with_encoding_keeps_the_protocol_and_its_threshold():
    from securefl.encoding import Encoding

    protocol = SecAgg(threshold=0.75).with_encoding(Encoding(value_bits=2, ring_bits=18, max_clients=1000,
                                                             max_weight=1))
    assert isinstance(protocol, SecAgg) and protocol.threshold == 0.75
    assert protocol.encoding.ring_bits == protocol.ring_bits == 18


def test_no_warning_escapes_a_clean_round():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SecureAggregator(SecAgg(), rng=np.random.default_rng(0)).aggregate([np.zeros(3), np.full(3, 0.5)])


def test_a_sampling_rate_below_one_needs_the_population():
    aggregator = SecureAggregator(SecAgg(), dp=DistributedDP(noise_multiplier=1.0, sample_rate=0.5))
    with pytest.raises(ConfigurationError, match="population"):
        aggregator.aggregate([np.zeros(3)] * 2)


def test_a_target_calibrated_plugin_survives_dataclasses_replace():
    import dataclasses

    dp = CentralDP(target_epsilon=3.0, rounds=5)
    copy = dataclasses.replace(dp, population=10)
    assert copy.z == dp.z > 0 and copy.noise_multiplier is None


def test_the_protocols_setup_is_counted_apart_from_the_phases():
    # Paillier makes its obfuscators in setup, before any update exists: that time is reported, not hidden.
    aggregate = SecureAggregator(Paillier(key_bits=1024), rng=np.random.default_rng(0)).aggregate([np.zeros(50)] * 2)
    assert aggregate.metrics["setup_seconds"] > 0
    phases = aggregate.metrics["seconds_per_phase_per_party"]
    assert "setup" not in phases  # the phases hold only the engines' own message handling
