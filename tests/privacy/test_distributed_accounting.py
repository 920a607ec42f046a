"""RDP of distributed Skellam and the distributed discrete Gaussian, checked against direct computation."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np
import pytest
from scipy import special

from securefl.cli.privacy import register
from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    PLDAccountant,
    PrivacyAccountingWarning,
    RDPAccountant,
    compute_rdp,
    event_from_dict,
)
from securefl.privacy.calibration import calibrate_noise_multiplier, epsilon_for
from securefl.privacy.distributed import event_factory, sensitivities
from securefl.privacy.distributed_accounting import (
    DistributedDiscreteGaussianEvent,
    SkellamEvent,
    distributed_discrete_gaussian_rdp,
    poisson_subsampled_rdp,
    skellam_rdp,
)


def _renyi(log_p: np.ndarray, log_q: np.ndarray, alpha: float) -> float:
    """D_alpha(P || Q) from log-pmfs on a common support."""
    return float(special.logsumexp(alpha * log_p + (1 - alpha) * log_q) / (alpha - 1))


def _log_skellam(k: np.ndarray, variance: float) -> np.ndarray:
    """log P[Sk = k] for Poisson(V/2) - Poisson(V/2): e^{-V} I_k(V)."""
    return np.log(special.ive(np.abs(k), variance))


def _support(variance: float, shift: int = 0) -> np.ndarray:
    """Integers carrying all but ~1e-100 of Sk(V) and its shift, where the pmf does not underflow."""
    reach = int(abs(shift) + 50 + 25 * math.sqrt(variance))
    return np.arange(-reach, reach + 1)


# -- the unsampled curves against direct Renyi divergences ---------------------------------


@pytest.mark.parametrize("variance", [0.5, 2.0, 10.0, 200.0])
@pytest.mark.parametrize("shift", [1, 3])
def test_skellam_bound_dominates_the_exact_divergence(variance: float, shift: int) -> None:
    support = _support(variance, shift)
    log_q = _log_skellam(support, variance)
    log_p = _log_skellam(support - shift, variance)
    z = math.sqrt(variance) / shift
    for alpha in (2, 3, 5, 8, 16, 32):
        exact = _renyi(log_p, log_q, alpha)
        bound = skellam_rdp(orders=np.array([alpha]), noise_multiplier=z, l2_sensitivity=shift,
                            l1_sensitivity=shift)[0]
        assert exact <= bound
        if variance >= 200:  # large variance: Skellam is Gaussian to within a few percent
            assert bound <= 1.03 * alpha * shift**2 / (2 * variance)


def test_skellam_bound_dominates_in_two_dimensions() -> None:
    """Product noise, shift (2, -1): D_2 = 5, D_1 = 3; the divergence adds over coordinates."""
    variance, support = 4.0, _support(4.0, 2)
    log_q = _log_skellam(support, variance)
    for alpha in (2, 4, 9):
        exact = sum(_renyi(_log_skellam(support - s, variance), log_q, alpha) for s in (2, -1))
        bound = skellam_rdp(orders=np.array([alpha]), noise_multiplier=math.sqrt(variance / 5),
                            l2_sensitivity=math.sqrt(5), l1_sensitivity=3.0)[0]
        assert exact <= bound


@pytest.mark.parametrize("sigma2", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("shares", [2, 3, 5])
def test_ddg_bound_dominates_the_exact_divergence_of_a_sum_of_discrete_gaussians(sigma2: float, shares: int) -> None:
    support = np.arange(-60, 61)
    one = np.exp(-support**2 / (2 * sigma2))
    one /= one.sum()
    total = one
    for _ in range(shares - 1):
        total = np.convolve(total, one)
    log_q = np.log(np.maximum(total, 1e-300))
    inner = slice(2, total.size - 2)
    for shift in (1, 2):
        log_p = np.concatenate([np.full(shift, -np.inf), log_q[:-shift]])
        for alpha in (2, 4, 8):
            exact = _renyi(log_p[inner], log_q[inner], alpha)
            bound = distributed_discrete_gaussian_rdp(
                orders=np.array([alpha]), noise_multiplier=math.sqrt(shares * sigma2) / shift, l2_sensitivity=shift,
                l1_sensitivity=shift, dimension=1, shares=shares)[0]
            assert exact <= bound


def test_fractional_orders_lie_on_the_chord_of_the_log_moment() -> None:
    """(alpha - 1) eps(alpha) is convex with value 0 at alpha = 1: fractional orders use the chord."""
    options = dict(noise_multiplier=1.0, l2_sensitivity=10.0, l1_sensitivity=30.0)
    two, three = skellam_rdp(orders=np.array([2, 3]), **options)
    half, low = skellam_rdp(orders=np.array([2.5, 1.5]), **options)
    assert half == pytest.approx((0.5 * two + 0.5 * 2 * three) / 1.5)
    assert low == pytest.approx(two) and two < half < three
    event = SkellamEvent(sample_rate=0.1, **options)
    curve = event.rdp(np.array([3.0, 3.4, 4.0]))
    assert curve[0] < curve[1] < curve[2]
    with pytest.raises(ConfigurationError, match="orders must be > 1; found 1.0"):
        skellam_rdp(orders=np.array([1.0]), **options)


# -- Poisson sampling -----------------------------------------------------------------------


def test_subsampled_gaussian_curve_is_the_exact_integer_order_formula() -> None:
    orders = np.arange(2, 80)
    for q, z in [(0.01, 0.8), (0.3, 1.2), (0.9, 3.0)]:
        ours = poisson_subsampled_rdp(lambda a, z=z: a / (2 * z * z), sample_rate=q, orders=orders)
        np.testing.assert_allclose(ours, compute_rdp(q=q, noise_multiplier=z, steps=1, orders=orders), rtol=1e-12)


@pytest.mark.parametrize(("variance", "shift", "q"), [(4.0, 2, 0.3), (30.0, 5, 0.1), (1.0, 1, 0.7)])
def test_add_direction_never_exceeds_remove_and_remove_is_bounded(variance: float, shift: int, q: float) -> None:
    """The lemma behind the subsampled bound, on exact 1-D Skellam mixtures."""
    support = _support(variance, shift)
    log_q = _log_skellam(support, variance)
    log_r = _log_skellam(support - shift, variance)
    log_mix = np.logaddexp(math.log1p(-q) + log_q, math.log(q) + log_r)
    z = math.sqrt(variance) / shift
    bound = SkellamEvent(noise_multiplier=z, l2_sensitivity=shift, l1_sensitivity=shift, sample_rate=q).rdp(
        np.arange(2, 21))
    for alpha in range(2, 21):
        remove = _renyi(log_mix, log_q, alpha)
        add = _renyi(log_q, log_mix, alpha)
        assert add <= remove * (1 + 1e-9)
        assert remove <= bound[alpha - 2] * (1 + 1e-9)


def test_the_binary_inequality_of_the_lemma_on_a_grid() -> None:
    """(1+L)[sum b^a y^(1-a) - sum y^a b^(1-a)] >= 0 for y = (1, L)/(1+L), b = (1-q) y + q swap(y)."""
    log_l = np.linspace(-40, 40, 20001)
    for q in (1e-4, 0.01, 0.3, 0.5, 0.9, 0.999):
        for alpha in (1.01, 1.5, 2, 3, 10, 100, 1000):
            lm = np.logaddexp(math.log1p(-q), math.log(q) + log_l)
            lm2 = np.logaddexp(math.log1p(-q) + log_l, math.log(q))
            remove = np.logaddexp(alpha * lm, (1 - alpha) * log_l + alpha * lm2)
            add = np.logaddexp((1 - alpha) * lm, alpha * log_l + (1 - alpha) * lm2)
            assert np.min(remove - add) > -1e-12


# -- the regime of the digits experiment ------------------------------------------------------


def test_skellam_epsilon_is_within_five_percent_of_the_gaussian_at_equal_variance() -> None:
    """q = 0.3, 20 rounds, delta = 1e-5, z calibrated for the Gaussian at epsilon = 8; 16-bit scale."""
    _, l2, l1 = sensitivities(dimension=1210, scale=2000.0)
    z = calibrate_noise_multiplier(target_epsilon=8.0, delta=1e-5, sample_rate=0.3, steps=20)
    gaussian = epsilon_for(noise_multiplier=z, sample_rate=0.3, steps=20, delta=1e-5)
    for mechanism in ("skellam", "ddgauss"):
        factory = event_factory(mechanism=mechanism, dimension=1210, scale=2000.0, shares=16)  # type: ignore[arg-type]
        discrete = epsilon_for(noise_multiplier=z, sample_rate=0.3, steps=20, delta=1e-5, event_for=factory)
        assert gaussian <= discrete <= 1.05 * gaussian
    assert l1 == pytest.approx(l2 * math.sqrt(2048))


def test_calibration_with_a_discrete_event_never_overshoots() -> None:
    factory = event_factory(mechanism="skellam", dimension=500, scale=50.0)
    for target in (1.0, 4.0, 10.0):
        z = calibrate_noise_multiplier(target_epsilon=target, delta=1e-6, sample_rate=0.05, steps=200,
                                       event_for=factory)
        assert epsilon_for(noise_multiplier=z, sample_rate=0.05, steps=200, delta=1e-6, event_for=factory) <= target


# -- events in the accountants ----------------------------------------------------------------


def test_events_round_trip_through_the_accountant_state() -> None:
    accountant = RDPAccountant()
    skellam = SkellamEvent(noise_multiplier=1.1, l2_sensitivity=100.0, l1_sensitivity=900.0, sample_rate=0.2)
    ddg = DistributedDiscreteGaussianEvent(noise_multiplier=1.1, l2_sensitivity=100.0, l1_sensitivity=900.0,
                                           dimension=81, shares=7, sample_rate=0.2)
    accountant.compose(skellam, count=10)
    accountant.compose(ddg, count=5)
    restored = RDPAccountant()
    restored.load_state_dict(json.loads(json.dumps(accountant.state_dict())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyAccountingWarning)
        assert restored.get_epsilon(1e-5) == accountant.get_epsilon(1e-5)
    assert event_from_dict(skellam.to_dict()) == skellam


def test_pld_accountant_refuses_the_discrete_events() -> None:
    with pytest.raises(ConfigurationError, match="PLD accountant does not support this event"):
        PLDAccountant().compose(SkellamEvent(noise_multiplier=1.0, l2_sensitivity=10.0, l1_sensitivity=10.0))


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(l2_sensitivity=0.0, l1_sensitivity=1.0), "l2_sensitivity must be a positive finite number; found 0.0"),
     (dict(l2_sensitivity=10.0, l1_sensitivity=5.0), "l1_sensitivity must be >= l2_sensitivity=10.0; found 5.0"),
     (dict(l2_sensitivity=10.0, l1_sensitivity=10.0, sample_rate=1.5), "found 1.5")],
)
def test_bad_event_parameters_are_named(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SkellamEvent(noise_multiplier=1.0, **options)


# -- securefl epsilon / calibrate --mechanism ------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="securefl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_epsilon_and_calibrate_with_a_mechanism(capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--sample-rate", "0.3", "--steps", "20", "--delta", "1e-5", "--dimension", "1210", "--scale", "2000",
              "--json"]
    assert _cli(["epsilon", "--mechanism", "skellam", "--noise-multiplier", "1.2", *common]) == 0
    skellam = json.loads(capsys.readouterr().out)
    assert _cli(["epsilon", "--noise-multiplier", "1.2", *common[:6], "--json"]) == 0
    gaussian = json.loads(capsys.readouterr().out)
    assert skellam["mechanism"] == "skellam" and skellam["l2_sensitivity"] > 2000
    assert gaussian["epsilon"] <= skellam["epsilon"] <= 1.05 * gaussian["epsilon"]
    assert _cli(["calibrate", "--mechanism", "ddgauss", "--shares", "16", "--epsilon", "8", *common]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["epsilon"] <= 8.0 and calibrated["shares"] == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--mechanism", "skellam"], "needs --dimension and --scale"),
     (["--scale", "3"], "--scale needs --mechanism skellam or ddgauss"),
     (["--mechanism", "skellam", "--dimension", "10", "--scale", "3", "--accountant", "pld"], "PLD accountant"),
     (["--mechanism", "skellam", "--dimension", "10", "--scale", "3", "--shares", "2"],
      "--shares needs --mechanism ddgauss")],
)
def test_mechanism_flags_are_checked(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _cli(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "5", "--delta", "1e-5",
                 *argv])
    assert code == 2 and message in capsys.readouterr().err
