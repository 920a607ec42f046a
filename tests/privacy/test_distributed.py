"""The distributed-DP pipeline: rotation, conditional rounding, noise shares, ring, decoding, wrap-around."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl import ring
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.privacy.distributed import (
    DistributedPipeline,
    WrapAroundWarning,
    conditional_round,
    padded_dimension,
    rotate,
    rotation_signs,
    rounded_l2_bound,
    sensitivities,
    unrotate,
    walsh_hadamard,
    wrap_probability,
)
from securefl.privacy.mechanisms import skellam_noise
from securefl.protocols import SecAgg
from securefl.simulation import run_protocol


def _pipeline(**overrides: object) -> DistributedPipeline:
    options: dict[str, object] = dict(mechanism="skellam", dimension=300, clip=1.0, scale=300.0, ring_bits=20,
                                      noise_multiplier=1.0)
    options.update(overrides)
    return DistributedPipeline(**options)  # type: ignore[arg-type]


# -- rotation -----------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 8, 1024])
def test_integer_hadamard_is_exactly_invertible(length: int) -> None:
    vector = np.random.default_rng(length).integers(-1000, 1000, size=length)
    assert np.array_equal(walsh_hadamard(walsh_hadamard(vector)), length * vector)  # H H = d I, in integers


def test_hadamard_matches_the_sylvester_matrix() -> None:
    from scipy.linalg import hadamard

    matrix = hadamard(16)
    vectors = np.random.default_rng(1).normal(size=(3, 16))
    np.testing.assert_allclose(walsh_hadamard(vectors), vectors @ matrix.T, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 700), st.integers(0, 2**32 - 1))
def test_rotation_round_trips_and_keeps_the_norm(dimension: int, seed: int) -> None:
    signs = rotation_signs(dimension=dimension, seed=seed)
    vector = np.random.default_rng(seed).normal(size=dimension)
    rotated = rotate(vector, signs=signs)
    assert rotated.size == padded_dimension(dimension) == signs.size
    assert np.linalg.norm(rotated) == pytest.approx(np.linalg.norm(vector), rel=1e-12)
    np.testing.assert_allclose(unrotate(rotated, signs=signs, dimension=dimension), vector, rtol=0, atol=1e-12)


def test_rotation_spreads_a_spike() -> None:
    signs = rotation_signs(dimension=1024, seed=3)
    spike = np.zeros(1024)
    spike[7] = 1.0
    assert np.allclose(np.abs(rotate(spike, signs=signs)), 1 / 32)


def test_rotation_refuses_bad_shapes() -> None:
    with pytest.raises(ConfigurationError, match="power-of-two length; found 6"):
        walsh_hadamard(np.zeros(6))
    with pytest.raises(ConfigurationError, match="exceeds the rotation's 8"):
        rotate(np.zeros(9), signs=np.ones(8))
    with pytest.raises(ConfigurationError, match="found 0"):
        padded_dimension(0)


# -- conditional rounding -------------------------------------------------------


@pytest.mark.parametrize("dimension", [16, 1000])
def test_conditional_rounding_never_exceeds_the_bound(dimension: int) -> None:
    rng = np.random.default_rng(dimension)
    squared, l2, _ = sensitivities(dimension=dimension, scale=20.0, clip=1.0)
    padded = padded_dimension(dimension)
    # the worst inputs for rounding: every coordinate exactly halfway, norm at the clip
    halfway = np.full(padded, 0.5) * (20.0 / np.linalg.norm(np.full(padded, 0.5)))
    halfway = np.floor(halfway) + 0.5
    halfway *= min(1.0, 20.0 / np.linalg.norm(halfway))
    for values in [halfway, *(rng.normal(size=padded) for _ in range(3))]:
        values = values * (20.0 / np.linalg.norm(values))
        for _ in range(100):
            rounded = conditional_round(values, squared_bound=squared, rng=rng)
            assert int(rounded @ rounded) <= squared
            assert np.all(np.abs(rounded - values) < 1)
    assert l2 <= 20.0 + math.sqrt(padded)


def test_conditional_rounding_is_nearly_unbiased() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=64) * 3
    squared, _, _ = sensitivities(dimension=64, scale=np.linalg.norm(values), clip=1.0)
    mean = np.mean([conditional_round(values, squared_bound=squared, rng=rng) for _ in range(4000)], axis=0)
    assert np.max(np.abs(mean - values)) < 0.05


def test_conditional_rounding_refuses_an_input_above_the_design_norm() -> None:
    with pytest.raises(ConfigurationError, match="squared L2 norm <= 10 in 200 tries"):
        conditional_round(np.full(16, 3.0), squared_bound=10, rng=np.random.default_rng(0))


def test_rounded_bound_is_the_smaller_of_the_two() -> None:
    assert rounded_l2_bound(norm=10.0, dimension=4, beta=0.0) == 12.0
    assert rounded_l2_bound(norm=1000.0, dimension=1024, beta=math.exp(-0.5)) < 1000.0 + 32
    with pytest.raises(ConfigurationError, match="beta must be a probability in \\[0, 1\\); found 1.0"):
        rounded_l2_bound(norm=1.0, dimension=4, beta=1.0)


# -- noise shares ------------------------------------------------------------------


def test_a_sum_of_skellam_shares_is_skellam_of_the_total() -> None:
    """Chi-square goodness of fit of 4 clients' shares Sk(V/4) against Sk(V), and the variance."""
    rng = np.random.default_rng(11)
    total_variance, clients, samples = 6.0, 4, 200_000
    shares = skellam_noise(shape=(clients, samples), mu=total_variance / clients / 2, rng=rng)
    summed = shares.sum(axis=0)
    assert summed.var() == pytest.approx(total_variance, rel=0.02)
    reference = stats.skellam(total_variance / 2, total_variance / 2)
    edges = np.arange(-10, 11)  # cells ..., -10 | -9 | ... | 9 | 10, ...: tails pooled
    observed = np.array([np.sum(summed <= edges[0])]
                        + [np.sum(summed == k) for k in edges[1:-1]] + [np.sum(summed >= edges[-1])])
    expected = np.concatenate([[reference.cdf(edges[0])], reference.pmf(edges[1:-1]), [reference.sf(edges[-1] - 1)]])
    assert stats.chisquare(observed, expected * samples).pvalue > 1e-3


