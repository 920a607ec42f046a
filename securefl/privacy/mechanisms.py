"""DP mechanisms: L2 clipping, Gaussian noise, exact discrete Gaussian, Skellam.

Every sampler takes an explicit ``numpy.random.Generator`` (never the global
``np.random`` state) and is vectorised: no Python loop per coordinate. The
exact discrete Gaussian loops only over rejection *rounds*, each round
processing the whole batch of still-pending samples.

Threat model: these are *simulation-grade* samplers. A ``Generator`` seeded
for reproducibility is fine for experiments; a deployment that relies on the
noise for privacy must seed it from ``secrets``/``os.urandom`` (e.g.
``np.random.default_rng(secrets.randbits(128))``) and keep the seed secret.
Floating-point Gaussian noise is also subject to the precision attacks of
Mironov 2012; the discrete samplers (integer outputs, exact arithmetic) are
not.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from securefl import validation
from securefl.errors import ConfigurationError

__all__ = [
    "ClipResult",
    "clip_l2",
    "discrete_gaussian_noise",
    "discrete_laplace_noise",
    "gaussian_noise",
    "skellam_noise",
]

_INT64_SAFE = 1 << 62


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigurationError(f"rng must be a numpy.random.Generator; found {type(rng).__name__}")
    return rng


def _check_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(validation.is_integer(d) and d >= 0 for d in dims):
        raise ConfigurationError(f"shape must be non-negative integers; found {shape!r}")
    return tuple(int(d) for d in dims)


# --------------------------------------------------------------------------
# clipping
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipResult:
    """Clipped update(s), the norms before clipping, and the fraction clipped."""

    clipped: NDArray[np.float64]
    norms: NDArray[np.float64]
    clip_fraction: float


def clip_l2(updates: ArrayLike, *, max_norm: float) -> ClipResult:
    """Scale each update to L2 norm at most ``max_norm``: ``x * min(1, C / ||x||_2)``.

    ``updates`` is one flattened update (1-D) or a batch with one client per
    row (2-D). Clipping bounds each client's contribution to the sum, i.e.
    the L2 sensitivity of the aggregate under add/remove-one-client adjacency
    is ``C`` -- the quantity the noise multiplier is relative to.
    ``clip_fraction`` is the fraction of rows whose norm exceeded ``C`` (a
    standard DP-FedAvg diagnostic; it is itself data-dependent, so releasing
    it costs privacy unless it is privatised too).
    """
    max_norm = validation.positive_float(max_norm, "max_norm")
    array = np.asarray(updates, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ConfigurationError(f"updates must be 1-D or 2-D; found shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigurationError("updates must be finite; found NaN or inf")
    batch = np.atleast_2d(array)
    norms = np.linalg.norm(batch, axis=1)
    with np.errstate(divide="ignore"):
        scale = np.minimum(1.0, max_norm / norms)
    clipped = batch * scale[:, None]
    fraction = float(np.mean(norms > max_norm)) if norms.size else 0.0
    if array.ndim == 1:
        return ClipResult(clipped[0], norms, fraction)
    return ClipResult(clipped, norms, fraction)


# --------------------------------------------------------------------------
# continuous Gaussian
# --------------------------------------------------------------------------


def gaussian_noise(
    *, shape: int | tuple[int, ...], std: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """I.i.d. ``N(0, std^2)`` noise of ``shape``; for DP-FedAvg ``std = z * C``."""
    std = validation.non_negative_float(std, "std")
    return _check_rng(rng).normal(0.0, std, size=_check_shape(shape))


# --------------------------------------------------------------------------
# exact Bernoulli / discrete Laplace / discrete Gaussian (CKS 2020)
# --------------------------------------------------------------------------


def _bernoulli_rational(
    numerator: NDArray[Any], denominator: NDArray[Any], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Exact Bernoulli(numerator / denominator) per element (0 <= num <= den).

    int64 arrays compare one uniform integer in [0, den). Python-int (object)
    arrays, used when values exceed 2^62, compare the binary expansion of a
    uniform U in [0, 1) with num/den 62 bits at a time (a tie, probability
    2^-62, continues with the next 62 bits), so the result is exact.
    """
    if numerator.dtype != object:
        return rng.integers(0, denominator, dtype=np.int64) < numerator
    result = np.zeros(numerator.shape, dtype=bool)
    pending = np.arange(numerator.size)
    num = numerator.ravel().copy()
    den = denominator.ravel()
    while pending.size:
        scaled = num[pending] * _INT64_SAFE
        digits = scaled // den[pending]
        draw = rng.integers(0, _INT64_SAFE, size=pending.size, dtype=np.int64).astype(object)
        result.ravel()[pending[draw < digits]] = True
        tie = draw == digits
        num[pending[tie]] = (scaled - digits * den[pending])[tie]
        pending = pending[tie]
    return result


