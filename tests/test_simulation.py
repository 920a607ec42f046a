import warnings

import numpy as np
import pytest
import torch

from securefl.encoding import Encoding, flatten_state
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate, ProtocolAbort
from securefl.protocols import Plaintext, SecAgg, SecretSharing
from securefl.protocols.wire import decode_message
from securefl.simulation import secure_sum, server_saw_individual_updates


def _updates(clients=5, length=400, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.2, size=length) for _ in range(clients)]


def test_plaintext_audit_says_true_and_sum_is_right():
    updates = _updates()
    result = secure_sum(Plaintext(), updates, seed=1)
    assert result.secure is False
    assert server_saw_individual_updates(result, updates)
    assert np.max(np.abs(result.total - np.sum(updates, axis=0))) <= 5 * Plaintext().encoding.step


def test_audit_is_false_for_secret_sharing_even_with_correlated_updates():
    rng = np.random.default_rng(2)
    common = rng.normal(scale=0.2, size=400)
    updates = [common + rng.normal(scale=0.02, size=400) for _ in range(5)]
    result = secure_sum(SecretSharing(), updates, seed=1)
    assert not server_saw_individual_updates(result, updates)


def test_audit_flags_an_aggregate_of_one_client():
    updates = _updates(clients=3)
    result = secure_sum(SecretSharing(min_clients=1), updates, dropouts={0: "upload", 1: "upload"}, seed=0)
    assert result.included == (2,)
    assert server_saw_individual_updates(result, updates)


def test_transcript_is_what_the_server_received():
    updates = _updates(clients=3)
    result = secure_sum(Plaintext(), updates, dropouts={1: "upload"}, seed=0)
    assert [entry.sender for entry in result.transcript] == ["client/0", "client/2"]
    assert all(entry.phase == "upload" for entry in result.transcript)
    assert sum(len(entry.payload) for entry in result.transcript) == result.metrics["bytes_server_received"]
    assert all(decode_message(entry.payload).sender == entry.sender for entry in result.transcript)


def test_metrics_report_bytes_and_seconds_per_phase_and_party():
    result = secure_sum(SecretSharing(), _updates(), seed=0)
    metrics = result.metrics
    assert metrics["bytes_up_per_client"] > 4 * 400
    assert metrics["bytes_down_per_client"] > 0
    assert set(metrics["seconds_per_phase_per_party"]) >= {"upload", "report", "aggregate"}
    assert "aggregator/0" in metrics["seconds_per_phase_per_party"]["aggregate"]
    assert "client/0" in metrics["seconds_per_phase_per_party"]["upload"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dropouts={7: "upload"}), "index 7"),
        (dict(dropouts={0: "training"}), "not one of"),
        (dict(weights=[1, 2]), "2 weights for 5 updates"),
        (dict(weights=[0, 1, 1, 1, 1]), "weight"),
    ],
)
def test_bad_arguments_refused(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        secure_sum(SecretSharing(), _updates(), **kwargs)


def test_mismatched_lengths_and_empty_input_refused():
    with pytest.raises(ConfigurationError, match="differ in length"):
        secure_sum(Plaintext(), [np.zeros(3), np.zeros(4)])
    with pytest.raises(ConfigurationError):
        secure_sum(Plaintext(), [])


def test_every_client_dropping_aborts():
    with pytest.raises(ProtocolAbort):
        secure_sum(Plaintext(), _updates(clients=2), dropouts={0: "upload", 1: "upload"})


def test_seed_makes_rounding_reproducible():
    updates = _updates()
    first = secure_sum(SecretSharing(), updates, seed=9)
    second = secure_sum(SecretSharing(), updates, seed=9)
    np.testing.assert_array_equal(first.ring_sum, second.ring_sum)


# -- clipping is never silent; non-finite updates are refused ------------------------------------


def _clipping_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ClippingWarning)]


def test_clipping_warns_once_per_aggregation_with_count_fraction_and_clip():
    updates = [[0.5] * 5, [3, 0.1, -7, 0.2, 0]]
    with pytest.warns(ClippingWarning) as record:
        result = secure_sum(SecAgg(), updates, seed=0)
    assert _clipping_warnings(record) == [
        "2 of 10 coordinates (20.0%) were cut to the clip 1.0; raise Encoding.clip or set strict_clip=True to refuse"
    ]
    assert record[0].filename == __file__  # attributed to the caller of secure_sum
    # The aggregate is the sum of the clipped updates (3 -> 1, -7 -> -1), not the true sum.
    np.testing.assert_allclose(result.total, [1.5, 0.6, -0.5, 0.7, 0.5], atol=2 * SecAgg().encoding.step)


