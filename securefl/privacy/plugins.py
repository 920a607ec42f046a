"""Differential privacy as a plugin of :class:`securefl.SecureAggregator`: central and distributed noise.

A plugin takes part in every round at three points, the same for both kinds:

* **client stage** (on each client, before its protocol engine): the float
  update x_i is clipped to L2 norm C and turned into the ring vector the
  protocol sums. Central DP clips to C - sqrt(d) step (so the quantised update
  is still within C) and uses the protocol's encoding at weight 1;
  distributed DP runs :class:`~securefl.privacy.distributed.DistributedPipeline`
  (rotation, conditional rounding, a noise share, modular clipping) and
  replaces the encoding. Over SecAgg (exact noise) the stage adds no noise
  itself: it draws the client's noise seed from its generator and hands it to
  the engine with the vector; the engine adds the whole share Sk(V / t) the
  seed expands and the server removes the m - t excess shares
  (``protocols/secagg/noise.py``), so the sum carries exactly Sk(V) whoever
  drops. Elsewhere the stage adds a share of variance V / t itself.
* **server stage** (after the protocol): the ring sum of the included clients
  becomes the released total. Central DP decodes it and adds N(0, (z C)^2)
  per coordinate; distributed DP only decodes (the noise is already in).
* **accounting**: one event per round, charged whether or not the round
  completes. The released mean is total / (q N) with a fixed denominator
  (q the sampling rate, N the population), so one client moves it by at
  most C / (q N).

Every client weighs 1 (the sensitivity of the sum is C). A plugin is built
from a target (``target_epsilon`` with ``delta``, ``rounds``, ``sample_rate``)
or an explicit ``noise_multiplier``. Threat model: central DP protects the
released model against everyone who sees it but not against the server,
which sees the exact sum before the noise (only the protocol protects the
updates from it); distributed DP protects against the server too, as long as
the protocol's own assumptions hold (e.g. fewer than t colluding clients
under SecAgg) and the clients' noise generators are secret. Distributed DP
needs a protocol whose sum is modular (``Protocol.modular_sum``).

Noise comes from generators seeded from the OS entropy pool unless a
simulation passes its own ``rng``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from securefl import ring, validation
from securefl.crypto.keys import context, derive32
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, ProtocolAbort
from securefl.privacy.accountant import (
    PLDAccountant,
    PoissonSampledGaussianEvent,
    PrivacyAccountingWarning,
    PrivacyEvent,
    RDPAccountant,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
)
from securefl.privacy.calibration import AccountantName, calibrate_noise_multiplier
from securefl.privacy.distributed import (
    DEFAULT_BETA,
    DEFAULT_WRAP_TARGET,
    MECHANISMS,
    WRAP_WARNING_THRESHOLD,
    DistributedPipeline,
    Mechanism,
    WrapAroundWarning,
    rotation_signs,
)
from securefl.privacy.mechanisms import clip_l2, gaussian_noise
from securefl.protocols.base import Protocol

__all__ = ["DifferentialPrivacy", "PrivateRound", "ClientStage", "CentralDP", "DistributedDP"]

Accountant = RDPAccountant | PLDAccountant

#: Cohort sizes above the Binomial(N, q) quantile at 1 - this are ignored when designing the scale.
_COHORT_TAIL = 1e-9


def _entropy_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` when a simulation passes one; otherwise a generator seeded from the OS entropy pool."""
    if rng is None:
        return np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
    if not isinstance(rng, np.random.Generator):
        raise ConfigurationError(f"rng must be a numpy.random.Generator or None; found {type(rng).__name__}")
    return rng


@dataclass(frozen=True)
class ClientStage:
    """What a client's DP stage hands its protocol engine: the ring vector, and whether its L2 norm was cut."""

    vector: NDArray[Any]
    l2_clipped: bool
    clipped_coordinates: int = 0


class PrivateRound(ABC):
    """The DP stages of one round (fixed public parameters: the event, the rotation, the shares).

    ``wrap_probability`` is the design probability that the round's sum
    wrapped the ring (distributed DP, set by :meth:`server_stage`; 0 otherwise).
    """

    event: PrivacyEvent
    wrap_probability: float = 0.0

    @abstractmethod
    def client_stage(self, update: NDArray[np.float64], *, rng: np.random.Generator) -> ClientStage:
        """Client side: the flat float update -> the ring vector its engine takes (``rng`` is the client's own)."""

    @abstractmethod
    def server_stage(self, ring_sum: NDArray[Any], *, included: int) -> NDArray[np.float64]:
        """Server side: the ring sum of ``included`` clients -> the released (noisy) float total."""