def _bernoulli_exp_neg_fraction(
    numerator: NDArray[Any], denominator: NDArray[Any], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Exact Bernoulli(exp(-g)) for rational g = num/den in [0, 1] (CKS 2020, Alg. 1).

    Draw A_k ~ Bernoulli(g / k) for k = 1, 2, ... until the first failure at K;
    return [K odd]. Vectorised: one round per k over the still-running samples.
    """
    size = numerator.shape[0]
    result = np.zeros(size, dtype=bool)
    running = np.arange(size)
    k = 1
    while running.size:
        scaled_den = denominator[running] * k
        success = _bernoulli_rational(numerator[running], scaled_den, rng)
        stopped = running[~success]
        result[stopped] = k % 2 == 1
        running = running[success]
        k += 1
    return result


def _bernoulli_exp_neg_one(size: int, rng: np.random.Generator) -> NDArray[np.bool_]:
    ones = np.ones(size, dtype=np.int64)
    return _bernoulli_exp_neg_fraction(ones, ones, rng)


def _bernoulli_exp_neg(
    numerator: NDArray[Any], denominator: NDArray[Any], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Exact Bernoulli(exp(-g)) for rational g = num/den >= 0 (CKS 2020, Alg. 1, g > 1 case).

    ``floor(g)`` independent Bernoulli(exp(-1)) must all succeed, then one
    Bernoulli(exp(-(g - floor(g)))).
    """
    whole = numerator // denominator
    remainder = numerator - whole * denominator
    alive = np.ones(numerator.shape[0], dtype=bool)
    max_whole = int(whole.max()) if whole.size else 0
    for j in range(1, max_whole + 1):  # rounds, not coordinates: survivors shrink by e^-1
        contenders = np.flatnonzero(alive & (whole >= j))
        if contenders.size == 0:
            break
        alive[contenders] = _bernoulli_exp_neg_one(contenders.size, rng)
    survivors = np.flatnonzero(alive)
    alive[survivors] = _bernoulli_exp_neg_fraction(remainder[survivors], denominator[survivors], rng)
    return alive


def _check_scale(value: object, name: str) -> Fraction:
    """``value`` as an exact rational > 0: a float is its exact binary value, an int or Fraction itself."""
    if isinstance(value, (float, np.floating)):
        return Fraction(validation.positive_float(value, name))
    exact = Fraction(value) if isinstance(value, numbers.Rational) and validation.is_number(value) else None
    if exact is not None and exact > 0:
        return exact
    raise ConfigurationError(f"{name} must be a positive finite number; found {value!r}")


def _discrete_laplace_batch(t: int, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``size`` exact draws of the discrete Laplace ``P(y) ∝ exp(-|y|/t)`` (CKS 2020, Alg. 2).

    Rounds: U ~ Unif{0..t-1}, keep with Bernoulli(exp(-U/t)); V counts
    Bernoulli(exp(-1)) successes; X = U + t V; a sign B; (B=1, X=0) rejected.
    """
    out = np.empty(0, dtype=np.int64)
    while out.size < size:
        need = size - out.size
        draw = max(16, int(need * 1.6) + 16)  # acceptance >= 1/(2e)-ish at t=1, ~0.6 for large t
        u = rng.integers(0, t, size=draw, dtype=np.int64)
        t_array = np.full(draw, t, dtype=np.int64)
        keep = _bernoulli_exp_neg_fraction(u, t_array, rng)
        u = u[keep]
        v = np.zeros(u.size, dtype=np.int64)
        counting = np.arange(u.size)
        while counting.size:  # geometric V: one round per value of V
            success = _bernoulli_exp_neg_one(counting.size, rng)
            v[counting[success]] += 1
            counting = counting[success]
        x = u + t * v
        sign = rng.integers(0, 2, size=x.size, dtype=np.int64)
        valid = ~((sign == 1) & (x == 0))
        out = np.concatenate([out, ((1 - 2 * sign) * x)[valid]])
    return out[:size]


def discrete_laplace_noise(
    *, shape: int | tuple[int, ...], scale: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Exact discrete Laplace noise ``P(y) ∝ exp(-|y| / scale)`` on the integers (CKS 2020, Alg. 2)."""
    scale = validation.positive_int(scale, "scale")
    dims = _check_shape(shape)
    count = int(np.prod(dims, dtype=np.int64))
    return _discrete_laplace_batch(scale, count, _check_rng(rng)).reshape(dims)


def discrete_gaussian_noise(
    *, shape: int | tuple[int, ...], sigma_squared: int | float | Fraction, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Exact discrete Gaussian noise ``P(y) ∝ exp(-y^2 / (2 sigma^2))`` on the integers.

    Canonne, Kamath & Steinke 2020 (arXiv 2004.00010), Alg. 3: with
    ``t = floor(sigma) + 1``, propose Y from the discrete Laplace of scale t
    and accept with probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``.
    ``sigma_squared`` is taken as an exact rational (a float is its exact
    binary value; pass an int or ``Fraction`` for small denominators), and
    every Bernoulli is sampled exactly from uniform integers, so the output
    distribution is exactly the discrete Gaussian: no floating point touches
    the probabilities. Vectorised over the batch; Python loops run only over
    rejection rounds. Note variance is slightly below ``sigma^2`` (CKS Cor. 9).
    """
    variance = _check_scale(sigma_squared, "sigma_squared")
    rng = _check_rng(rng)
    dims = _check_shape(shape)
    count = int(np.prod(dims, dtype=np.int64))
    n, d = variance.numerator, variance.denominator
    t = math.isqrt(n // d) + 1  # floor(sqrt(n/d)) + 1
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        need = count - out.size
        y = _discrete_laplace_batch(t, max(16, int(need * 1.4) + 16), rng)
        # gamma = (|y| - s^2/t)^2 / (2 s^2) = (|y| t d - n)^2 / (2 n d t^2), exactly.
        magnitude = np.abs(y)
        biggest = (int(magnitude.max()) * t * d + n) ** 2 if y.size else 0
        exact_ints = max(biggest, 2 * n * d * t * t) * 64 >= _INT64_SAFE
        if exact_ints:
            mag = magnitude.astype(object)
            numerator = (mag * (t * d) - n) ** 2
            denominator = np.full(y.size, 2 * n * d * t * t, dtype=object)
        else:
            numerator = (magnitude * (t * d) - n) ** 2
            denominator = np.full(y.size, 2 * n * d * t * t, dtype=np.int64)
        accept = _bernoulli_exp_neg(numerator, denominator, rng)
        out = np.concatenate([out, y[accept]])
    return out[:count].reshape(dims)


# --------------------------------------------------------------------------
# Skellam
# --------------------------------------------------------------------------


def skellam_noise(*, shape: int | tuple[int, ...], mu: float, rng: np.random.Generator) -> NDArray[np.int64]:
    """Symmetric Skellam noise ``Poisson(mu) - Poisson(mu)``: integer, variance ``2 mu``.

    The Skellam mechanism (Agarwal, Kairouz & Liu 2021, arXiv 2110.04995) for
    integer-ring secure aggregation: a sum of independent Skellam(mu_i) is
    Skellam(sum mu_i), so per-client shares add up to the central noise.
    Uses numpy's Poisson sampler (not bit-exact).
    """
    if not validation.is_number(mu) or not 0.0 <= float(mu) < 1e15:
        raise ConfigurationError(f"mu must be a number in [0, 1e15); found {mu!r}")
    rng = _check_rng(rng)
    dims = _check_shape(shape)
    return rng.poisson(float(mu), size=dims).astype(np.int64) - rng.poisson(float(mu), size=dims).astype(np.int64)
