import numpy as np
import pytest

from securefl.errors import ConfigurationError, ProtocolAbort
from securefl.protocols import Plaintext, SecretSharing
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
