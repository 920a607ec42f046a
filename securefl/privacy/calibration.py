"""Noise for a target (epsilon, delta): one Gaussian release, or a whole training run.

* :func:`classical_gaussian_sigma` -- the textbook bound, valid only for
  epsilon < 1 (Dwork & Roth 2014, Thm. A.1).
* :func:`analytic_gaussian_sigma` -- the smallest sigma for one release, from
  the exact (epsilon, delta) curve (Balle & Wang 2018, Thm. 8 and Alg. 1);
  valid for every epsilon > 0, and never larger than the classical sigma.
* :func:`calibrate_noise_multiplier` -- the noise multiplier ``z`` for
  ``steps`` Poisson-subsampled Gaussian rounds, by bisection against an
  accountant; it returns a ``z`` whose accounted epsilon is <= the target.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Literal

from securefl import validation
from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    PLDAccountant,
    PrivacyAccountingWarning,
    PrivacyEvent,
    RDPAccountant,
    check_delta,
    check_sample_rate,
    check_steps,
    gaussian_delta,
)

__all__ = [
    "AccountantName",
    "EventFactory",
    "analytic_gaussian_sigma",
    "calibrate_noise_multiplier",
    "classical_gaussian_sigma",
    "epsilon_for",
]

AccountantName = Literal["rdp", "pld"]

#: ``(noise_multiplier, sample_rate) -> event`` of one round (default: Poisson-subsampled Gaussian).
EventFactory = Callable[[float, float], PrivacyEvent]

_MIN_NOISE_MULTIPLIER = 1e-2
_MAX_NOISE_MULTIPLIER = 1e6


def classical_gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """``sigma = sqrt(2 ln(1.25 / delta)) * sensitivity / epsilon``.

    The classical Gaussian mechanism (Dwork & Roth 2014, Thm. A.1) gives
    (epsilon, delta)-DP **only for epsilon < 1**; for epsilon >= 1 the bound
    is not valid (it can under-noise), so this function refuses it. Prefer
    :func:`analytic_gaussian_sigma`, which is valid everywhere and smaller.
    """
    epsilon = validation.positive_float(epsilon, "epsilon")
    if epsilon >= 1.0:
        raise ConfigurationError(
            f"the classical Gaussian bound holds only for epsilon < 1; found {epsilon}: "
            "use analytic_gaussian_sigma"
        )
    delta = check_delta(delta)
    sensitivity = validation.positive_float(sensitivity, "sensitivity")
    return math.sqrt(2.0 * math.log(1.25 / delta)) * sensitivity / epsilon


def analytic_gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest noise std for which one Gaussian release is (epsilon, delta)-DP.

    The analytic Gaussian mechanism (Balle & Wang 2018, arXiv 1805.06530,
    Thm. 8): the release is (eps, delta)-DP iff
    ``Phi(D/(2s) - eps s/D) - e^eps Phi(-D/(2s) - eps s/D) <= delta``; the left
    side decreases in ``s``, so bisection on ``z = s / D`` finds the boundary.
    The returned sigma always satisfies the inequality (the bisection keeps
    the feasible end) and is within a relative 1e-12 of the optimum.
    """
    epsilon = validation.positive_float(epsilon, "epsilon")
    delta = check_delta(delta)
    sensitivity = validation.positive_float(sensitivity, "sensitivity")

    def feasible(z: float) -> bool:
        return float(gaussian_delta(epsilon=epsilon, noise_multiplier=z)) <= delta

    low, high = 0.0, 1.0
    while not feasible(high):
        low, high = high, 2.0 * high
    while high - low > 1e-12 * high:
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if feasible(mid):
            high = mid
        else:
            low = mid
    return high * sensitivity


