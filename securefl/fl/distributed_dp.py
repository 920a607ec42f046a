"""DP-FedAvg with distributed noise: clients noise their own updates inside the secure sum.

Each round every client joins independently with probability q (Poisson
sampling, as in :class:`~securefl.fl.dp.DPFedAvg`). A participating client
runs the pipeline of :mod:`securefl.privacy.distributed` -- L2 clip to C,
randomised Hadamard rotation (public per-round signs), scaling, conditional
randomised rounding, a Skellam (default) or discrete Gaussian noise share,
modular clipping into Z_2^b -- and hands the ring vector to the protocol
(``run_protocol``; the engines are unchanged). The server unmasks the ring
sum, which already carries the noise, decodes it (signed, unscale, inverse
rotation) and divides by the fixed denominator q N.

**Noise under dropouts.** With n clients in the round, each adds the share
``V / t`` where t = :func:`minimum_survivors` is the fewest inputs the
protocol sums before it completes (SecAgg's threshold; ``min_clients`` for
secret sharing; 1 for plaintext). Every round that completes
therefore carries at least the calibrated variance V, however many clients
dropped; when fewer drop the release simply carries more noise (up to
``n / t`` times V).

**Accounting.** One event per round (:meth:`DistributedPipeline.event`),
charged whether or not the round completes; ``epsilon`` is the RDP
accountant's answer at ``delta`` for observers of the released model
(Poisson amplification; the extra shares of survivors beyond t are treated
as post-processing, as in Kairouz et al. 2021 and Agarwal et al. 2021).
Against the server, which sees who took part, the amplification does not
apply: ``server_epsilon`` composes the unsampled event (zero-out adjacency:
a client's update replaced by zero) over the largest number of completed
rounds any one client took part in.

Threat model: the server only ever sees masked vectors and a sum that is
already differentially private; the guarantee holds against the server as
long as the protocol's own assumptions hold (e.g. fewer than t colluding
clients under SecAgg) and the clients' noise generators are secret.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, ProtocolAbort
from securefl.fl.dp import DPFedAvg, _positive
from securefl.fl.fedavg import FedAvg, FedAvgConfig
from securefl.privacy.accountant import PrivacyAccountingWarning, RDPAccountant
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
from securefl.protocols.base import Protocol
from securefl.simulation import AggregationResult, run_protocol, summarize_metrics

__all__ = ["DistributedDP", "DistributedDPFedAvg", "minimum_survivors", "with_ring_bits"]

# Random streams of the trainer, beside FedAvg's 0..4 and DPFedAvg's 7.
_STREAM_ROTATION, _STREAM_CLIENT_NOISE = 11, 12

#: Cohort sizes above the Binomial(N, q) quantile at 1 - this are ignored when choosing the scale.
_COHORT_TAIL = 1e-9


def minimum_survivors(protocol: Protocol, clients: int) -> int:
    """The fewest client inputs ``protocol`` sums when it completes a round of ``clients``.

    Every protocol refuses sums of fewer than its ``min_clients``; SecAgg and
    SecAgg+ also need the Shamir threshold t (every survivor's self-mask needs
    t shares, so at least t inputs are summed).
    """
    if clients < 1:
        raise ConfigurationError(f"clients must be >= 1; found {clients}")
    minimum = protocol.min_clients
    threshold_for = getattr(protocol, "threshold_for", None)
    if callable(threshold_for):
        minimum = max(minimum, int(threshold_for(clients)))
    return int(min(clients, minimum))


def with_ring_bits(protocol: Protocol, bits: int) -> Protocol:
    """``protocol`` over the ring Z_2^bits, for ring vectors built by the distributed-DP pipeline.

    The pipeline encodes values itself and handles wrap-around by modular
    clipping (its wrap probability is reported), so the protocol's
    ``Encoding`` only names the ring: ``value_bits=2, max_weight=1`` and
    ``max_clients = 2^(bits-1) - 1`` pass the encoding's headroom check
    trivially. ``clip`` is kept (FedAvg clips update coordinates to it).
    """
    if getattr(protocol, "name", "") == "paillier":
        raise ConfigurationError(
            "distributed DP needs a protocol that sums modulo 2^bits (secagg, secagg+, secret-sharing); "
            "Paillier's slots hold bounded integers, not ring elements"
        )
    if protocol.encoding.ring_bits == bits and protocol.encoding.value_bits == 2:
        return protocol
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 62:
        raise ConfigurationError(f"bits must be an integer in [2, 62]; found {bits!r}")
    encoding = Encoding(clip=protocol.encoding.clip, value_bits=2, ring_bits=bits,
                        max_clients=(1 << (bits - 1)) - 1, max_weight=1)
    if not dataclasses.is_dataclass(protocol) or "encoding" not in {f.name for f in dataclasses.fields(protocol)}:
        raise ConfigurationError(f"cannot change the ring of {type(protocol).__name__}")
    changes: dict[str, Any] = {"encoding": encoding}
    # Shortcut fields that would otherwise be copied back over the new encoding.
    for shortcut in ("ring_bits", "value_bits", "max_clients", "max_weight"):
        if shortcut in {f.name for f in dataclasses.fields(protocol)}:
            changes[shortcut] = None
    return dataclasses.replace(protocol, **changes)


@dataclass(frozen=True)
class DistributedDP:
    """Distributed-DP parameters: ring bits, mechanism, clip C, sampling rate q, target (epsilon, delta).

    Give ``target_epsilon`` (z is calibrated when the trainer is built, for
    the run's rounds) or ``noise_multiplier`` z (released noise standard
    deviation over the rounded L2 sensitivity). ``beta`` is the conditional
    rounding parameter, ``wrap_target`` the design bound on the per-round
    probability of a wrap-around.
    """

    bits: int = 16
    mechanism: Mechanism = "skellam"
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    clip: float = 1.0
    sample_rate: float = 1.0
    delta: float = 1e-5
    beta: float = DEFAULT_BETA
    wrap_target: float = DEFAULT_WRAP_TARGET
    noise_seed: int | None = None
    accountant: str = "rdp"

    kind = "distributed"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 62:
            raise ConfigurationError(f"bits must be an integer in [2, 62]; found {self.bits!r}")
        if self.mechanism not in MECHANISMS:
            raise ConfigurationError(f"mechanism must be one of {', '.join(MECHANISMS)}; found {self.mechanism!r}")
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ConfigurationError("give exactly one of target_epsilon and noise_multiplier")
        if self.target_epsilon is not None:
            _positive("target_epsilon", self.target_epsilon)
        _positive("clip", self.clip)
        _positive("sample_rate", self.sample_rate, upper=1.0)
        _positive("delta", self.delta, upper=1.0, inclusive_upper=False)
        z = self.noise_multiplier
        if z is not None and (isinstance(z, bool) or not isinstance(z, (int, float)) or not 0 <= z < math.inf):
            raise ConfigurationError(f"noise_multiplier must be finite and >= 0; found {z!r}")
        if self.accountant != "rdp":
            raise ConfigurationError(
                f"distributed DP is accounted with the RDP accountant only; found accountant={self.accountant!r}")

    def make_accountant(self) -> RDPAccountant:
        return RDPAccountant()


class DistributedDPFedAvg(DPFedAvg):
    """FedAvg with user-level distributed DP: the noise is added by the clients, inside the secure sum."""

    # The distributed parameters take the place of DPFedAvg's CentralDP.
    dp: DistributedDP  # type: ignore[assignment]

    def __init__(
        self, protocol: Protocol, config: FedAvgConfig | None = None, *, dp: DistributedDP, dataset: Any = None
    ) -> None:
        if not isinstance(dp, DistributedDP):
            raise ConfigurationError(f"dp must be a DistributedDP; found {type(dp).__name__}")
        protocol = with_ring_bits(protocol, dp.bits)
        self.dp = dp
        FedAvg.__init__(self, protocol, config, dataset=dataset)
        self._check_sampling()
        clients = self.config.clients
        design_cohort = self._design_cohort(clients, dp.sample_rate)
        self._design_shares = minimum_survivors(self.protocol, design_cohort)
        self.pipeline = DistributedPipeline.design(
            dimension=self._parameter_count(), ring_bits=dp.bits, clients=design_cohort,
            shares=self._design_shares, clip=dp.clip, mechanism=dp.mechanism,
            noise_multiplier=dp.noise_multiplier, target_epsilon=dp.target_epsilon, delta=dp.delta,
            sample_rate=dp.sample_rate, steps=self.config.rounds, beta=dp.beta, wrap_target=dp.wrap_target)
        self.dp = dataclasses.replace(dp, noise_multiplier=self.pipeline.noise_multiplier, target_epsilon=None)
        self._target_epsilon = dp.target_epsilon

    @staticmethod
    def _design_cohort(clients: int, sample_rate: float) -> int:
        """The cohort size the scale is designed for: the Binomial(N, q) quantile at 1 - 1e-9."""
        if sample_rate >= 1.0:
            return clients
        from scipy import stats

        return int(min(clients, max(1, stats.binom.ppf(1.0 - _COHORT_TAIL, clients, sample_rate))))

    def _restart(self) -> None:
        super()._restart()  # the accountant: DistributedDP.make_accountant()
        self._participation = np.zeros(self.config.clients, dtype=np.int64)
        seed = self.dp.noise_seed
        self._noise_entropy = int.from_bytes(os.urandom(16), "little") if seed is None else int(seed)
        self.wrap_probabilities: list[float] = []

    def _client_rng(self, round: int, client: int) -> np.random.Generator:
        """The client's own (secret) generator for rounding and noise in ``round``."""
        seed = np.random.SeedSequence(self._noise_entropy, spawn_key=(_STREAM_CLIENT_NOISE, round, client))
        return np.random.default_rng(seed)

    def _rotation(self, round: int) -> np.ndarray:
        """The public random signs of ``round`` (derived from the run's seed)."""
        return rotation_signs(dimension=self.pipeline.dimension,
                              seed=np.random.SeedSequence(self.config.seed, spawn_key=(_STREAM_ROTATION, round)))

    def _aggregate(
        self,
        updates: Sequence[np.ndarray],
        weights: Sequence[int],
        round: int,
        *,
        dropouts: Mapping[int, str] | None = None,
    ) -> tuple[np.ndarray, AggregationResult | None]:
        """(decoded noisy sum) / (q N); one accountant event per round."""
        sampled = self._round_clients
        shares = minimum_survivors(self.protocol, len(updates)) if updates else self._design_shares
        self.accountant.compose(self.pipeline.event(sample_rate=self.dp.sample_rate, shares=shares))
        if not updates:  # nobody sampled: nothing is released, the model stays
            self.wrap_probabilities.append(0.0)
            return np.zeros(self.pipeline.dimension), None
        signs = self._rotation(round)
        inputs, encode_seconds = [], []
        for update, client in zip(updates, sampled):
            started = time.perf_counter()
            inputs.append(self.pipeline.encode(update, signs=signs, shares=shares, rng=self._client_rng(round, client)))
            encode_seconds.append(time.perf_counter() - started)
        aggregate, transcript, ledger = run_protocol(self.protocol, inputs, dropouts=dropouts or {}, round=round)
        included = tuple(aggregate.included)
        if len(included) < shares:
            raise ProtocolAbort(
                f"round {round}: {len(included)} inputs summed, fewer than the {shares} the noise needs"
            )
        for position in included:
            self._participation[sampled[position]] += 1
        probability = self.pipeline.wrap_probability(clients=len(included), shares=shares)
        self.wrap_probabilities.append(probability)
        if probability > WRAP_WARNING_THRESHOLD:
            warnings.warn(f"round {round}: wrap-around probability {probability:.3g} exceeds "
                          f"{WRAP_WARNING_THRESHOLD:g}", WrapAroundWarning, stacklevel=2)
        total = self.pipeline.decode(aggregate.total, signs=signs)
        result = AggregationResult(
            total=total, weight_total=len(included), included=included, ring_sum=aggregate.total,
            ring_bits=self.protocol.encoding.ring_bits, transcript=transcript,
            metrics=summarize_metrics(ledger, len(inputs), included, encode_seconds), protocol=self.protocol.name,
            secure=self.protocol.secure)
        return total / (self.dp.sample_rate * self.config.clients), result

    def _sample_clients(self, round: int) -> list[int]:
        self._round_clients = super()._sample_clients(round)
        return self._round_clients

    def epsilon(self) -> float:
        """Privacy spent so far at ``dp.delta`` against observers of the model (an upper bound)."""
        if len(self.accountant) == 0:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            return float(self.accountant.get_epsilon(self.dp.delta))

    def server_epsilon(self) -> float:
        """Epsilon against the server, which knows the cohort: no sampling amplification.

        The unsampled event composed over the largest number of completed
        rounds any one client took part in (participation is independent of
        the data, so this count may be published).
        """
        most = int(self._participation.max()) if self._participation.size else 0
        if most == 0:
            return 0.0
        accountant = RDPAccountant()
        accountant.compose(self.pipeline.event(sample_rate=1.0, shares=self._design_shares), count=most)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            return float(accountant.get_epsilon(self.dp.delta))

    def summary(self) -> dict[str, Any]:
        """The distributed-DP figures of a run, for ``securefl run --json``."""
        pipeline = self.pipeline
        return {
            "dp": "distributed",
            "mechanism": pipeline.mechanism,
            "bits": pipeline.ring_bits,
            "scale": pipeline.scale,
            "padded_dimension": pipeline.padded_dimension,
            "l2_sensitivity": pipeline.l2_sensitivity,
            "l1_sensitivity": pipeline.l1_sensitivity,
            "noise_multiplier": pipeline.noise_multiplier,
            "target_epsilon": self._target_epsilon,
            "design_cohort": self._design_cohort(self.config.clients, self.dp.sample_rate),
            "design_threshold": self._design_shares,
            "wrap_probability_design": pipeline.wrap_probability(
                clients=self._design_cohort(self.config.clients, self.dp.sample_rate), shares=self._design_shares),
            "wrap_probability_max": max(self.wrap_probabilities, default=0.0),
            "server_epsilon": self.server_epsilon(),
        }