@dataclass(eq=False)
class DifferentialPrivacy(ABC):
    """A DP plugin: clip C, sampling rate q, population N, delta; one accountant event per round.

    The noise is ``noise_multiplier`` z, or the smallest z meeting
    ``target_epsilon`` at ``delta`` after ``rounds`` releases. :meth:`bind`
    fixes the plugin to a protocol and a dimension (once; it returns the
    protocol to run), :meth:`begin_round` gives the round's stages,
    :meth:`denominator` is q N. ``rng`` is a simulation's seeded generator
    (None: the OS entropy pool).
    """

    kind: ClassVar[str]
    clip: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    rounds: int | None = None
    sample_rate: float = 1.0
    population: int | None = None
    rng: np.random.Generator | None = field(default=None, repr=False)

    @abstractmethod
    def bind(self, protocol: Protocol, *, dimension: int, cohort: int) -> Protocol:
        """Check ``protocol`` is supported and fix the parameters for ``dimension``; the protocol to run."""

    @abstractmethod
    def begin_round(self, round: int, *, cohort: int, public_seed: bytes | None = None) -> PrivateRound:
        """The stages of ``round`` with ``cohort`` clients taking part.

        ``public_seed`` (bytes both sides know, e.g. a round's ticket) fixes
        the round's public randomness where the parties do not share the
        plugin object (a deployment); None uses the plugin's own entropy.
        """

    @abstractmethod
    def make_accountant(self) -> Accountant:
        """A fresh accountant for the events of :meth:`begin_round`."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """The plugin's public parameters, as plain data (for ``--json`` output)."""

    def protocol_for(self, protocol: Protocol) -> Protocol:
        """The protocol a round runs under this plugin (``ConfigurationError`` if it cannot carry it)."""
        return protocol

    def server_epsilon(self, participations: int) -> float | None:
        """Epsilon against the server after ``participations`` rounds of one client; None: no bound.

        Central DP adds its noise after the server has seen the exact sum, so
        it bounds nothing against the server (the protocol protects the updates).
        """
        return None

    def denominator(self, cohort: int) -> float:
        """q N, the fixed denominator of the released mean (N = ``population``, else the cohort at q = 1)."""
        if self.population is not None:
            return self.sample_rate * self.population
        return float(max(cohort, 1))

    def _check_common(self) -> None:
        self.clip = validation.positive_float(self.clip, "clip")
        self.sample_rate = check_sample_rate(self.sample_rate)
        self.delta = check_delta(self.delta)
        if self.population is not None:
            self.population = validation.positive_int(self.population, "population")

    def _check_population(self) -> None:
        if self.population is None and self.sample_rate < 1.0:
            raise ConfigurationError(
                f"sample_rate={self.sample_rate} < 1 needs population (N, the number of clients sampled "
                "from): the released mean is divided by the fixed q N"
            )

    def check_cohort(self, cohort: int) -> int:
        """The cohort size of a round; above the population it cannot be a Poisson sample of it."""
        cohort = validation.non_negative_int(cohort, "cohort")
        if self.population is not None and cohort > self.population:
            raise ConfigurationError(f"{cohort} clients in a round of a population of {self.population}")
        return cohort


def _target_or_noise(target_epsilon: float | None, noise_multiplier: float | None) -> None:
    if (target_epsilon is None) == (noise_multiplier is None):
        raise ConfigurationError("give exactly one of target_epsilon and noise_multiplier")
    if target_epsilon is not None:
        validation.positive_float(target_epsilon, "target_epsilon")
    if noise_multiplier is not None:
        check_noise_multiplier(noise_multiplier)


# -- central DP ------------------------------------------------------------------------------


