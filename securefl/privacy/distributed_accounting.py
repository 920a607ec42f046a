"""RDP of the discrete mechanisms of distributed DP: Skellam and the distributed discrete Gaussian.

Under distributed DP every client adds a share of integer noise to its
rounded update inside the secure sum, so the server unmasks
``sum_i round(x_i) + noise``. Both events below describe one such release
with the sensitivities *after* scaling and conditional rounding, in integer
(ring) units: ``l2_sensitivity`` = Delta_2, the L2 bound the rounded vector
is forced under, and ``l1_sensitivity`` = Delta_1 <= min(sqrt(d), Delta_2) Delta_2
(integer coordinates: ``|v_i| <= v_i^2``). ``noise_multiplier`` z is the
released noise standard deviation over Delta_2, so the central variance is
``V = (z Delta_2)^2`` -- directly comparable with the Gaussian's z.

* :class:`SkellamEvent` -- noise ``Sk(V)`` = Poisson(V/2) - Poisson(V/2) per
  coordinate (Skellam is closed under sums: t shares of ``Sk(V/t)`` are
  ``Sk(V)``). RDP at integer orders alpha > 1 (Agarwal, Kairouz & Liu,
  NeurIPS 2021, arXiv 2110.04995, Thm. 3.5, in the parametrisation where V is
  the variance):

      eps(alpha) = alpha Delta_2^2 / (2 V)
                   + min( ((2 alpha - 1) Delta_2^2 + 6 Delta_1) / (4 V^2),  3 Delta_1 / (2 V) ).

  The first term is exactly the Gaussian's RDP at the same variance.
* :class:`DistributedDiscreteGaussianEvent` -- the sum of ``shares`` = n
  independent discrete Gaussians ``N_Z(0, sigma^2)`` per coordinate,
  ``sigma^2 = V / n``; it is not itself a discrete Gaussian. With
  ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1))``
  (Kairouz, Liu & Steinke, ICML 2021, arXiv 2102.06387, Thm. 1) and
  ``a = Delta_2 / sqrt(V)``, ``b = Delta_1 / sqrt(V)`` (their Prop. 14 / Eq. 17):

      eps(alpha) = min( alpha a^2 / 2 + tau d,
                        alpha/2 (a^2 + 2 b tau + tau^2 d),
                        alpha/2 (a + tau sqrt(d))^2 ).

  With n = 1 (tau = 0) this is the discrete Gaussian's ``alpha a^2 / 2``
  (Canonne, Kamath & Steinke 2020).

**Orders.** Both bounds are stated for integer orders. Between integers
the bound is interpolated along the chord of ``(alpha - 1) eps(alpha)``,
which is convex in alpha (:func:`_at_orders`); below 2 the chord runs from
``F(1) = 0``.

**Poisson sampling.** With sample rate q < 1, at integer alpha,

    eps_q(alpha) <= 1/(alpha-1) log sum_{i=0}^{alpha} C(alpha,i) (1-q)^(alpha-i) q^i e^{(i-1) eps(i)},

never more than the unsampled eps(alpha) (:func:`poisson_subsampled_rdp`).
The sum is the exact binomial expansion of the "remove" direction
(Mironov, Talwar & Zhang 2019, Sec. 3.2, valid for any mechanism); the
"add" direction is no larger because both mechanisms are *symmetric* pairs
(a reflection swaps the output laws with and without the client): a short
proof is in ``protocols/dp.md`` (the Gaussian case is Mironov et al. 2019,
Thm. 5). For the Gaussian curve ``eps(i) = i/(2 z^2)`` this is exactly the
integer-order subsampled-Gaussian RDP; the Skellam curve adds only the tiny
surcharge above, so distributed Skellam and the central Gaussian cost the
same privacy at equal variance (to a fraction of a percent, from the chord
between integer orders).

**Exact noise.** Over SecAgg with Skellam noise (``DistributedDP``'s default)
the protocol removes the excess shares (``protocols/secagg/noise.py``), so the
release carries exactly ``Sk(V)`` whatever the survivors: the event is its
exact law and the assumption below is not needed.

**Modelling assumption (as in both papers; threshold shares).** The release is analysed as
``sum of rounded updates + noise of variance exactly V`` (t shares). When
more than t clients survive, the extra shares only add noise and are treated
as post-processing; this ignores what the *amount* of noise reveals about
how many clients took part. Against the server, which knows the cohort, the
sampling amplification does not apply at all: see ``protocols/dp.md``.

The PLD accountant does not support these events (``ConfigurationError``):
a sound PLD needs one pair of output laws that dominates every neighbouring
pair, and for a multi-coordinate integer release bounded only through
Delta_2 and Delta_1 none is established. Measured (``benchmarks/accountant.py
--distributed``): the exact PLD of the admissible pair with all of
``floor(Delta_2)`` on one coordinate -- a *lower* bound on the true epsilon --
is 1/1.129 of the RDP epsilon at z = 1.2, q = 0.3, T = 20, delta = 1e-5 (both
mechanisms), 1/1.154 at z = 1, q = 0.01, T = 1000, and 1/3.5 at z = 3,
q = 0.0003, T = 3000, delta = 1e-6: the Gaussian's RDP/PLD ratios, so a PLD
would save at most what it saves for the Gaussian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
from numpy.typing import NDArray
from scipy import special

from securefl import validation
from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    PrivacyEvent,
    check_noise_multiplier,
    check_orders,
    check_sample_rate,
    rdp_of_event,
    register_event,
)

__all__ = [
    "DistributedDiscreteGaussianEvent",
    "SkellamEvent",
    "ddg_tau",
    "distributed_discrete_gaussian_rdp",
    "poisson_subsampled_rdp",
    "skellam_rdp",
]

#: The binomial sum runs over i = 0..alpha; past this order the unsampled
#: bound (always valid) is used instead.
_MAX_SUBSAMPLED_ORDER: Final = 1 << 13


def _check_sensitivities(l2: float, l1: float) -> tuple[float, float]:
    l2 = validation.positive_float(l2, "l2_sensitivity")
    l1 = validation.positive_float(l1, "l1_sensitivity")
    if l1 < l2 * (1.0 - 1e-12):
        raise ConfigurationError(f"l1_sensitivity must be >= l2_sensitivity={l2}; found {l1}")
    return l2, l1


def _at_orders(
    integer_curve: Callable[[NDArray[np.int64]], NDArray[np.float64]], orders: NDArray[np.float64] | NDArray[np.int64]
) -> NDArray[np.float64]:
    """An RDP bound at any orders > 1 from a bound at integer orders >= 2.

    ``F(alpha) = (alpha - 1) D_alpha`` is the log of ``E_Q[(P/Q)^alpha]``,
    convex in alpha (Hoelder) with ``F(1) = 0``; so between integers k and k+1
    ``F`` lies below the chord, ``eps(alpha) <= ((1-t) F(k) + t F(k+1)) / (alpha - 1)``
    with ``t = alpha - k`` (the interpolation of Wang, Balle & Kasiviswanathan
    2019, Cor. 10). At integers this is the bound itself.
    """
    alpha = np.asarray(orders, dtype=np.float64)
    if np.any(~(alpha > 1.0)):
        raise ConfigurationError(f"RDP orders must be > 1; found {alpha[~(alpha > 1.0)][0]}")
    low = np.floor(alpha + 1e-12).astype(np.int64)
    t = np.clip(alpha - low, 0.0, 1.0)
    needed = np.unique(np.concatenate([low[low >= 2], low + 1]))
    scaled = (needed - 1) * np.asarray(integer_curve(needed), dtype=np.float64)
    log_moment = dict(zip(needed.tolist(), scaled.tolist()))
    log_moment[1] = 0.0
    f_low = np.array([log_moment[k] for k in low.tolist()])
    f_high = np.array([log_moment[k + 1] for k in low.tolist()])
    with np.errstate(invalid="ignore"):
        chord = np.where(t > 0.0, (1.0 - t) * f_low + t * f_high, f_low)
    result: NDArray[np.float64] = np.where(np.isnan(chord), np.inf, chord) / (alpha - 1.0)
    return result


# --------------------------------------------------------------------------
# unsampled curves
# --------------------------------------------------------------------------


def skellam_rdp(
    *, orders: NDArray[np.float64] | NDArray[np.int64], noise_multiplier: float, l2_sensitivity: float,
    l1_sensitivity: float,
) -> NDArray[np.float64]:
    """RDP of one Skellam release at each order (Agarwal, Kairouz & Liu 2021, Thm. 3.5).

    ``eps(alpha) = alpha D2^2/(2V) + min(((2 alpha - 1) D2^2 + 6 D1)/(4 V^2), 3 D1/(2V))``
    with ``V = (z D2)^2``; between integer orders, the chord of :func:`_at_orders`.
    """
    z = check_noise_multiplier(noise_multiplier)
    l2, l1 = _check_sensitivities(l2_sensitivity, l1_sensitivity)
    if z == 0.0:
        return np.full(np.shape(orders), math.inf)
    variance = (z * l2) ** 2

    def at_integers(alpha_int: NDArray[np.int64]) -> NDArray[np.float64]:
        alpha = alpha_int.astype(np.float64)
        gaussian = alpha * l2 * l2 / (2.0 * variance)
        surcharge = np.minimum(((2.0 * alpha - 1.0) * l2 * l2 + 6.0 * l1) / (4.0 * variance * variance),
                               3.0 * l1 / (2.0 * variance))
        result: NDArray[np.float64] = gaussian + surcharge
        return result

    return _at_orders(at_integers, orders)


def ddg_tau(*, local_variance: float, shares: int) -> float:
    """``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k/(k+1))`` (Kairouz, Liu & Steinke 2021, Thm. 1).

    Bounds how far the sum of n discrete Gaussians ``N_Z(0, sigma^2)`` is from
    a discrete Gaussian of variance ``n sigma^2``; negligible once sigma >> 1.
    """
    sigma2 = validation.positive_float(local_variance, "local_variance")
    n = validation.positive_int(shares, "shares")
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * sigma2 * k / (k + 1.0))))


def distributed_discrete_gaussian_rdp(
    *, orders: NDArray[np.float64] | NDArray[np.int64], noise_multiplier: float, l2_sensitivity: float,
    l1_sensitivity: float, dimension: int, shares: int,
) -> NDArray[np.float64]:
    """RDP of the sum of ``shares`` discrete Gaussians (Kairouz, Liu & Steinke 2021, Prop. 14 with Thm. 1's tau).

    ``min(alpha a^2/2 + tau d, alpha/2 (a^2 + 2 b tau + tau^2 d), alpha/2 (a + tau sqrt d)^2)``
    with ``a = D2/sqrt(V)``, ``b = D1/sqrt(V)``, ``V = (z D2)^2``, local ``sigma^2 = V/n``;
    between integer orders, the chord of :func:`_at_orders`.
    """
    z = check_noise_multiplier(noise_multiplier)
    l2, l1 = _check_sensitivities(l2_sensitivity, l1_sensitivity)
    d = validation.positive_int(dimension, "dimension")
    n = validation.positive_int(shares, "shares")
    if z == 0.0:
        return np.full(np.shape(orders), math.inf)
    variance = (z * l2) ** 2
    tau = ddg_tau(local_variance=variance / n, shares=n)
    a, b = 1.0 / z, l1 / (z * l2)

    def at_integers(alpha_int: NDArray[np.int64]) -> NDArray[np.float64]:
        alpha = alpha_int.astype(np.float64)
        first = alpha * a * a / 2.0 + tau * d
        second = alpha / 2.0 * (a * a + 2.0 * b * tau + tau * tau * d)
        third = alpha / 2.0 * (a + tau * math.sqrt(d)) ** 2
        result: NDArray[np.float64] = np.minimum(np.minimum(first, second), third)
        return result

    return _at_orders(at_integers, orders)


# --------------------------------------------------------------------------
# Poisson subsampling of a symmetric mechanism
# --------------------------------------------------------------------------


def poisson_subsampled_rdp(
    curve: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    *,
    sample_rate: float,
    orders: NDArray[np.float64] | NDArray[np.int64],
) -> NDArray[np.float64]:
    """RDP of the Poisson-subsampled version of a *symmetric* mechanism from its RDP ``curve``.

    At integer alpha (other orders: the chord of :func:`_at_orders`), with Q the output law without
    the client and R with it (``P = (1-q) Q + q R``):

    * remove direction, exactly by the binomial expansion
      ``E_Q[(1-q+qL)^alpha] = sum_i C(alpha,i) (1-q)^(alpha-i) q^i e^{(i-1) D_i(R||Q)}``
      (Mironov, Talwar & Zhang 2019, Sec. 3.2, which holds for any pair), with
      ``D_i(R||Q) <= eps(i)``;
    * add direction, ``D_alpha(Q||P) <= D_alpha(P||Q)`` for every pair that an
      involution swaps (T#Q = R, T#R = Q) -- here the reflection
      ``y -> 2W + x - y`` of symmetric noise around the two means. Proof in
      ``protocols/dp.md`` (the Gaussian case is Mironov et al. 2019, Thm. 5).

    Hence ``eps_q(alpha) <= log(sum_i ...) / (alpha - 1)`` (for mechanisms
    that are not symmetric, Zhu & Wang 2019's general bound multiplies the
    i >= 3 terms by 3); never more than the unsampled ``eps(alpha)``. Summed in log space, one vectorised sum per
    distinct order; ``curve`` maps an int64 array of orders >= 2 to RDP.
    """
    q = check_sample_rate(sample_rate)
    if q == 1.0:
        return _at_orders(curve, orders)

    def at_integers(alpha: NDArray[np.int64]) -> NDArray[np.float64]:
        unsampled = np.asarray(curve(alpha), dtype=np.float64)
        small = alpha <= _MAX_SUBSAMPLED_ORDER
        result = np.copy(unsampled)
        if not np.any(small):
            return result
        unique = np.unique(alpha[small])
        top = int(unique.max())
        # the i = 0, 1 terms carry no divergence: E_Q[L^0] = E_Q[L] = 1
        eps = np.concatenate([[0.0, 0.0], np.asarray(curve(np.arange(2, top + 1, dtype=np.int64)), dtype=np.float64)])
        if not np.all(np.isfinite(eps)):
            return result
        log_q, log_1mq = math.log(q), math.log1p(-q)
        log_fact = special.gammaln(np.arange(top + 1, dtype=np.float64) + 1.0)
        lengths = unique + 1
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        i = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
        a = np.repeat(unique, lengths)
        terms = (log_fact[a] - log_fact[i] - log_fact[a - i] + i * log_q + (a - i) * log_1mq
                 + np.maximum(i - 1, 0) * eps[i])
        peak = np.maximum.reduceat(terms, starts)
        log_moment = peak + np.log(np.add.reduceat(np.exp(terms - np.repeat(peak, lengths)), starts))
        lookup = dict(zip(unique.tolist(), (log_moment / (unique - 1.0)).tolist()))
        result[small] = np.minimum(unsampled[small], [lookup[int(o)] for o in alpha[small]])
        return result

    return _at_orders(at_integers, orders)


# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------


def _check_noise_fields(event: SkellamEvent | DistributedDiscreteGaussianEvent) -> None:
    """Validate and normalise the noise multiplier and both sensitivities of a frozen event in place."""
    object.__setattr__(event, "noise_multiplier", check_noise_multiplier(event.noise_multiplier))
    l2, l1 = _check_sensitivities(event.l2_sensitivity, event.l1_sensitivity)
    object.__setattr__(event, "l2_sensitivity", l2)
    object.__setattr__(event, "l1_sensitivity", l1)


@register_event
@dataclass(frozen=True)
class SkellamEvent(PrivacyEvent):
    """One distributed-Skellam release, on a Poisson sample of rate ``sample_rate``.

    Noise ``Sk(V)`` per coordinate, ``V = (noise_multiplier * l2_sensitivity)^2``
    in integer units; sensitivities after scaling and conditional rounding.
    RDP: Agarwal, Kairouz & Liu 2021, Thm. 3.5; Poisson-subsampled with
    :func:`poisson_subsampled_rdp` (module docstring).
    """

    kind: ClassVar[str] = "skellam"
    noise_multiplier: float
    l2_sensitivity: float
    l1_sensitivity: float
    sample_rate: float = 1.0

    def __post_init__(self) -> None:
        _check_noise_fields(self)
        object.__setattr__(self, "sample_rate", check_sample_rate(self.sample_rate))

    def rdp(self, orders: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.float64]:
        def curve(alpha: NDArray[np.int64]) -> NDArray[np.float64]:
            return skellam_rdp(orders=alpha, noise_multiplier=self.noise_multiplier,
                               l2_sensitivity=self.l2_sensitivity, l1_sensitivity=self.l1_sensitivity)

        return poisson_subsampled_rdp(curve, sample_rate=self.sample_rate, orders=orders)


@register_event
@dataclass(frozen=True)
class DistributedDiscreteGaussianEvent(PrivacyEvent):
    """One distributed-discrete-Gaussian release (``shares`` clients' noise), Poisson-sampled.

    Each of the n = ``shares`` clients whose noise the release is guaranteed
    to carry adds ``N_Z(0, V/n)`` per coordinate, ``V = (z D2)^2``, over
    ``dimension`` coordinates. RDP: Kairouz, Liu & Steinke 2021, Prop. 14
    with Thm. 1's tau; Poisson-subsampled with :func:`poisson_subsampled_rdp`.
    """

    kind: ClassVar[str] = "distributed_discrete_gaussian"
    noise_multiplier: float
    l2_sensitivity: float
    l1_sensitivity: float
    dimension: int
    shares: int
    sample_rate: float = 1.0

    def __post_init__(self) -> None:
        _check_noise_fields(self)
        object.__setattr__(self, "dimension", validation.positive_int(self.dimension, "dimension"))
        object.__setattr__(self, "shares", validation.positive_int(self.shares, "shares"))
        object.__setattr__(self, "sample_rate", check_sample_rate(self.sample_rate))

    def rdp(self, orders: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.float64]:
        def curve(alpha: NDArray[np.int64]) -> NDArray[np.float64]:
            return distributed_discrete_gaussian_rdp(
                orders=alpha, noise_multiplier=self.noise_multiplier, l2_sensitivity=self.l2_sensitivity,
                l1_sensitivity=self.l1_sensitivity, dimension=self.dimension, shares=self.shares)

        return poisson_subsampled_rdp(curve, sample_rate=self.sample_rate, orders=orders)


@rdp_of_event.register
def _(event: SkellamEvent, orders: NDArray[np.float64]) -> NDArray[np.float64]:
    return event.rdp(check_orders(orders))


@rdp_of_event.register
def _(event: DistributedDiscreteGaussianEvent, orders: NDArray[np.float64]) -> NDArray[np.float64]:
    return event.rdp(check_orders(orders))