def test_clipping_over_several_clients_is_one_warning_with_the_total():
    rng = np.random.default_rng(4)
    updates = [rng.normal(scale=0.2, size=100) for _ in range(4)]
    updates[0][[3, 50]] = 1.5
    updates[2][7] = -2.0
    updates[3][:10] = 4.0
    with pytest.warns(ClippingWarning) as record:
        result = secure_sum(Plaintext(), updates, seed=0)
    assert _clipping_warnings(record) == [
        "13 of 400 coordinates (3.2%) were cut to the clip 1.0; raise Encoding.clip or set strict_clip=True to refuse"
    ]
    assert result.metrics["clipped_coordinates"] == 13
    assert result.metrics["clipped_fraction"] == 13 / 400


def test_no_clipping_warning_and_zero_metrics_when_nothing_is_cut():
    updates = [np.full(8, 1.0), np.full(8, -1.0), np.linspace(-1, 1, 8)]  # at the clip is not beyond it
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        result = secure_sum(Plaintext(), updates, seed=0)
    assert result.metrics["clipped_coordinates"] == 0
    assert result.metrics["clipped_fraction"] == 0.0


def test_clipping_metrics_are_exact_and_typed():
    updates = [[0.5] * 5, [3, 0.1, -7, 0.2, 0]]
    with pytest.warns(ClippingWarning):
        metrics = secure_sum(SecretSharing(), updates, seed=0).metrics
    assert type(metrics["clipped_coordinates"]) is int and metrics["clipped_coordinates"] == 2
    assert type(metrics["clipped_fraction"]) is float and metrics["clipped_fraction"] == 0.2


def test_clipping_is_counted_for_a_client_that_drops_out():
    updates = [np.zeros(4), np.zeros(4), np.array([0.0, 9.0, 0.0, 0.0])]
    with pytest.warns(ClippingWarning, match="1 of 12 coordinates"):
        result = secure_sum(Plaintext(), updates, dropouts={2: "upload"}, seed=0)
    assert result.included == (0, 1)
    assert result.metrics["clipped_coordinates"] == 1


def test_strict_clip_refuses_the_update_naming_the_client_count_and_clip():
    protocol = Plaintext(encoding=Encoding(clip=1.0, strict_clip=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)  # refused, not cut and reported
        with pytest.raises(InvalidUpdate, match=r"client 1: update has 2 of 5 coordinate\(s\) beyond the clip 1.0"):
            secure_sum(protocol, [[0.5] * 5, [3, 0.1, -7, 0.2, 0]], seed=0)
        result = secure_sum(protocol, [[0.5] * 5, [1.0, 0.1, -1.0, 0.2, 0]], seed=0)
    assert result.metrics["clipped_coordinates"] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_refused_naming_the_client_and_the_count(bad):
    updates = _updates(clients=5, length=1000)
    updates[3][[10, 900]] = bad
    with pytest.raises(InvalidUpdate, match=r"^update of client 3 holds 2 NaN or infinite value\(s\) out of 1000$"):
        secure_sum(SecretSharing(), updates, seed=0)


def test_batchnorm_running_var_beyond_the_clip_is_reported():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].running_var.fill_(2.06)
    state = {name: tensor for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
    vector, layout = flatten_state(state)  # num_batches_tracked (int64) does not aggregate
    names = [name for name, _, _ in layout]
    start = sum(int(np.prod(shape)) for _, shape, _ in layout[: names.index("1.running_var")])
    assert vector.size == 3 * 4 + 4 + 4 * 4
    with pytest.warns(ClippingWarning) as record:
        result = secure_sum(Plaintext(), [vector, vector.copy()], seed=0)
    assert _clipping_warnings(record) == [
        "8 of 64 coordinates (12.5%) were cut to the clip 1.0; raise Encoding.clip or set strict_clip=True to refuse"
    ]
    assert result.metrics["clipped_coordinates"] == 8
    np.testing.assert_array_equal(result.total[start : start + 4], 2.0)  # 2.06 cut to the clip, twice
