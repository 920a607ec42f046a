"""Distributed DP: each client noises its own quantised update inside the secure sum.

The client pipeline (Kairouz, Liu & Steinke, ICML 2021, arXiv 2102.06387,
Sec. 4; Agarwal, Kairouz & Liu, NeurIPS 2021, arXiv 2110.04995, Sec. 4):

1. **L2 clip** ``x <- x min(1, C/||x||)``.
2. **Randomised Hadamard rotation** ``y = H D x / sqrt(d')``: x is zero-padded
   to d' = 2^k, D is a diagonal of public random signs (a per-round seed) and
   H the Walsh-Hadamard matrix (fast transform, log2 d' vectorised butterfly
   stages). R = HD/sqrt(d') is orthonormal, so norms are preserved, and every
   coordinate of R v is a Rademacher sum, sub-Gaussian with variance proxy
   ``||v||^2 / d'`` -- the rotation flattens the vector so few bits suffice.
3. **Scale** by s (ring units per float unit).
4. **Conditional randomised rounding**: unbiased stochastic rounding to the
   integers, repeated until ``||round(s y)||_2^2 <= B``, where
   ``sqrt(B) = Delta_2`` is the bound of Kairouz et al. 2021 (Prop. 22):
   ``min(sC + sqrt(d'), sqrt((sC)^2 + d'/4 + sqrt(2 ln(1/beta)) (sC + sqrt(d')/2)))``,
   exceeded with probability <= beta per attempt. The bound is *enforced*, so
   ``Delta_2`` is the exact L2 sensitivity of a client's integer vector and
   ``Delta_1 <= min(sqrt(d'), Delta_2) Delta_2``.
5. **Noise share**: Skellam ``Sk(V/t)`` (default; closed under sums) or the
   discrete Gaussian ``N_Z(0, V/t)`` per coordinate, where
   ``V = (z Delta_2)^2`` is the central variance and t the minimum number of
   clients whose inputs the protocol must sum to complete (its threshold):
   any completed round carries at least V.
6. **Modular clipping** into Z_2^b (two's complement).

The server unmasks ``sum_i`` in Z_2^b, reads it as signed, divides by s and
applies R^T (then drops the padding); the caller divides by its denominator.

A coordinate of the true integer sum outside ``[-2^(b-1), 2^(b-1))`` wraps
around. :meth:`DistributedPipeline.wrap_probability` bounds the probability
that *any* coordinate wraps (Chernoff bound, union over coordinates), and
:meth:`DistributedPipeline.design` picks the largest scale s keeping that
bound below a target; :class:`WrapAroundWarning` fires above 1e-4.

Threat model: the noise is added by the clients, so the aggregate the
server unmasks is already differentially private: the guarantee holds
against the server itself (up to the threshold of colluding/dropping
clients), not only against observers of the model. Randomness: a seeded
Generator is for simulation; deployments draw the rounding and noise from
OS entropy. The rotation seed is public and may be chosen by the server: it
only affects the wrap-around probability (utility), never privacy, because
the rounding bound is enforced after rotation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from securefl import ring, validation
from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    PrivacyEvent,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
)
from securefl.privacy.distributed_accounting import DistributedDiscreteGaussianEvent, SkellamEvent
from securefl.privacy.mechanisms import clip_l2, discrete_gaussian_noise, skellam_noise

__all__ = [
    "DEFAULT_BETA",
    "MECHANISMS",
    "WRAP_WARNING_THRESHOLD",
    "DistributedPipeline",
    "Mechanism",
    "WrapAroundWarning",
    "conditional_round",
    "event_factory",
    "padded_dimension",
    "rotate",
    "rotation_signs",
    "rounded_l1_bound",
    "rounded_l2_bound",
    "sensitivities",
    "unrotate",
    "walsh_hadamard",
    "wrap_probability",
]

Mechanism = Literal["skellam", "ddgauss"]
MECHANISMS: Final[tuple[str, ...]] = ("skellam", "ddgauss")

#: Conditional-rounding failure probability per attempt, as in Kairouz et al. 2021.
DEFAULT_BETA: Final = math.exp(-0.5)

#: Above this per-round probability that some coordinate wraps, a warning fires.
WRAP_WARNING_THRESHOLD: Final = 1e-4

#: Default design target for the wrap-around probability of a round.
DEFAULT_WRAP_TARGET: Final = 1e-6

_MAX_ROUNDING_TRIES: Final = 200
_MAX_RING_BITS: Final = 62


class WrapAroundWarning(UserWarning):
    """The chosen bits and scale let a coordinate wrap around with probability > 1e-4."""


# --------------------------------------------------------------------------
# randomised Hadamard rotation
# --------------------------------------------------------------------------


def padded_dimension(dimension: int) -> int:
    """The smallest power of two >= ``dimension``."""
    return 1 << (validation.positive_int(dimension, "dimension") - 1).bit_length()


def walsh_hadamard(values: ArrayLike) -> NDArray[Any]:
    """Unnormalised Walsh-Hadamard transform ``H v`` along the last axis (length 2^k).

    Sylvester ordering, ``H H = d I``. log2(d) butterfly stages, each one
    vectorised over the whole array: ``(a, b) -> (a + b, a - b)`` on blocks of
    width 1, 2, 4, ... Integer input stays integer (exact); float stays float.
    """
    array = np.array(values, copy=True)
    if array.ndim == 0:
        raise ConfigurationError("walsh_hadamard needs at least one axis")
    length = array.shape[-1]
    if length < 1 or length & (length - 1):
        raise ConfigurationError(f"the last axis must have a power-of-two length; found {length}")
    lead = array.shape[:-1]
    width = 1
    while width < length:
        blocks = array.reshape(*lead, length // (2 * width), 2, width)
        first = blocks[..., 0, :].copy()
        second = blocks[..., 1, :]
        blocks[..., 0, :] += second
        np.subtract(first, second, out=blocks[..., 1, :])
        width *= 2
    return array


def rotation_signs(*, dimension: int, seed: int | Sequence[int] | np.random.SeedSequence) -> NDArray[np.int8]:
    """The public random signs D (length ``padded_dimension(dimension)``) of one round."""
    length = padded_dimension(dimension)
    generator = np.random.default_rng(seed)
    return (generator.integers(0, 2, size=length, dtype=np.int8) * 2 - 1).astype(np.int8)


def _check_signs(signs: NDArray[Any]) -> NDArray[Any]:
    signs = np.asarray(signs)
    if signs.ndim != 1 or signs.size < 1 or signs.size & (signs.size - 1) or not np.all(np.abs(signs) == 1):
        raise ConfigurationError(f"signs must be a power-of-two-length vector of +-1; found shape {signs.shape}")
    return signs


def rotate(values: ArrayLike, *, signs: NDArray[Any]) -> NDArray[np.float64]:
    """``H D pad(x) / sqrt(d')`` for one vector (1-D) or one per row (2-D); orthonormal."""
    signs = _check_signs(signs)
    array = np.asarray(values, dtype=np.float64)
    if array.shape[-1] > signs.size:
        raise ConfigurationError(f"vector of length {array.shape[-1]} exceeds the rotation's {signs.size}")
    padded = np.zeros(array.shape[:-1] + (signs.size,))
    padded[..., : array.shape[-1]] = array
    padded *= signs
    result: NDArray[np.float64] = walsh_hadamard(padded) / math.sqrt(signs.size)
    return result


def unrotate(values: ArrayLike, *, signs: NDArray[Any], dimension: int) -> NDArray[np.float64]:
    """Inverse of :func:`rotate`: ``D H y / sqrt(d')``, truncated to the first ``dimension`` coordinates."""
    signs = _check_signs(signs)
    array = np.asarray(values, dtype=np.float64)
    if array.shape[-1] != signs.size:
        raise ConfigurationError(f"rotated vector has length {array.shape[-1]}; expected {signs.size}")
    result: NDArray[np.float64] = (walsh_hadamard(array) / math.sqrt(signs.size) * signs)[..., :dimension]
    return result


# --------------------------------------------------------------------------
# conditional randomised rounding
# --------------------------------------------------------------------------


def _check_beta(beta: float) -> float:
    """The rounding failure probability per attempt, in [0, 1) (0: the deterministic bound only)."""
    return validation.probability(beta, "beta", allow_one=False)


def rounded_l2_bound(*, norm: float, dimension: int, beta: float = DEFAULT_BETA) -> float:
    """L2 bound after randomised rounding of a vector of norm <= ``norm`` (Kairouz et al. 2021, Prop. 22).

    ``min(c + sqrt(d), sqrt(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2)))``:
    the first is deterministic (every coordinate moves by < 1), the second
    holds with probability >= 1 - beta; ``beta = 0`` keeps only the first.
    """
    c = validation.positive_float(norm, "norm")
    beta = _check_beta(beta)
    d = validation.positive_int(dimension, "dimension")
    deterministic = c + math.sqrt(d)
    if beta == 0.0:
        return deterministic
    probable = math.sqrt(c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0))
    return min(deterministic, probable)