@pytest.mark.parametrize("mechanism", ["skellam", "ddgauss"])
def test_shares_add_up_to_the_central_variance(mechanism: str) -> None:
    pipeline = _pipeline(mechanism=mechanism, noise_multiplier=0.2)  # V/t ~ 800: the ddgauss ceiling is negligible
    rng = np.random.default_rng(2)
    shares = 5
    total = sum(pipeline.noise(shares=shares, rng=rng, size=40_000) for _ in range(shares))
    assert total.var() == pytest.approx(pipeline.central_variance, rel=0.03)
    assert abs(total.mean()) < 4 * math.sqrt(pipeline.central_variance / 40_000)


# -- encode / secure sum / decode -------------------------------------------------------


def test_the_unmasked_aggregate_is_the_sum_plus_noise_of_the_calibrated_scale() -> None:
    """SecAgg over Z_2^20: noise-free decode equals the clipped sum; the noise has the calibrated std."""
    clients, dimension = 5, 1000
    pipeline = _pipeline(dimension=dimension, scale=2000.0, noise_multiplier=0.5)
    protocol = SecAgg(encoding=Encoding(value_bits=2, ring_bits=20, max_clients=1000, max_weight=1))
    shares = protocol.threshold_for(clients)
    signs = rotation_signs(dimension=dimension, seed=9)
    data = np.random.default_rng(4)
    updates = [data.normal(size=dimension) * 0.05 for _ in range(clients)]
    exact = sum(u * min(1.0, 1.0 / np.linalg.norm(u)) for u in updates)
    quantised = [pipeline.quantise(u, signs=signs, rng=np.random.default_rng(i)) for i, u in enumerate(updates)]
    noises = [pipeline.noise(shares=shares, rng=np.random.default_rng(100 + i)) for i in range(clients)]
    clean_inputs = [ring.from_signed(q, 20) for q in quantised]
    noisy_inputs = [ring.from_signed(q + n, 20) for q, n in zip(quantised, noises)]

    clean, _, _ = run_protocol(protocol, clean_inputs, round=1)
    noisy, _, _ = run_protocol(protocol, noisy_inputs, round=1)
    clean_sum = pipeline.decode(clean.total, signs=signs)
    noisy_sum = pipeline.decode(noisy.total, signs=signs)

    assert np.linalg.norm(clean_sum - exact) < clients * math.sqrt(1024) / pipeline.scale  # rounding only
    difference = noisy_sum - clean_sum
    assert difference.std() == pytest.approx(pipeline.noise_std(clients=clients, shares=shares), rel=0.1)
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(dimension)


