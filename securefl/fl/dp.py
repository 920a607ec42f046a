"""User-level DP-FedAvg with central noise (McMahan et al., ICLR 2018).

Each round every client joins independently with probability q (Poisson
sampling); a participating client clips its update to L2 norm C (less the
worst-case rounding error of the encoding, so the quantised update is still
within C); the sum
goes through any secure protocol; the server adds N(0, (z C)^2) to every
coordinate of the sum and divides by the *expected* number of clients q N
(a fixed denominator, so one client changes the released mean by at most
C / (q N)). Each round is one Poisson-subsampled Gaussian event for the
accountant, charged whether or not the round completes.

Threat model: central DP protects the released model against anyone who
sees it (other clients, the public); the server still sees the exact sum
before adding noise, so against the server the guarantee is only that of
the secure protocol. The noise is drawn from a seeded generator when a seed
is given (reproducible simulation); in deployment leave ``noise_seed`` unset
so it is seeded from the OS entropy pool.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from securefl.errors import ConfigurationError
from securefl.fl.fedavg import FedAvg, FedAvgConfig, State
from securefl.privacy.accountant import PLDAccountant, PrivacyAccountingWarning, RDPAccountant
from securefl.privacy.calibration import AccountantName, calibrate_noise_multiplier
from securefl.privacy.mechanisms import clip_l2, gaussian_noise
from securefl.protocols.base import Protocol
from securefl.simulation import AggregationResult

__all__ = ["CentralDP", "DPFedAvg"]


def _positive(name: str, value: Any, *, upper: float | None = None, inclusive_upper: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not np.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number; found {value!r}")
    value = float(value)
    if value <= 0 or (upper is not None and (value > upper if inclusive_upper else value >= upper)):
        bound = f"(0, {upper}{']' if inclusive_upper else ')'}" if upper is not None else "> 0"
        raise ConfigurationError(f"{name} must be in {bound}; found {value}")
    return value


@dataclass(frozen=True)
class CentralDP:
    """DP-FedAvg parameters: noise multiplier z, clip C, sampling rate q, target delta.

    The released mean after T rounds is (epsilon, delta)-DP at the user
    level with epsilon from T Poisson-subsampled Gaussian events (z, q).
    """

    noise_multiplier: float
    clip: float = 1.0
    sample_rate: float = 1.0
    delta: float = 1e-5
    accountant: str = "rdp"
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.noise_multiplier, bool) or not isinstance(self.noise_multiplier, (int, float)) or not (
            0 <= self.noise_multiplier < float("inf")
        ):
            raise ConfigurationError(f"noise_multiplier must be finite and >= 0; found {self.noise_multiplier!r}")
        _positive("clip", self.clip)
        _positive("sample_rate", self.sample_rate, upper=1.0)
        _positive("delta", self.delta, upper=1.0, inclusive_upper=False)
        if self.accountant not in ("rdp", "pld"):
            raise ConfigurationError(f"accountant must be 'rdp' or 'pld'; found {self.accountant!r}")

    @classmethod
    def for_target(
        cls,
        *,
        epsilon: float,
        delta: float,
        rounds: int,
        sample_rate: float = 1.0,
        clip: float = 1.0,
        accountant: AccountantName = "rdp",
        noise_seed: int | None = None,
    ) -> CentralDP:
        """The smallest z (by bisection) whose epsilon after ``rounds`` rounds is <= ``epsilon``."""
        z = calibrate_noise_multiplier(
            target_epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=rounds, accountant=accountant
        )
        return cls(noise_multiplier=z, clip=clip, sample_rate=sample_rate, delta=delta,
                   accountant=accountant, noise_seed=noise_seed)

    def make_accountant(self) -> RDPAccountant | PLDAccountant:
        return RDPAccountant() if self.accountant == "rdp" else PLDAccountant()


class DPFedAvg(FedAvg):
    """FedAvg with user-level central DP: Poisson sampling, L2 clipping, Gaussian noise on the sum."""

    # L2 margin left for the encoding's rounding error (set per instance; a variant
    # whose own pipeline bounds the norm after rounding keeps 0).
    _quantisation_slack = 0.0

    def __init__(
        self, protocol: Protocol, config: FedAvgConfig | None = None, *, dp: CentralDP, dataset: Any = None
    ) -> None:
        if not isinstance(dp, CentralDP):
            raise ConfigurationError(f"dp must be a CentralDP; found {type(dp).__name__}")
        self.dp = dp
        super().__init__(protocol, config, dataset=dataset)
        self._check_sampling()
        # Stochastic rounding moves each coordinate by less than one step, so an
        # update clipped to C - sqrt(d) step stays within L2 norm C once encoded:
        # the sum the noise protects has sensitivity C, as accounted.
        self._quantisation_slack = math.sqrt(self._parameter_count()) * protocol.encoding.step
        if self._quantisation_slack >= dp.clip:
            raise ConfigurationError(
                f"clip C={dp.clip} is not above the encoding's worst-case rounding error "
                f"sqrt(d) x step = {self._quantisation_slack:.4g}; raise clip or the encoding's value_bits"
            )

    def _check_sampling(self) -> None:
        if self.config.client_fraction != 1.0:
            raise ConfigurationError(
                "DP-FedAvg samples clients by Poisson sampling at dp.sample_rate; "
                f"leave client_fraction at 1.0 (found {self.config.client_fraction})"
            )

    def _restart(self) -> None:
        super()._restart()
        self.accountant = self.dp.make_accountant()
        seed = self.dp.noise_seed
        self._noise_rng = np.random.default_rng(
            int.from_bytes(os.urandom(16), "little") if seed is None else np.random.SeedSequence(seed, spawn_key=(7,))
        )
        self._l2_clipped: list[float] = []

    def _sample_clients(self, round: int) -> list[int]:
        """Poisson sampling: each client joins independently with probability q."""
        joins = self._sampling_rng.random(self.config.clients) < self.dp.sample_rate
        return [int(c) for c in np.flatnonzero(joins)]

    def _local_update(self, client: int, global_state: State, *, round: int) -> tuple[np.ndarray, int]:
        """The update clipped to L2 norm C - sqrt(d) step, so that it is <= C once quantised."""
        update, count = super()._local_update(client, global_state, round=round)
        clipped = clip_l2(update, max_norm=self.dp.clip - self._quantisation_slack)
        self._l2_clipped.append(clipped.clip_fraction)
        return clipped.clipped, count

    def _weights(self, counts: Sequence[int]) -> list[int]:
        """Every client weighs 1: the sensitivity of the sum is C."""
        return [1] * len(counts)

    def _aggregate(
        self,
        updates: Sequence[np.ndarray],
        weights: Sequence[int],
        round: int,
        *,
        dropouts: Mapping[int, str] | None = None,
    ) -> tuple[np.ndarray, AggregationResult | None]:
        """(sum + N(0, (zC)^2 I)) / (q N); one accountant event per round."""
        self.accountant.step(noise_multiplier=self.dp.noise_multiplier, sample_rate=self.dp.sample_rate)
        length = self._parameter_count()
        if updates:
            result = self._secure_sum(updates, weights, round, dropouts=dropouts or {})
            total = result.total
        else:  # nobody sampled: the server still releases noise
            result, total = None, np.zeros(length)
        noise = gaussian_noise(shape=length, std=self.dp.noise_multiplier * self.dp.clip, rng=self._noise_rng)
        return (total + noise) / (self.dp.sample_rate * self.config.clients), result

    def _parameter_count(self) -> int:
        return sum(int(v.numel()) for v in self.initial_state.values())

    def epsilon(self) -> float:
        """Privacy spent so far at ``dp.delta`` (an upper bound)."""
        if len(self.accountant) == 0:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyAccountingWarning)
            return float(self.accountant.get_epsilon(self.dp.delta))

    def _round_extras(self) -> dict[str, Any]:
        fraction = float(np.mean(self._l2_clipped)) if self._l2_clipped else 0.0
        self._l2_clipped = []
        return {"epsilon": self.epsilon(), "l2_clip_fraction": fraction}