@dataclass(eq=False)
class CentralDP(DifferentialPrivacy):
    """User-level DP-FedAvg with central noise (McMahan et al., ICLR 2018).

    Release per round: (sum_i clip_C(x_i) + N(0, (z C)^2 I)) / (q N); after T
    rounds the released means are (epsilon, delta)-DP with epsilon from T
    Poisson-subsampled Gaussian events (z, q). Give ``noise_multiplier`` z, or
    ``target_epsilon`` and ``rounds`` (:attr:`z` is then the smallest that meets it).
    ``rng`` drives the server's noise (a simulation's seeded generator; the
    OS entropy pool when None).
    """

    accountant: AccountantName = "rdp"
    _noise_rng: np.random.Generator = field(init=False, repr=False)
    _z: float = field(default=0.0, init=False, repr=False)
    _slack: float = field(default=0.0, init=False, repr=False)
    _encoding: Encoding | None = field(default=None, init=False, repr=False)

    kind: ClassVar[str] = "central"

    def __post_init__(self) -> None:
        self._check_common()
        _target_or_noise(self.target_epsilon, self.noise_multiplier)
        if self.accountant not in ("rdp", "pld"):
            raise ConfigurationError(f"accountant must be 'rdp' or 'pld'; found {self.accountant!r}")
        if self.target_epsilon is not None:
            if self.rounds is None:
                raise ConfigurationError("target_epsilon needs rounds (the number of releases it must cover)")
            self._z = float(calibrate_noise_multiplier(
                target_epsilon=self.target_epsilon, delta=self.delta, sample_rate=self.sample_rate,
                steps=check_steps(self.rounds), accountant=self.accountant))
        else:
            self._z = check_noise_multiplier(self.noise_multiplier)
        self._noise_rng = _entropy_rng(self.rng)

    @property
    def z(self) -> float:
        """The noise multiplier in use (the given one, or the one calibrated to the target): noise std over C."""
        return self._z

    def bind(self, protocol: Protocol, *, dimension: int, cohort: int) -> Protocol:
        """Keeps the protocol; fixes the L2 margin sqrt(d) step left for the encoding's rounding."""
        self._check_population()
        dimension = validation.positive_int(dimension, "dimension")
        encoding = protocol.encoding
        slack = math.sqrt(dimension) * encoding.step
        if slack >= self.clip:
            raise ConfigurationError(
                f"clip C={self.clip} is not above the encoding's worst-case rounding error "
                f"sqrt(d) x step = {slack:.4g} for d={dimension}; raise clip or the encoding's value_bits"
            )
        self._slack, self._encoding = slack, encoding
        return protocol

    def begin_round(self, round: int, *, cohort: int, public_seed: bytes | None = None) -> PrivateRound:
        self.check_cohort(cohort)  # central DP has no public randomness: public_seed is not used
        if self._encoding is None:
            raise ConfigurationError("CentralDP is not bound to a protocol yet (bind or the first aggregate)")
        return _CentralRound(self, self._encoding, self._slack)

    def make_accountant(self) -> Accountant:
        return RDPAccountant() if self.accountant == "rdp" else PLDAccountant()

    def summary(self) -> dict[str, Any]:
        return {"dp": self.kind, "noise_multiplier": self.z, "clip": self.clip, "sample_rate": self.sample_rate,
                "delta": self.delta, "target_epsilon": self.target_epsilon, "accountant": self.accountant,
                "population": self.population}


class _CentralRound(PrivateRound):
    def __init__(self, dp: CentralDP, encoding: Encoding, slack: float) -> None:
        self.dp = dp
        self.encoding = encoding
        self.slack = slack
        self.event = PoissonSampledGaussianEvent(noise_multiplier=dp.z, sample_rate=dp.sample_rate)

    def client_stage(self, update: NDArray[np.float64], *, rng: np.random.Generator) -> ClientStage:
        # Stochastic rounding moves each coordinate by less than one step, so an update clipped
        # to C - sqrt(d) step stays within L2 norm C once encoded: the sum has sensitivity C.
        clipped = clip_l2(update, max_norm=self.dp.clip - self.slack)
        cut = self.encoding.count_clipped(clipped.clipped)  # coordinates the encoding's clip still cuts
        vector = self.encoding.encode(clipped.clipped, weight=1, rng=rng)
        return ClientStage(vector, clipped.clip_fraction > 0, cut)

    def server_stage(self, ring_sum: NDArray[Any], *, included: int) -> NDArray[np.float64]:
        total, _ = self.encoding.decode_sum(ring_sum)
        noise = gaussian_noise(shape=total.size, std=self.dp.z * self.dp.clip, rng=self.dp._noise_rng)
        return total + noise