def rounded_l1_bound(*, l2_bound: float, dimension: int) -> float:
    """``Delta_1 <= Delta_2 min(sqrt(d), Delta_2)``: Cauchy-Schwarz, and ``|v_i| <= v_i^2`` on integers."""
    return float(l2_bound) * min(math.sqrt(int(dimension)), float(l2_bound))


def sensitivities(
    *, dimension: int, scale: float, clip: float = 1.0, beta: float = DEFAULT_BETA
) -> tuple[int, float, float]:
    """``(B, Delta_2, Delta_1)`` in ring units for updates clipped to ``clip`` and scaled by ``scale``.

    ``B = floor(rounded_l2_bound(s C, d', beta)^2)`` is the squared bound that
    conditional rounding enforces (d' = padded dimension), ``Delta_2 = sqrt(B)``
    and ``Delta_1 = Delta_2 min(sqrt(d'), Delta_2)``.
    """
    padded = padded_dimension(dimension)
    scale = validation.positive_float(scale, "scale")
    clip = validation.positive_float(clip, "clip")
    bound = rounded_l2_bound(norm=scale * clip, dimension=padded, beta=beta)
    if not math.isfinite(bound * bound):
        raise ConfigurationError(
            f"scale={scale} x clip={clip} gives an L2 bound too large to represent; lower the scale"
        )
    squared = int(math.floor(bound * bound))
    l2 = math.sqrt(squared)
    return squared, l2, rounded_l1_bound(l2_bound=l2, dimension=padded)


