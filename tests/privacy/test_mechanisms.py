"""Clipping and samplers: exact distributions, explicit Generators, vectorised."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from securefl.errors import ConfigurationError
from securefl.privacy.mechanisms import (
    clip_l2,
    discrete_gaussian_noise,
    discrete_laplace_noise,
    gaussian_noise,
    skellam_noise,
)


def _discrete_gaussian_pmf(support: np.ndarray, sigma_squared: float) -> np.ndarray:
    weights = np.exp(-(support.astype(float) ** 2) / (2 * sigma_squared))
    return weights / weights.sum()


def _chi_square_pvalue(samples: np.ndarray, pmf_support: np.ndarray, pmf: np.ndarray) -> float:
    """Pearson chi-square of samples against a pmf, pooling cells expected < 5 into the tails."""
    counts = np.array([(samples == y).sum() for y in pmf_support])  # small support: fine in a test
    expected = pmf * samples.size
    keep = expected >= 5
    observed = np.append(counts[keep], samples.size - counts[keep].sum())
    expected = np.append(expected[keep], samples.size - expected[keep].sum())
    if expected[-1] < 5:  # fold the pooled tail into the last cell
        observed = np.append(observed[:-2], observed[-2:].sum())
        expected = np.append(expected[:-2], expected[-2:].sum())
    return float(stats.chisquare(observed, expected).pvalue)


def test_clip_scales_only_long_rows_and_reports_fraction() -> None:
    updates = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [6.0, 8.0]])
    result = clip_l2(updates, max_norm=1.0)
    np.testing.assert_allclose(result.norms, [5.0, 0.5, 0.0, 10.0])
    np.testing.assert_allclose(result.clipped, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [0.6, 0.8]])
    assert result.clip_fraction == 0.5
    assert np.all(np.linalg.norm(result.clipped, axis=1) <= 1.0 + 1e-12)


def test_clip_single_vector() -> None:
    result = clip_l2(np.full(100, 1.0), max_norm=5.0)
    assert result.clipped.shape == (100,)
    assert np.linalg.norm(result.clipped) == pytest.approx(5.0)
    assert result.clip_fraction == 1.0


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("inf"), float("nan")])
def test_clip_rejects_bad_norm(max_norm: float) -> None:
    with pytest.raises(ConfigurationError, match="max_norm"):
        clip_l2(np.ones(3), max_norm=max_norm)


def test_samplers_use_only_the_given_generator() -> None:
    np.random.seed(0)
    global_state = np.random.get_state()[1].copy()
    draws = []
    for _ in range(2):
        rng = np.random.default_rng(7)
        draws.append(
            (
                gaussian_noise(shape=5, std=2.0, rng=rng),
                discrete_gaussian_noise(shape=5, sigma_squared=9, rng=rng),
                skellam_noise(shape=5, mu=3.0, rng=rng),
            )
        )
    for first, second in zip(*draws):
        np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    with pytest.raises(ConfigurationError, match="Generator"):
        gaussian_noise(shape=3, std=1.0, rng=np.random)  # type: ignore[arg-type]


def test_gaussian_noise_moments() -> None:
    noise = gaussian_noise(shape=(200, 500), std=3.0, rng=np.random.default_rng(1))
    assert noise.shape == (200, 500)
    assert abs(noise.mean()) < 0.05
    assert noise.std() == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize("sigma_squared", [2, Fraction(1, 3), 0.7, 30.25])
def test_discrete_gaussian_matches_its_pmf(sigma_squared) -> None:
    samples = discrete_gaussian_noise(shape=40_000, sigma_squared=sigma_squared, rng=np.random.default_rng(3))
    assert samples.dtype == np.int64
    bound = int(10 * math.sqrt(float(sigma_squared))) + 3
    support = np.arange(-bound, bound + 1)
    assert _chi_square_pvalue(samples, support, _discrete_gaussian_pmf(support, float(sigma_squared))) > 1e-4


def test_discrete_gaussian_large_scale_uses_exact_big_integers() -> None:
    samples = discrete_gaussian_noise(shape=(100, 100), sigma_squared=10**8 + 1, rng=np.random.default_rng(4))
    assert samples.shape == (100, 100)
    assert samples.var() == pytest.approx(1e8, rel=0.05)
    assert abs(samples.mean()) < 4 * 1e4 / 100


def test_discrete_laplace_matches_its_pmf() -> None:
    samples = discrete_laplace_noise(shape=30_000, scale=2, rng=np.random.default_rng(5))
    support = np.arange(-40, 41)
    pmf = np.exp(-np.abs(support) / 2.0)
    assert _chi_square_pvalue(samples, support, pmf / pmf.sum()) > 1e-4


def test_skellam_moments_and_type() -> None:
    samples = skellam_noise(shape=100_000, mu=12.5, rng=np.random.default_rng(6))
    assert samples.dtype == np.int64
    assert abs(samples.mean()) < 0.1
    assert samples.var() == pytest.approx(25.0, rel=0.03)


@pytest.mark.parametrize("sigma_squared", [0, -1, float("nan"), "2"])
def test_discrete_gaussian_rejects_bad_scale(sigma_squared) -> None:
    with pytest.raises(ConfigurationError, match="sigma_squared"):
        discrete_gaussian_noise(shape=3, sigma_squared=sigma_squared, rng=np.random.default_rng())


def test_bad_shape_and_std_are_echoed() -> None:
    with pytest.raises(ConfigurationError, match="found -1"):
        gaussian_noise(shape=3, std=-1.0, rng=np.random.default_rng())
    with pytest.raises(ConfigurationError, match="shape"):
        skellam_noise(shape=(-2,), mu=1.0, rng=np.random.default_rng())
