"""The fast RDP formulas against a slow high-precision reference (mpmath).

Reference: ``A_alpha = E_{x ~ N(0, s^2)}[((1-q) + q exp((2x - 1)/(2 s^2)))^alpha]``
(Mironov, Talwar & Zhang 2019, arXiv 1908.10530, Sec. 3), integrated
numerically at 30 significant digits, independently of either series.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest

from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    DEFAULT_RDP_ORDERS,
    compute_rdp,
    delta_from_rdp,
    eps_from_rdp,
)

CASES = [
    (q, sigma, alpha) for q in (0.001, 0.1, 0.6) for sigma in (0.5, 1.0, 4.0) for alpha in (1.02, 3.3)
] + [(q, 1.0, alpha) for q in (0.001, 0.1, 0.6) for alpha in (1.5, 10.9)]


@functools.cache
def reference_log_a(q: float, sigma: float, alpha: float) -> mpmath.mpf:
    """log A_alpha by tanh-sinh quadrature at 30 digits, split where the integrand turns."""
    with mpmath.workdps(30):
        q_, s, a = mpmath.mpf(q), mpmath.mpf(sigma), mpmath.mpf(alpha)

        def integrand(x: mpmath.mpf) -> mpmath.mpf:
            density = mpmath.npdf(x, 0, s)
            ratio = (1 - q_) + q_ * mpmath.exp((2 * x - 1) / (2 * s * s))
            return density * ratio**a

        x0 = s * s * mpmath.log(1 / q_ - 1) + mpmath.mpf(1) / 2
        points = sorted({float(p) for p in (-10 * s, 0, x0, 1, a, a + 10 * s)})
        total = mpmath.quad(integrand, [-mpmath.inf, *points, mpmath.inf])
        return mpmath.log(total)


@pytest.mark.parametrize(("q", "sigma", "alpha"), CASES)
def test_rdp_matches_high_precision_reference(q: float, sigma: float, alpha: float) -> None:
    ours = compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=[alpha])[0]
    reference = float(reference_log_a(q, sigma, alpha)) / (alpha - 1)
    # An upper bound (never below the truth beyond float round-off); tight to a
    # relative 1e-9, or 2e-13 in log A_alpha (the series' stopping tolerance).
    assert ours >= reference - 1e-10 * abs(reference) - 1e-15
    assert ours == pytest.approx(reference, rel=1e-9, abs=2e-13 / (alpha - 1))


def test_integer_orders_match_exact_binomial_sum() -> None:
    q, sigma = 0.05, 0.8
    orders = [2.0, 5.0, 64.0, 1024.0]
    ours = compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=orders)
    with mpmath.workdps(50):
        for alpha, value in zip(orders, ours):
            a = int(alpha)
            total = mpmath.fsum(
                mpmath.binomial(a, i) * mpmath.mpf(q) ** i * mpmath.mpf(1 - q) ** (a - i)
                * mpmath.exp(mpmath.mpf(i * i - i) / (2 * mpmath.mpf(sigma) ** 2))
                for i in range(a + 1)
            )
            assert value == pytest.approx(float(mpmath.log(total)) / (a - 1), rel=1e-11)


def test_series_converges_where_dp_accounting_drops_the_order() -> None:
    # q = 0.1, z <= 1: dp-accounting 0.6.0's fractional series gives up (inf) at some orders.
    orders = [o for o in DEFAULT_RDP_ORDERS if o != round(o) and o < 11]
    rdp = compute_rdp(q=0.1, noise_multiplier=0.5, steps=1, orders=orders)
    assert np.all(np.isfinite(rdp))
    assert np.all(np.diff(rdp) >= -1e-12)  # RDP is non-decreasing in the order


def test_full_participation_is_the_gaussian_curve() -> None:
    orders = np.array([1.5, 2.0, 10.0])
    np.testing.assert_allclose(
        compute_rdp(q=1.0, noise_multiplier=2.0, steps=3, orders=orders), 3 * orders / 8.0
    )


def test_compute_rdp_is_keyword_only_and_validates() -> None:
    with pytest.raises(TypeError):
        compute_rdp(0.1, 1.0, 1, [2.0])  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="found 1.5"):
        compute_rdp(q=1.5, noise_multiplier=1.0, steps=1, orders=[2.0])
    with pytest.raises(ConfigurationError, match="found -1"):
        compute_rdp(q=0.5, noise_multiplier=-1.0, steps=1, orders=[2.0])
    with pytest.raises(ConfigurationError, match="found 0"):
        compute_rdp(q=0.5, noise_multiplier=1.0, steps=0, orders=[2.0])
    with pytest.raises(ConfigurationError, match="found 1.0"):
        compute_rdp(q=0.5, noise_multiplier=1.0, steps=1, orders=[1.0])


def test_conversion_is_prop12_or_kl() -> None:
    orders = np.array([2.0, 8.0, 32.0])
    rdp = np.array([0.1, 0.5, 2.0])
    delta = 1e-5
    expected = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    epsilon, order = eps_from_rdp(orders=orders, rdp=rdp, delta=delta)
    assert epsilon == pytest.approx(expected.min())
    assert order == orders[int(np.argmin(expected))]
    # Round trip: the delta certified at that epsilon is the one asked for.
    assert delta_from_rdp(orders=orders, rdp=rdp, epsilon=epsilon)[0] == pytest.approx(delta, rel=1e-9)
    # KL branch: tiny RDP and delta^2 >= 1 - exp(-rdp) gives epsilon 0.
    assert eps_from_rdp(orders=orders, rdp=np.full(3, 1e-12), delta=1e-5) == (0.0, 2.0)