def event_factory(
    *, mechanism: Mechanism, dimension: int, scale: float, clip: float = 1.0, beta: float = DEFAULT_BETA,
    shares: int = 1,
) -> Callable[[float, float], PrivacyEvent]:
    """``(z, q) -> event`` of one distributed-DP round, for ``calibrate_noise_multiplier(event_for=...)``.

    ``shares`` (the threshold t) matters for the discrete Gaussian only.
    """
    _check_mechanism(mechanism)
    _, l2, l1 = sensitivities(dimension=dimension, scale=scale, clip=clip, beta=beta)
    padded = padded_dimension(dimension)
    shares = _check_shares(shares)

    def make(noise_multiplier: float, sample_rate: float) -> PrivacyEvent:
        if mechanism == "skellam":
            return SkellamEvent(noise_multiplier=noise_multiplier, l2_sensitivity=l2, l1_sensitivity=l1,
                                sample_rate=sample_rate)
        return DistributedDiscreteGaussianEvent(noise_multiplier=noise_multiplier, l2_sensitivity=l2,
                                                l1_sensitivity=l1, dimension=padded, shares=shares,
                                                sample_rate=sample_rate)

    return make


def conditional_round(
    values: ArrayLike, *, squared_bound: int, rng: np.random.Generator, max_tries: int = _MAX_ROUNDING_TRIES
) -> NDArray[np.int64]:
    """Unbiased stochastic rounding, retried until ``sum(r^2) <= squared_bound`` (exact integer check).

    ``r_i = floor(v_i) + Bernoulli(v_i - floor(v_i))``; each attempt is one
    vectorised draw. With the bound of :func:`rounded_l2_bound` an attempt
    fails with probability <= beta, so ``max_tries`` failures in a row mean
    the input exceeded the design norm: ``ConfigurationError``.
    """
    if not isinstance(rng, np.random.Generator):
        raise ConfigurationError(f"rng must be a numpy.random.Generator; found {type(rng).__name__}")
    squared_bound = validation.non_negative_int(squared_bound, "squared_bound")
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ConfigurationError("values must be finite; found NaN or inf")
    floor = np.floor(array)
    fraction = array - floor
    base = floor.astype(np.int64)
    for _ in range(max_tries):
        rounded = base + (rng.random(array.shape) < fraction)
        if int(np.dot(rounded, rounded)) <= squared_bound:
            return rounded
    raise ConfigurationError(
        f"conditional rounding found no rounding with squared L2 norm <= {squared_bound} in {max_tries} tries "
        f"(input norm {float(np.linalg.norm(array)):.6g}); the input exceeds the design norm"
    )


