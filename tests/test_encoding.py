import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from securefl import ring
from securefl.encoding import Encoding, check_headroom, flatten_state, unflatten_state
from securefl.errors import ConfigurationError


def test_headroom_refuses_a_sum_that_could_wrap_and_names_the_numbers():
    with pytest.raises(ConfigurationError) as error:
        Encoding(value_bits=16, ring_bits=32, max_clients=1024, max_weight=256)
    message = str(error.value)
    for number in ("1024", "256", "32767", "2147483647"):
        assert number in message


def test_headroom_boundary_is_exact():
    # 2^(b-1)-1 = 1, so the bound is n*w <= 2^(k-1)-1.
    check_headroom(value_bits=2, ring_bits=8, max_clients=127, max_weight=1)
    with pytest.raises(ConfigurationError):
        check_headroom(value_bits=2, ring_bits=8, max_clients=128, max_weight=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_refused_with_count(bad):
    update = np.zeros(10)
    update[[2, 5]] = bad
    with pytest.raises(ValueError, match="2 NaN or infinite"):
        Encoding().encode(update, rng=np.random.default_rng(0))


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 50), elements=st.floats(-3, 3)),
    weight=st.integers(1, 256),
    seed=st.integers(0, 2**32 - 1),
)
def test_roundtrip_error_is_within_one_step(values, weight, seed):
    encoding = Encoding()
    encoded = encoding.encode(values, weight=weight, rng=np.random.default_rng(seed))
    assert encoded.dtype == ring.ring_dtype(encoding.ring_bits)
    total, weight_total = encoding.decode_sum(encoded)
    assert weight_total == weight
    clipped = np.clip(values, -encoding.clip, encoding.clip)
    assert np.all(np.abs(total / weight - clipped) <= encoding.step / weight + 1e-12)


def test_stochastic_rounding_is_unbiased():
    encoding = Encoding(clip=1.0, value_bits=4)  # coarse: step 1/7
    value = 0.3  # 2.1 steps: rounds to 2 w.p. 0.9, 3 w.p. 0.1
    samples = np.full(200_000, value)
    total, _ = encoding.decode_sum(encoding.encode(samples, rng=np.random.default_rng(1)))
    mean = total.mean()
    standard_error = encoding.step * np.sqrt(0.09) / np.sqrt(samples.size)
    assert abs(mean - value) < 5 * standard_error


def test_sum_of_max_clients_at_extremes_does_not_wrap():
    encoding = Encoding(value_bits=12, ring_bits=32, max_clients=1024, max_weight=256)
    rng = np.random.default_rng(0)
    extreme = np.array([encoding.clip, -encoding.clip, 5.0, -5.0])
    one = encoding.encode(extreme, weight=256, rng=rng)
    total = np.zeros_like(one)
    for _ in range(1024):
        ring.add(total, one, encoding.ring_bits)
    decoded, weight_total = encoding.decode_sum(total)
    np.testing.assert_allclose(decoded, 1024 * 256 * np.clip(extreme, -1, 1))
    assert weight_total == 1024 * 256


@pytest.mark.parametrize("weight", [0, 257, 1.5, True])
def test_weight_out_of_range_refused(weight):
    with pytest.raises(ConfigurationError):
        Encoding().encode(np.zeros(3), weight=weight, rng=np.random.default_rng(0))


def test_state_dict_flatten_roundtrip():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    vector, layout = flatten_state(model.state_dict())
    assert vector.size == 4 * 3 + 3 + 3 * 2 + 2
    restored = unflatten_state(vector, layout)
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored[name], tensor)
    with pytest.raises(ConfigurationError):
        unflatten_state(vector[:-1], layout)
