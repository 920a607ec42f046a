import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from securefl import ring
from securefl.encoding import Encoding, check_headroom, flatten_state, unflatten_state, warn_clipped
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate


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
    with pytest.raises(InvalidUpdate, match=r"update holds 2 NaN or infinite value\(s\) out of 10"):
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


# -- float64 exactness of the headroom bound ------------------------------------------------


def test_sixty_bit_values_in_a_64_bit_ring_refused():
    # Accepted before: 16 x (2^59 - 1) fits 2^63 - 1, but (2^59 - 1) / 1.0 rounds to 2^59 in float64,
    # and 16 clients at +1.0 decoded to -16.0.
    with pytest.raises(ConfigurationError, match="value_bits=60 exceeds 53") as error:
        Encoding(value_bits=60, ring_bits=64, max_clients=16, max_weight=1)
    assert "lower value_bits" in str(error.value)


@pytest.mark.parametrize("value_bits", range(54, 65))
def test_value_bits_above_53_always_refused(value_bits):
    with pytest.raises(ConfigurationError, match="significand of a float64"):
        check_headroom(value_bits=value_bits, ring_bits=64, max_clients=1, max_weight=1)


@pytest.mark.parametrize(
    "value_bits, max_weight, accepted",
    [
        (53, 1, True),  # 2^52 - 1
        (53, 2, True),  # 2^53 - 2 < 2^53
        (53, 3, False),  # 3 (2^52 - 1) >= 2^53
        (52, 4, True),  # 2^53 - 4
        (52, 5, False),
        (2, 2**53 - 1, True),  # M = 1: the bound is the weight itself
        (2, 2**53, False),
    ],
)
def test_weighted_bound_must_be_below_two_to_the_53(value_bits, max_weight, accepted):
    arguments = dict(value_bits=value_bits, ring_bits=64, max_clients=1, max_weight=max_weight)
    if accepted:
        check_headroom(**arguments)
    else:
        with pytest.raises(ConfigurationError, match=r"not below 2\^53 = 9007199254740992"):
            check_headroom(**arguments)


def test_headroom_is_exact_for_numpy_integers_that_would_overflow_int64():
    # n w M = 2^40 x 2^12 x (2^39 - 1) ~ 2^91 wraps in int64 arithmetic; Python ints do not.
    arguments = dict(value_bits=np.int64(40), ring_bits=np.int64(64), max_weight=np.int64(2**12))
    with pytest.raises(ConfigurationError, match=str(2**40 * 2**12 * (2**39 - 1))):
        check_headroom(max_clients=np.int64(2**40), **arguments)
    encoding = Encoding(max_clients=np.int64(2**11), clip=np.float32(0.5), **arguments)
    assert type(encoding.value_bits) is int and type(encoding.max_clients) is int and type(encoding.clip) is float


def test_value_bits_53_edge_encodes_the_clip_exactly_and_sums_without_wrapping():
    encoding = Encoding(value_bits=53, ring_bits=64, max_clients=2048, max_weight=1)
    largest = 2**52 - 1
    encoded = encoding.encode(np.array([1.0, -1.0, 5.0, -5.0, 0.0]), rng=np.random.default_rng(0))
    signed = ring.to_signed(encoded, 64)
    assert signed[:-1].tolist() == [largest, -largest, largest, -largest, 0]
    total = np.zeros_like(encoded)
    for _ in range(encoding.max_clients):
        ring.add(total, encoded, encoding.ring_bits)
    decoded, weight_total = encoding.decode_sum(total)
    assert ring.to_signed(total, 64)[:-1].tolist() == [2048 * largest, -2048 * largest] * 2 + [0]
    np.testing.assert_array_equal(decoded, [2048.0, -2048.0, 2048.0, -2048.0, 0.0])
    assert weight_total == 2048


# -- the clamp: |q| <= w M whatever float64 rounding does -------------------------------------


@pytest.mark.parametrize(
    "value_bits, max_weight, clip",
    [(53, 1, 1.0), (53, 2, 1.0), (52, 2, 0.3), (40, 256, 1 / 3), (30, 2**20, 0.1), (12, 256, 1.0)],
)
def test_value_at_the_clip_with_max_weight_never_exceeds_the_bound(value_bits, max_weight, clip):
    # Without the clamp, (53, 1, 1.0) gave 2^52 on about a quarter of these coordinates, (40, 256, 1/3) on 81.
    encoding = Encoding(value_bits=value_bits, ring_bits=64, max_clients=2, max_weight=max_weight, clip=clip)
    bound = max_weight * ((1 << (value_bits - 1)) - 1)
    update = np.concatenate([np.full(10_000, clip), np.full(10_000, -clip), [np.nextafter(clip, 2 * clip), 1e300]])
    signed = ring.to_signed(encoding.encode(update, weight=max_weight, rng=np.random.default_rng(0)), 64)[:-1]
    assert int(signed.max()) <= bound and int(signed.min()) >= -bound
    assert int(signed.max()) == bound and int(signed.min()) == -bound  # the clip itself reaches the bound