# --------------------------------------------------------------------------
# wrap-around
# --------------------------------------------------------------------------


def wrap_probability(
    *,
    ring_bits: int,
    scale: float,
    clip: float,
    padded_dimension: int,
    clients: int,
    noise_variance: float,
    mechanism: Mechanism = "skellam",
) -> float:
    """Upper bound on Pr[some coordinate of the integer sum leaves [-2^(b-1), 2^(b-1))].

    Coordinate j of the sum is ``A_j + E_j + N_j``: the rotated scaled signal
    ``A_j``, sub-Gaussian over the random signs with proxy
    ``(s n C)^2 / d'`` (n clients of norm <= C); rounding errors with
    ``|E_j| < n``; noise of total variance ``noise_variance`` -- Skellam, with
    ``log E e^{lam N} = V (cosh lam - 1)``, or a sum of discrete Gaussians,
    ``V``-sub-Gaussian (Canonne, Kamath & Steinke 2020). A Chernoff bound at
    ``a = 2^(b-1) - n``, minimised over a grid of lam (any lam is valid), times
    2 sides and d' coordinates.
    """
    if clients < 1:
        return 0.0
    margin = float(1 << (ring_bits - 1)) - clients
    if margin <= 0:
        return 1.0
    signal = (scale * clients * clip) ** 2 / padded_dimension
    variance = max(float(noise_variance), 0.0)
    guess = margin / max(signal + variance, 1e-300)
    # Around the Gaussian optimum, and (Skellam's cosh grows like e^lam) up to where e^lam overflows: a
    # sum far inside a wide ring has its optimum at lam ~ log(margin / V), below the Gaussian guess's range.
    lam = np.concatenate([guess * np.geomspace(1e-3, 1e3, 3001), np.geomspace(1e-6, 700.0, 2001)])
    with np.errstate(over="ignore", invalid="ignore"):
        if mechanism == "skellam":
            noise_cgf = 0.0 if variance == 0 else variance * 2.0 * np.sinh(lam / 2.0) ** 2
        else:
            noise_cgf = 0.0 if variance == 0 else variance * lam * lam / 2.0
        log_bound = math.log(2.0 * padded_dimension) + lam * lam * signal / 2.0 + noise_cgf - lam * margin
    log_bound = np.where(np.isfinite(log_bound), log_bound, np.inf)
    return float(min(1.0, math.exp(min(0.0, float(np.min(log_bound))))))