# -- distributed DP --------------------------------------------------------------------------

#: Whom a distributed-DP ``target_epsilon`` is met against (``DistributedDP.against``).
AGAINST = ("release", "server")


@dataclass(eq=False)
class DistributedDP(DifferentialPrivacy):
    """User-level DP with the noise added by the clients, inside the secure sum.

    Each client adds a share of variance V / t, t = ``protocol.minimum_inputs``
    (the fewest inputs a completed round sums), so every completed round
    carries at least V whoever drops. ``bits`` is the ring the protocol sums
    in (the protocol is rebuilt over it), ``mechanism`` "skellam" (Agarwal et
    al. 2021) or "dgauss" (Kairouz et al. 2021). Give ``noise_multiplier`` or
    ``target_epsilon`` with ``rounds``; the pipeline is designed for the
    cohort at the Binomial(N, q) quantile 1 - 1e-9. ``rng`` gives the public
    rotation signs in a simulation (the OS entropy pool when None); the
    clients' noise comes from their own generators.

    ``against`` is whom ``target_epsilon`` is met against: "release" (the
    released model; Poisson sampling at q amplifies) or "server" (the party
    that routes every message knows who took part, so no amplification: z is
    calibrated for ``rounds`` unsampled releases, a client in every round).
    Both epsilons are reported either way (:attr:`epsilon` and
    :meth:`server_epsilon`).

    ``exact_noise`` (default): over SecAgg / SecAgg+ with Skellam noise, each
    client's whole share Sk(V/t) is expanded from one noise seed that its
    stage draws from the client's generator and its engine secret-shares;
    with m survivors unmasking removes the m - t shares of a public hash
    order of the survivor set, so every completed round carries exactly
    Sk(V), for any m in [t, n] (not m V / t). Against the server and c
    colluding survivors at least (t - c) V / t of honest noise stays, as with
    V / t shares. The event charged is Sk(V) either way. Elsewhere (secret
    sharing, the discrete Gaussian, or engines built from :meth:`protocol_for`
    before :meth:`bind`) each client adds V / t itself.
    """

    bits: int = 16
    mechanism: Mechanism = "skellam"
    against: str = "release"
    exact_noise: bool = True
    beta: float = DEFAULT_BETA
    wrap_target: float = DEFAULT_WRAP_TARGET
    _rotation_entropy: int = field(default=0, init=False, repr=False)
    _pipeline: DistributedPipeline | None = field(default=None, init=False, repr=False)
    _protocol: Protocol | None = field(default=None, init=False, repr=False)
    _design_cohort: int = field(default=0, init=False, repr=False)
    _design_shares: int = field(default=0, init=False, repr=False)
    _exact: bool = field(default=False, init=False, repr=False)
    _engines_without_exact_noise: bool = field(default=False, init=False, repr=False)

    kind: ClassVar[str] = "distributed"

    def __post_init__(self) -> None:
        self._check_common()
        _target_or_noise(self.target_epsilon, self.noise_multiplier)
        if self.target_epsilon is not None and self.rounds is None:
            raise ConfigurationError("target_epsilon needs rounds (the number of releases it must cover)")
        if self.rounds is not None:
            check_steps(self.rounds)
        validation.integer(self.bits, "bits", minimum=2, maximum=62)
        if self.against not in AGAINST:
            raise ConfigurationError(f"against must be one of {', '.join(AGAINST)}; found {self.against!r}")
        if self.against == "server" and self.target_epsilon is None:
            raise ConfigurationError("against='server' calibrates target_epsilon; with a noise_multiplier both "
                                     "epsilons are reported anyway")
        if self.mechanism not in MECHANISMS:
            raise ConfigurationError(f"mechanism must be one of {', '.join(MECHANISMS)}; found {self.mechanism!r}")
        self._rotation_entropy = int(_entropy_rng(self.rng).integers(0, 2**63))

    @property
    def pipeline(self) -> DistributedPipeline:
        """The designed pipeline (after :meth:`bind`)."""
        if self._pipeline is None:
            raise ConfigurationError("DistributedDP is not bound to a protocol yet (bind or the first aggregate)")
        return self._pipeline

    def design_cohort(self, cohort: int) -> int:
        """The cohort the scale is designed for: N at q = 1, else the Binomial(N, q) quantile at 1 - 1e-9."""
        if self.population is None:
            return cohort
        if self.sample_rate >= 1.0:
            return self.population
        from scipy import stats

        quantile = stats.binom.ppf(1.0 - _COHORT_TAIL, self.population, self.sample_rate)
        return int(min(self.population, max(1, quantile)))

    def ring_encoding(self, clip: float) -> Encoding:
        """The encoding that only names the ring Z_2^bits (the pipeline encodes values itself)."""
        return Encoding(clip=clip, value_bits=2, ring_bits=self.bits, max_clients=(1 << (self.bits - 1)) - 1,
                        max_weight=1)

    def ring_protocol(self, protocol: Protocol) -> Protocol:
        """``protocol`` over Z_2^bits (its modular sum carries the noise shares); Paillier is refused."""
        if not protocol.modular_sum:
            raise ConfigurationError(
                f"distributed DP needs a protocol that sums modulo 2^bits (secagg, secagg+, secret-sharing); "
                f"{protocol.name} does not (Protocol.modular_sum is False)"
            )
        encoding = protocol.encoding
        if encoding.ring_bits != self.bits or encoding.value_bits != 2:
            protocol = protocol.with_encoding(self.ring_encoding(encoding.clip))
        return protocol

    def protocol_for(self, protocol: Protocol) -> Protocol:
        """The protocol the engines of a round must run: after :meth:`bind` the bound one (with exact noise);
        before, :meth:`ring_protocol`, and this plugin then keeps every client's share at V / t (engines built
        now add no noise of their own, so the clients' stages must)."""
        if self._protocol is not None:
            return self._protocol
        self._engines_without_exact_noise = True
        return self.ring_protocol(protocol)

    def exact_for(self, protocol: Protocol) -> bool:
        """Whether rounds over ``protocol`` carry exactly Sk(V): SecAgg / SecAgg+, Skellam and ``exact_noise``."""
        from securefl.protocols.secagg import SecAgg

        return (bool(self.exact_noise) and self.mechanism == "skellam" and isinstance(protocol, SecAgg)
                and not self._engines_without_exact_noise)

    def bind(self, protocol: Protocol, *, dimension: int, cohort: int) -> Protocol:
        """The protocol over Z_2^bits, and the pipeline designed for ``dimension`` and the design cohort."""
        self._check_population()
        validation.boolean(self.exact_noise, "exact_noise")
        protocol = self.ring_protocol(protocol)
        design = self.design_cohort(validation.positive_int(cohort, "cohort"))
        shares = protocol.minimum_inputs(design)
        exact = self.exact_for(protocol)
        # Exact noise: the released sum carries V whatever m, which is what the wrap-around design sees.
        pipeline = DistributedPipeline.design(
            dimension=validation.positive_int(dimension, "dimension"), ring_bits=self.bits, clients=design,
            shares=design if exact else shares, clip=self.clip, mechanism=self.mechanism,
            noise_multiplier=self.noise_multiplier,
            target_epsilon=self.target_epsilon, delta=self.delta,
            sample_rate=self.sample_rate if self.against == "release" else 1.0,
            steps=self.rounds if self.rounds is not None else 1, beta=self.beta, wrap_target=self.wrap_target)
        if exact:
            protocol = dataclasses.replace(protocol, noise_variance=pipeline.central_variance)  # type: ignore[type-var]
        self._pipeline, self._protocol, self._exact = pipeline, protocol, exact
        self._design_cohort, self._design_shares = design, shares
        return protocol

    def begin_round(self, round: int, *, cohort: int, public_seed: bytes | None = None) -> PrivateRound:
        cohort = self.check_cohort(cohort)
        pipeline = self.pipeline
        protocol = self._protocol
        if protocol is None:  # pragma: no cover - set together with the pipeline
            raise ConfigurationError("DistributedDP is not bound to a protocol yet")
        minimum = protocol.minimum_inputs(cohort) if cohort else self._design_shares
        entropy = self._rotation_entropy if public_seed is None else int.from_bytes(
            hashlib.sha256(b"securefl rotation signs" + bytes(public_seed)).digest(), "big")
        signs = rotation_signs(dimension=pipeline.dimension,
                               seed=np.random.SeedSequence(entropy, spawn_key=(round,)))
        return _DistributedRound(pipeline, signs=signs, shares=minimum, exact=self._exact,
                                 sample_rate=self.sample_rate, round=round)

    def make_accountant(self) -> Accountant:
        return RDPAccountant()

    def server_epsilon(self, participations: int) -> float | None:
        """Epsilon against the server, which knows the cohort: no sampling amplification.

        The unsampled event composed ``participations`` times (the most
        completed rounds any one client took part in).
        """
        participations = validation.non_negative_int(participations, "participations")
        if participations == 0:
            return 0.0
        accountant = RDPAccountant()
        accountant.compose(self.pipeline.event(sample_rate=1.0, shares=self._design_shares),
                           count=participations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            return float(accountant.get_epsilon(self.delta))

    def summary(self) -> dict[str, Any]:
        pipeline = self.pipeline
        return {
            "dp": self.kind, "mechanism": pipeline.mechanism, "bits": pipeline.ring_bits, "scale": pipeline.scale,
            "padded_dimension": pipeline.padded_dimension, "l2_sensitivity": pipeline.l2_sensitivity,
            "l1_sensitivity": pipeline.l1_sensitivity, "noise_multiplier": pipeline.noise_multiplier,
            "target_epsilon": self.target_epsilon, "dp_against": self.against, "clip": self.clip,
            "sample_rate": self.sample_rate, "delta": self.delta, "design_cohort": self._design_cohort,
            "design_threshold": self._design_shares, "exact_noise": self._exact,
            "wrap_probability_design": pipeline.wrap_probability(
                clients=self._design_cohort, shares=self._design_cohort if self._exact else self._design_shares),
        }


_NOISE_SEED_INFO = context("securefl/dp/exact-noise-seed/v1")


def noise_seed_from(rng: np.random.Generator) -> bytes:
    """A client's 32-byte exact-noise seed: HKDF of 32 bytes of its generator.

    The generator is the client's own (a simulation's seeded one, else the
    OS entropy pool), so a seeded simulation is reproducible; the HKDF keeps
    its state hidden from the server, which learns the seeds of the shares
    it removes.
    """
    return derive32(rng.bytes(32), _NOISE_SEED_INFO)


class _DistributedRound(PrivateRound):
    def __init__(self, pipeline: DistributedPipeline, *, signs: NDArray[Any], shares: int, exact: bool,
                 sample_rate: float, round: int) -> None:
        self.pipeline = pipeline
        self.signs = signs
        self.shares = shares  # t: V / t per client, added by the stage or (exact noise) by the SecAgg engine
        self.exact = exact
        self.round = round
        # Sk(V) exactly (exact noise), or at least V (V / t from each of m >= t clients): the same event.
        self.event = pipeline.event(sample_rate=sample_rate, shares=shares)
        self.wrap_probability = 0.0

    def client_stage(self, update: NDArray[np.float64], *, rng: np.random.Generator) -> ClientStage:
        norm = float(np.linalg.norm(update))
        if not self.exact:
            vector = self.pipeline.encode(update, signs=self.signs, shares=self.shares, rng=rng)
            return ClientStage(vector, norm > self.pipeline.clip)
        from securefl.protocols.secagg.noise import InputWithNoiseSeed

        # Exact noise: no noise here; the engine adds the whole share its seed expands.
        integers = self.pipeline.quantise(update, signs=self.signs, rng=rng)
        vector = ring.from_signed(integers, self.pipeline.ring_bits)
        return ClientStage(InputWithNoiseSeed.of(vector, noise_seed_from(rng)), norm > self.pipeline.clip)

    def server_stage(self, ring_sum: NDArray[Any], *, included: int) -> NDArray[np.float64]:
        if included < self.shares:
            raise ProtocolAbort(
                f"round {self.round}: {included} inputs summed, fewer than the {self.shares} the noise needs"
            )
        # Exact noise leaves V on the sum (V / m from each of the m included), else V m / t.
        self.wrap_probability = self.pipeline.wrap_probability(
            clients=included, shares=included if self.exact else self.shares)
        if self.wrap_probability > WRAP_WARNING_THRESHOLD:
            warnings.warn(f"round {self.round}: wrap-around probability {self.wrap_probability:.3g} exceeds "
                          f"{WRAP_WARNING_THRESHOLD:g}", WrapAroundWarning, stacklevel=3)
        return self.pipeline.decode(ring_sum, signs=self.signs)

