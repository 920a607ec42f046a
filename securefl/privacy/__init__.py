"""Differential privacy for FedAvg: mechanisms, calibration, accounting; central and distributed.

* :mod:`securefl.privacy.mechanisms` -- L2 clipping, Gaussian noise, exact
  discrete Gaussian (Canonne, Kamath & Steinke 2020), Skellam.
* :mod:`securefl.privacy.calibration` -- noise for a target (epsilon, delta).
* :mod:`securefl.privacy.accountant` -- RDP and PLD accountants.
* :mod:`securefl.privacy.distributed_accounting` -- RDP events of distributed
  Skellam (Agarwal, Kairouz & Liu 2021) and the distributed discrete Gaussian
  (Kairouz, Liu & Steinke 2021) under Poisson sampling.
* :mod:`securefl.privacy.distributed` -- the distributed-DP client pipeline
  (rotation, conditional rounding, noise share, modular clipping), its
  decoding and its wrap-around probability.

What central and distributed DP protect, and what they do not, when combined with secure
aggregation: see ``docs/privacy.md``; the accountant math: ``protocols/dp.md``.
"""

from __future__ import annotations

from securefl.privacy.accountant import (
    DEFAULT_RDP_ORDERS,
    GaussianEvent,
    PLDAccountant,
    PoissonSampledGaussianEvent,
    PrivacyAccountingWarning,
    PrivacyEvent,
    RDPAccountant,
    compute_rdp,
    gaussian_delta,
    gaussian_epsilon,
)
from securefl.privacy.calibration import (
    analytic_gaussian_sigma,
    calibrate_noise_multiplier,
    classical_gaussian_sigma,
)
from securefl.privacy.distributed import DistributedPipeline, WrapAroundWarning
from securefl.privacy.distributed_accounting import DistributedDiscreteGaussianEvent, SkellamEvent
from securefl.privacy.mechanisms import (
    ClipResult,
    clip_l2,
    discrete_gaussian_noise,
    gaussian_noise,
    skellam_noise,
)

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "ClipResult",
    "DistributedDiscreteGaussianEvent",
    "DistributedPipeline",
    "GaussianEvent",
    "PLDAccountant",
    "PoissonSampledGaussianEvent",
    "PrivacyAccountingWarning",
    "PrivacyEvent",
    "RDPAccountant",
    "SkellamEvent",
    "WrapAroundWarning",
    "analytic_gaussian_sigma",
    "calibrate_noise_multiplier",
    "classical_gaussian_sigma",
    "clip_l2",
    "compute_rdp",
    "discrete_gaussian_noise",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_noise",
    "skellam_noise",
]