@st.composite
def _tight_encodings(draw):
    """An encoding whose max_clients is the largest the ring allows, so one unit too many would wrap."""
    ring_bits = draw(st.integers(3, 64))
    value_bits = draw(st.integers(2, min(53, ring_bits - 1)))
    largest = (1 << (value_bits - 1)) - 1
    limit = (1 << (ring_bits - 1)) - 1
    max_weight = draw(st.integers(1, max(1, min(limit // largest, ((1 << 53) - 1) // largest, 2**20))))
    clip = draw(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))
    return Encoding(clip=clip, value_bits=value_bits, ring_bits=ring_bits,
                    max_clients=limit // (max_weight * largest), max_weight=max_weight)


@settings(max_examples=200, deadline=None)
@given(encoding=_tight_encodings(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_sum_of_max_clients_maximal_values_never_wraps(encoding, seed, data):
    clip = encoding.clip
    weight = data.draw(st.integers(1, encoding.max_weight))
    update = np.array([clip, -clip, np.nextafter(clip, np.inf), np.nextafter(-clip, -np.inf),
                       clip * (1 - 1e-16), 3 * clip, -1e300])
    encoded = encoding.encode(update, weight=weight, rng=np.random.default_rng(seed))
    k, n = encoding.ring_bits, encoding.max_clients
    bound = weight * ((1 << (encoding.value_bits - 1)) - 1)
    for element in encoded[:-1].tolist():
        q = element - (1 << k) if element >= 1 << (k - 1) else element  # signed value of one client
        assert -bound <= q <= bound
        ring_total = (n * element) % (1 << k)  # the ring sum of n clients sending q
        signed_total = ring_total - (1 << k) if ring_total >= 1 << (k - 1) else ring_total
        assert signed_total == n * q  # no wrap


# -- clipping is counted; strict_clip refuses ---------------------------------------------------


def test_count_clipped_is_exact_and_the_clip_itself_is_not_cut():
    encoding = Encoding(clip=1.0)
    update = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, np.nextafter(1.0, 2.0), 3.0, 1e300, -np.nextafter(1.0, 2.0)])
    assert encoding.count_clipped(update) == 5
    assert encoding.count_clipped(np.zeros(0)) == 0
    assert encoding.count_clipped(update.reshape(3, 3)) == 5


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(np.float64, st.integers(0, 60), elements=st.floats(-4, 4)),
    clip=st.floats(0.01, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_clipped_is_the_number_of_coordinates_the_encoding_cuts(values, clip, seed):
    encoding = Encoding(clip=clip)
    cut = np.clip(values, -clip, clip) != values
    assert encoding.count_clipped(values) == int(np.count_nonzero(cut))
    # A coordinate beyond the clip decodes to the clip exactly; one inside stays within a step of itself.
    total, _ = encoding.decode_sum(encoding.encode(values, rng=np.random.default_rng(seed)))
    np.testing.assert_allclose(total[cut], np.sign(values[cut]) * clip, rtol=1e-12)


def test_strict_clip_refuses_an_update_beyond_the_clip_naming_count_and_clip():
    strict = Encoding(clip=0.5, strict_clip=True)
    with pytest.raises(InvalidUpdate, match=r"2 of 4 coordinate\(s\) beyond the clip 0.5") as error:
        strict.encode(np.array([0.1, 0.7, -0.5, -3.0]), rng=np.random.default_rng(0))
    assert "strict_clip=True" in str(error.value)


def test_strict_clip_encodes_an_update_within_the_clip_as_the_default_does():
    update = np.array([0.1, 0.5, -0.5, -0.25])
    strict = Encoding(clip=0.5, strict_clip=True).encode(update, rng=np.random.default_rng(3))
    default = Encoding(clip=0.5).encode(update, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(strict, default)


@pytest.mark.parametrize("flag", [1, 0, "yes", None])
def test_strict_clip_must_be_a_bool(flag):
    with pytest.raises(ConfigurationError, match="strict_clip must be True or False"):
        Encoding(strict_clip=flag)


def test_warn_clipped_words_count_fraction_and_clip_and_is_silent_at_zero():
    with pytest.warns(ClippingWarning) as record:
        warn_clipped(clipped=3, coordinates=10, clip=1.0, stacklevel=1)
    assert len(record) == 1
    assert str(record[0].message) == (
        "3 of 10 coordinates (30.0%) were cut to the clip 1.0; raise Encoding.clip or set strict_clip=True to refuse"
    )
    assert record[0].filename == __file__  # stacklevel=1: the line that called warn_clipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_clipped(clipped=0, coordinates=10, clip=1.0)