# --------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------


def _check_mechanism(mechanism: object) -> Mechanism:
    if mechanism not in MECHANISMS:
        raise ConfigurationError(f"mechanism must be one of {', '.join(MECHANISMS)}; found {mechanism!r}")
    return cast(Mechanism, mechanism)


def _check_ring_bits(ring_bits: int) -> int:
    return validation.integer(ring_bits, "ring_bits", minimum=2, maximum=_MAX_RING_BITS)


def _check_shares(shares: int) -> int:
    return validation.positive_int(shares, "shares")


@dataclass(frozen=True)
class DistributedPipeline:
    """The public parameters of the distributed-DP client pipeline and its server-side decoding.

    ``scale`` s maps float units to ring units; ``squared_l2_bound`` B is the
    enforced bound on a client's squared integer norm (Delta_2 = sqrt(B));
    ``noise_multiplier`` z sets the central noise variance ``V = (z Delta_2)^2``
    in ring units (so the released noise has standard deviation about
    ``z C`` in float units, like the central Gaussian's ``z C``).
    """

    mechanism: Mechanism
    dimension: int
    clip: float
    scale: float
    ring_bits: int
    noise_multiplier: float
    beta: float = DEFAULT_BETA
    squared_l2_bound: int = 0

    def __post_init__(self) -> None:
        _check_mechanism(self.mechanism)
        padded_dimension(self.dimension)
        _check_ring_bits(self.ring_bits)
        validation.positive_float(self.clip, "clip")
        validation.positive_float(self.scale, "scale")
        check_noise_multiplier(self.noise_multiplier)
        _check_beta(self.beta)
        if self.squared_l2_bound == 0:
            squared, _, _ = sensitivities(dimension=self.dimension, scale=self.scale, clip=self.clip, beta=self.beta)
            object.__setattr__(self, "squared_l2_bound", squared)
        validation.positive_int(self.squared_l2_bound, "squared_l2_bound")

    # -- derived parameters -------------------------------------------------

    @property
    def padded_dimension(self) -> int:
        return padded_dimension(self.dimension)

    @property
    def l2_sensitivity(self) -> float:
        """Delta_2 in ring units: the enforced L2 bound of a client's rounded vector."""
        return math.sqrt(self.squared_l2_bound)

    @property
    def l1_sensitivity(self) -> float:
        """Delta_1 in ring units (:func:`rounded_l1_bound`)."""
        return rounded_l1_bound(l2_bound=self.l2_sensitivity, dimension=self.padded_dimension)

    @property
    def central_variance(self) -> float:
        """V = (z Delta_2)^2: the noise variance per coordinate every completed round carries."""
        return (self.noise_multiplier * self.l2_sensitivity) ** 2

    def local_variance(self, *, shares: int) -> float:
        """V / t: one client's share when the protocol completes with at least t = ``shares`` clients."""
        return self.central_variance / _check_shares(shares)

    def noise_std(self, *, clients: int, shares: int) -> float:
        """Standard deviation (float units) per coordinate of the decoded noise of ``clients`` shares."""
        return math.sqrt(self.local_variance(shares=shares) * clients) / self.scale

    # -- accounting -----------------------------------------------------------

    def event(self, *, sample_rate: float = 1.0, shares: int = 1) -> PrivacyEvent:
        """The privacy event of one round (RDP: :mod:`securefl.privacy.distributed_accounting`)."""
        if self.mechanism == "skellam":
            return SkellamEvent(noise_multiplier=self.noise_multiplier, l2_sensitivity=self.l2_sensitivity,
                                l1_sensitivity=self.l1_sensitivity, sample_rate=sample_rate)
        return DistributedDiscreteGaussianEvent(
            noise_multiplier=self.noise_multiplier, l2_sensitivity=self.l2_sensitivity,
            l1_sensitivity=self.l1_sensitivity, dimension=self.padded_dimension, shares=_check_shares(shares),
            sample_rate=sample_rate)

    def wrap_probability(self, *, clients: int, shares: int) -> float:
        """Bound on Pr[a wrap-around] when ``clients`` noised inputs are summed (:func:`wrap_probability`)."""
        return wrap_probability(
            ring_bits=self.ring_bits, scale=self.scale, clip=self.clip, padded_dimension=self.padded_dimension,
            clients=clients, noise_variance=self.local_variance(shares=shares) * clients, mechanism=self.mechanism)

    # -- client side ------------------------------------------------------------

    def noise(self, *, shares: int, rng: np.random.Generator, size: int | None = None) -> NDArray[np.int64]:
        """One client's noise share: ``Sk(V/t)`` or ``N_Z(0, ceil(V/t))`` per coordinate.

        Rounding is always towards *more* noise: the Poisson mean is nudged
        up one ulp, the discrete Gaussian's sigma^2 is the integer ceiling.
        """
        count = self.padded_dimension if size is None else int(size)
        local = self.local_variance(shares=shares)
        if local == 0.0:
            return np.zeros(count, dtype=np.int64)
        if self.mechanism == "skellam":
            return skellam_noise(shape=count, mu=math.nextafter(local / 2.0, math.inf), rng=rng)
        return discrete_gaussian_noise(shape=count, sigma_squared=Fraction(math.ceil(local)), rng=rng)

    def quantise(self, update: ArrayLike, *, signs: NDArray[Any], rng: np.random.Generator) -> NDArray[np.int64]:
        """Steps 1-4: clip, rotate, scale, conditionally round (no noise)."""
        vector = np.asarray(update, dtype=np.float64).ravel()
        if vector.size != self.dimension:
            raise ConfigurationError(f"update has {vector.size} values; the pipeline expects {self.dimension}")
        clipped = clip_l2(vector, max_norm=self.clip).clipped
        rotated = rotate(clipped, signs=signs) * self.scale
        return conditional_round(rotated, squared_bound=self.squared_l2_bound, rng=rng)

    def encode(
        self, update: ArrayLike, *, signs: NDArray[Any], shares: int, rng: np.random.Generator
    ) -> NDArray[Any]:
        """Steps 1-6: one client's ring vector (length d') for the secure sum."""
        integers = self.quantise(update, signs=signs, rng=rng) + self.noise(shares=shares, rng=rng)
        return ring.from_signed(integers, self.ring_bits)

    # -- server side ------------------------------------------------------------

    def decode(self, ring_sum: ArrayLike, *, signs: NDArray[Any]) -> NDArray[np.float64]:
        """Signed view of the unmasked sum, divided by s, rotated back: sum_i x_i + noise (float)."""
        vector = np.asarray(ring_sum)
        if vector.size != self.padded_dimension:
            raise ConfigurationError(f"ring sum has {vector.size} coordinates; expected {self.padded_dimension}")
        signed = ring.to_signed(vector, self.ring_bits).astype(np.float64) / self.scale
        return unrotate(signed, signs=signs, dimension=self.dimension)

    def decoded_noise(
        self, *, clients: int, shares: int, signs: NDArray[Any], rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """The float noise :meth:`decode` leaves on an aggregate of ``clients`` shares (for probes)."""
        total = np.zeros(self.padded_dimension, dtype=np.int64)
        for _ in range(clients):
            total += self.noise(shares=shares, rng=rng)
        return unrotate(total / self.scale, signs=signs, dimension=self.dimension)

    # -- design -------------------------------------------------------------------

    @classmethod
    def design(
        cls,
        *,
        dimension: int,
        ring_bits: int,
        clients: int,
        shares: int,
        clip: float = 1.0,
        mechanism: Mechanism = "skellam",
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        delta: float | None = None,
        sample_rate: float = 1.0,
        steps: int = 1,
        beta: float = DEFAULT_BETA,
        wrap_target: float = DEFAULT_WRAP_TARGET,
    ) -> DistributedPipeline:
        """The largest scale whose wrap bound for ``clients`` summed inputs is <= ``wrap_target``.

        ``shares`` is the threshold t for that cohort. Give ``noise_multiplier``
        or ``target_epsilon`` (with ``delta``, ``sample_rate``, ``steps``); in
        the latter case z is calibrated with the RDP accountant on the
        mechanism's own events (which depend on the scale through Delta_1 and
        Delta_2), alternating with the scale until both settle. Warns with
        :class:`WrapAroundWarning` if the final bound exceeds 1e-4.
        """
        mechanism = _check_mechanism(mechanism)
        dimension = validation.positive_int(dimension, "dimension")
        clip = validation.positive_float(clip, "clip")
        ring_bits = _check_ring_bits(ring_bits)
        shares = _check_shares(shares)
        if not validation.is_integer(clients) or clients < shares:
            raise ConfigurationError(f"clients must be an integer >= shares={shares}; found {clients!r}")
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ConfigurationError("give exactly one of noise_multiplier and target_epsilon")
        if target_epsilon is not None and delta is None:
            raise ConfigurationError("target_epsilon needs delta")
        wrap_target = validation.probability(wrap_target, "wrap_target", allow_zero=False, allow_one=False)

        def pipeline_at(scale: float, z: float) -> DistributedPipeline:
            return cls(mechanism=mechanism, dimension=dimension, clip=clip, scale=scale, ring_bits=ring_bits,
                       noise_multiplier=z, beta=beta)

        def calibrated(scale: float) -> float:
            if noise_multiplier is not None:
                return float(noise_multiplier)
            from securefl.privacy.calibration import calibrate_noise_multiplier

            event_for = event_factory(mechanism=mechanism, dimension=dimension, scale=scale, clip=clip, beta=beta,
                                      shares=shares)
            return calibrate_noise_multiplier(
                target_epsilon=validation.positive_float(target_epsilon, "target_epsilon"),
                delta=check_delta(delta), sample_rate=check_sample_rate(sample_rate), steps=check_steps(steps),
                event_for=event_for)

        def wrap_at(scale: float, z: float) -> float:
            return pipeline_at(scale, z).wrap_probability(clients=clients, shares=shares)

        def largest_scale(z: float) -> float:
            low, high = 1e-9 / clip, float(1 << ring_bits) / clip
            if wrap_at(low, z) > wrap_target:
                raise ConfigurationError(
                    f"ring_bits={ring_bits} cannot hold a sum of {clients} clients with wrap probability "
                    f"<= {wrap_target:g} at any scale; raise the bits"
                )
            for _ in range(200):
                middle = math.sqrt(low * high)
                if wrap_at(middle, z) <= wrap_target:
                    low = middle
                else:
                    high = middle
                if high / low < 1 + 1e-9:
                    break
            return low

        z = calibrated(float(1 << ring_bits) / clip) if noise_multiplier is None else float(noise_multiplier)
        scale = largest_scale(z)
        for _ in range(20):
            refined = calibrated(scale)
            settled = refined <= z * (1 + 1e-3)  # the calibration's own bisection jitter is 1e-4
            z = refined
            if settled:
                break
            scale = largest_scale(z)
        pipeline = pipeline_at(scale, z)
        probability = pipeline.wrap_probability(clients=clients, shares=shares)
        if probability > WRAP_WARNING_THRESHOLD:
            warnings.warn(
                f"wrap-around probability {probability:.3g} per round exceeds {WRAP_WARNING_THRESHOLD:g} "
                f"(ring_bits={ring_bits}, scale={scale:.6g}, clients={clients})",
                WrapAroundWarning, stacklevel=2,
            )
        return pipeline