def epsilon_for(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantName = "rdp",
    value_discretization_interval: float | None = None,
    event_for: EventFactory | None = None,
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled rounds, with the named accountant.

    Each round is ``event_for(noise_multiplier, sample_rate)``; by default the
    Poisson-subsampled Gaussian (for distributed Skellam or discrete Gaussian
    rounds pass :func:`securefl.privacy.distributed.event_factory`).
    ``value_discretization_interval`` is the PLD grid step (None: adaptive,
    see :class:`~securefl.privacy.accountant.PLDAccountant`).
    """
    if accountant == "rdp":
        rdp = RDPAccountant()
        if event_for is None:
            rdp.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        else:
            rdp.compose(event_for(noise_multiplier, sample_rate), count=steps)
        return rdp.get_epsilon(delta)
    if accountant == "pld":
        pld = PLDAccountant(value_discretization_interval=value_discretization_interval)
        if event_for is None:
            pld.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        else:
            pld.compose(event_for(noise_multiplier, sample_rate), count=steps)
        return pld.get_epsilon(delta)
    raise ConfigurationError(f"accountant must be 'rdp' or 'pld'; found {accountant!r}")


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName = "rdp",
    tolerance: float = 1e-4,
    value_discretization_interval: float | None = None,
    event_for: EventFactory | None = None,
) -> float:
    """The (near-)smallest noise multiplier whose accounted epsilon is <= ``target_epsilon``.

    Bisection in ``z`` for ``steps`` rounds of the Poisson-subsampled Gaussian
    (or of ``event_for(z, sample_rate)``, see :func:`epsilon_for`)
    at rate ``sample_rate`` against ``accountant`` (``"rdp"`` or ``"pld"``).
    The invariant is ``epsilon(high) <= target`` for the bracket's upper end,
    and ``high`` is what is returned, so the answer **never overshoots** the
    target (whatever the accountant's monotonicity); the bracket shrinks until
    ``(high - low) <= tolerance * high``. Edge-of-grid warnings are silenced
    during the search. Raises ``ConfigurationError`` if even ``z = 1e6``
    misses the target.
    """
    target_epsilon = validation.positive_float(target_epsilon, "target_epsilon")
    delta = check_delta(delta)
    sample_rate = check_sample_rate(sample_rate)
    steps = check_steps(steps)
    if accountant not in ("rdp", "pld"):
        raise ConfigurationError(f"accountant must be 'rdp' or 'pld'; found {accountant!r}")
    if not (0.0 < tolerance < 1.0):
        raise ConfigurationError(f"tolerance must be in (0, 1); found {tolerance}")
    if event_for is None:  # a pure function of its arguments: the same search is done once per process
        return _calibrated_gaussian(target_epsilon, delta, sample_rate, steps, accountant, tolerance,
                                    value_discretization_interval)
    return _bisect(target_epsilon, delta, sample_rate, steps, accountant, tolerance, value_discretization_interval,
                   event_for)


@functools.lru_cache(maxsize=256)
def _calibrated_gaussian(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: AccountantName, tolerance: float,
                         value_discretization_interval: float | None) -> float:
    return _bisect(target_epsilon, delta, sample_rate, steps, accountant, tolerance, value_discretization_interval,
                   None)


def _bisect(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: AccountantName,
            tolerance: float, value_discretization_interval: float | None, event_for: EventFactory | None) -> float:
    """The bracket search of :func:`calibrate_noise_multiplier` (arguments already checked)."""

    def meets_target(z: float) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            epsilon = epsilon_for(
                noise_multiplier=z,
                sample_rate=sample_rate,
                steps=steps,
                delta=delta,
                accountant=accountant,
                value_discretization_interval=value_discretization_interval,
                event_for=event_for,
            )
        return epsilon <= target_epsilon

    low, high = 0.0, 1.0
    if meets_target(high):
        # Shrink towards the smallest useful z; below the floor, keep the floor.
        while high > _MIN_NOISE_MULTIPLIER and meets_target(high / 2.0):
            high /= 2.0
        low = high / 2.0
    else:
        while not meets_target(high):
            low, high = high, 2.0 * high
            if high > _MAX_NOISE_MULTIPLIER:
                raise ConfigurationError(
                    f"no noise multiplier up to {_MAX_NOISE_MULTIPLIER:g} reaches target_epsilon={target_epsilon}"
                )
    while high - low > tolerance * high:
        mid = 0.5 * (low + high)
        if meets_target(mid):
            high = mid
        else:
            low = mid
    return high
