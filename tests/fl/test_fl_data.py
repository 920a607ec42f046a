import numpy as np
import pytest

from securefl.errors import ConfigurationError
from securefl.fl.data import label_skew, load_digits_data, partition, stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=0)


def assert_disjoint_cover(parts, size):
    joined = np.concatenate(parts)
    assert joined.size == size
    assert np.array_equal(np.sort(joined), np.arange(size))


def test_digits_are_scaled_to_unit_interval_with_a_stratified_test_split(digits):
    assert digits.train_x.dtype == np.float32 and digits.test_x.dtype == np.float32
    assert digits.train_x.shape[1] == digits.test_x.shape[1] == 64 == digits.features
    assert digits.classes == 10
    assert 0.0 <= digits.train_x.min() and digits.train_x.max() <= 1.0
    assert digits.train_x.max() == 1.0
    assert len(digits.train_y) + len(digits.test_y) == 1797
    assert len(digits.test_y) == pytest.approx(0.2 * 1797, abs=10)
    full = np.bincount(np.concatenate([digits.train_y, digits.test_y]), minlength=10)
    test = np.bincount(digits.test_y, minlength=10)
    assert np.all(np.abs(test - 0.2 * full) <= 1)


def test_stratified_split_is_a_seeded_partition_of_the_indices():
    labels = np.repeat(np.arange(5), 40)
    train, test = stratified_split(labels, test_fraction=0.25, rng=np.random.default_rng(3))
    assert_disjoint_cover([train, test], labels.size)
    assert np.array_equal(np.bincount(labels[test]), np.full(5, 10))
    again, _ = stratified_split(labels, test_fraction=0.25, rng=np.random.default_rng(3))
    other, _ = stratified_split(labels, test_fraction=0.25, rng=np.random.default_rng(4))
    assert np.array_equal(train, again)
    assert not np.array_equal(train, other)


def test_same_seed_same_split_other_seed_other_split(digits):
    again = load_digits_data(seed=0)
    other = load_digits_data(seed=1)
    assert np.array_equal(digits.test_x, again.test_x)
    assert not np.array_equal(digits.test_x, other.test_x)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
@pytest.mark.parametrize("clients", [1, 3, 10, 40])
def test_partition_is_disjoint_covers_the_data_and_gives_everyone_samples(digits, scheme, clients):
    parts = partition(digits.train_y, clients=clients, scheme=scheme, alpha=0.3, rng=np.random.default_rng(clients))
    assert len(parts) == clients
    assert_disjoint_cover(parts, digits.train_y.size)
    assert min(part.size for part in parts) >= 10


def test_iid_parts_are_near_equal(digits):
    parts = partition(digits.train_y, clients=10, rng=np.random.default_rng(0))
    sizes = [part.size for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_skews_labels_and_smaller_alpha_skews_more(digits):
    def skew(scheme, alpha, seed):
        parts = partition(digits.train_y, clients=10, scheme=scheme, alpha=alpha, rng=np.random.default_rng(seed))
        return label_skew(digits.train_y, parts)

    seeds = range(3)
    iid = np.mean([skew("iid", 0.5, s) for s in seeds])
    moderate = np.mean([skew("dirichlet", 0.5, s) for s in seeds])
    strong = np.mean([skew("dirichlet", 0.1, s) for s in seeds])
    # Measured: iid ~0.09 (sampling noise of ~144 samples), alpha=0.5 ~0.43, alpha=0.1 ~0.67.
    assert iid < 0.15
    assert moderate > 0.25 and moderate > 2.5 * iid
    assert strong > 0.5 and strong > moderate


def test_dirichlet_tops_up_clients_when_rejection_sampling_fails(digits):
    parts = partition(
        digits.train_y, clients=50, scheme="dirichlet", alpha=0.01, min_samples=25, rng=np.random.default_rng(0)
    )
    assert_disjoint_cover(parts, digits.train_y.size)
    assert min(part.size for part in parts) >= 25


def test_label_skew_extremes():
    labels = np.repeat(np.arange(4), 5)
    assert label_skew(labels, [np.arange(20)]) == 0.0
    one_class_each = [np.flatnonzero(labels == c) for c in range(4)]
    assert label_skew(labels, one_class_each) == pytest.approx(0.75)


def test_partition_is_deterministic_and_leaves_numpy_global_state_alone(digits):
    before = np.random.get_state()[1].copy()
    first = partition(digits.train_y, clients=7, scheme="dirichlet", rng=np.random.default_rng(11))
    second = partition(digits.train_y, clients=7, scheme="dirichlet", rng=11)
    load_digits_data(seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"clients": 0}, "clients"),
        ({"clients": 2.5}, "clients"),
        ({"clients": True}, "clients"),
        ({"scheme": "pathological"}, "pathological"),
        ({"scheme": "dirichlet", "alpha": 0.0}, "alpha"),
        ({"scheme": "dirichlet", "alpha": float("nan")}, "alpha"),
        ({"min_samples": 0}, "min_samples"),
        ({"clients": 200, "min_samples": 10}, "200"),
        ({"rng": "seven"}, "seven"),
        ({"rng": -1}, "-1"),
    ],
)
def test_partition_refuses_bad_values_and_names_them(kwargs, named):
    labels = np.repeat(np.arange(10), 100)
    arguments = {"clients": 4, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ConfigurationError, match=named):
        partition(labels, **arguments)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, "0.2"])
def test_load_refuses_bad_test_fraction(fraction):
    with pytest.raises(ConfigurationError, match="test_fraction"):
        load_digits_data(test_fraction=fraction, seed=0)


def test_labels_must_be_integer_class_indices():
    with pytest.raises(ConfigurationError, match="labels"):
        partition(np.array([0.5, 1.5]), clients=1, rng=0)
    with pytest.raises(ConfigurationError, match="-1"):
        partition(np.array([0, -1, 2]), clients=1, min_samples=1, rng=0)