def test_individual_vectors_may_wrap_but_the_sum_decodes_exactly() -> None:
    pipeline = _pipeline(ring_bits=12, scale=100.0, noise_multiplier=0.0)
    signs = rotation_signs(dimension=300, seed=0)
    updates = [np.full(300, 0.05), np.full(300, -0.05)]
    vectors = [pipeline.encode(u, signs=signs, shares=1, rng=np.random.default_rng(i)) for i, u in enumerate(updates)]
    assert vectors[0].dtype == np.uint16 and vectors[0].size == 512
    total = ring.add(vectors[0].copy(), vectors[1], 12)
    assert np.any(vectors[0] > 2**11) and np.any(vectors[1] > 2**11)  # both have negative coordinates
    # the rounding errors (< 1 per client per coordinate) are all that is left; rotation keeps norms
    assert np.linalg.norm(pipeline.decode(total, signs=signs)) < 2 * math.sqrt(512) / 100


def test_encode_refuses_a_wrong_length() -> None:
    with pytest.raises(ConfigurationError, match="update has 5 values; the pipeline expects 300"):
        _pipeline().encode(np.zeros(5), signs=np.ones(512), shares=1, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("mechanism", "laplace", "found 'laplace'"), ("scale", 0.0, "scale must be a positive finite number; found 0.0"),
     ("ring_bits", 63, "found 63"), ("noise_multiplier", -1.0, "found -1.0")],
)
def test_bad_pipeline_parameters_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _pipeline(**{field: value})


# -- wrap-around ---------------------------------------------------------------------


def test_wrap_bound_holds_empirically_where_it_is_not_tiny() -> None:
    """With too few bits the bound is large; the observed rate of wrapped rounds stays below it."""
    clients, dimension = 4, 256
    pipeline = _pipeline(dimension=dimension, ring_bits=10, scale=130.0, noise_multiplier=1.0)
    bound = pipeline.wrap_probability(clients=clients, shares=clients)
    assert 0.2 < bound < 0.6
    rng = np.random.default_rng(8)
    wrapped = 0
    trials = 100
    for trial in range(trials):
        signs = rotation_signs(dimension=dimension, seed=trial)
        update = np.ones(dimension) / math.sqrt(dimension)  # aligned updates: the worst case for the sum
        integers = sum(pipeline.quantise(update, signs=signs, rng=rng) + pipeline.noise(shares=clients, rng=rng)
                       for _ in range(clients))
        wrapped += bool(np.any(np.abs(integers) >= 2**9))
    assert wrapped / trials <= bound


def test_wrap_bound_falls_with_bits_and_design_meets_its_target() -> None:
    common = dict(scale=2000.0, clip=1.0, padded_dimension=2048, clients=30, noise_variance=30 * 2.0e5)
    assert wrap_probability(ring_bits=16, **common) > wrap_probability(ring_bits=18, **common)  # type: ignore[arg-type]
    pipeline = DistributedPipeline.design(dimension=1210, ring_bits=16, clients=58, shares=30, noise_multiplier=1.2)
    assert pipeline.wrap_probability(clients=58, shares=30) <= 1e-6
    assert pipeline.padded_dimension == 2048 and pipeline.l2_sensitivity >= pipeline.scale


def test_design_warns_when_the_wrap_probability_is_high() -> None:
    with pytest.warns(WrapAroundWarning, match="exceeds 0.0001"):
        DistributedPipeline.design(dimension=1000, ring_bits=16, clients=40, shares=21, noise_multiplier=1.0,
                                   wrap_target=0.5)


def test_design_refuses_too_few_bits() -> None:
    with pytest.raises(ConfigurationError, match="ring_bits=4 cannot hold a sum of 30 clients"):
        DistributedPipeline.design(dimension=100, ring_bits=4, clients=30, shares=16, noise_multiplier=1.0)
