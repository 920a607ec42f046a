"""Accountant speed: compose 10,000 DP-FedAvg steps and answer epsilon, ours vs dp-accounting.

Prints one JSON object. For each setting and accountant kind it times, on a
fresh accountant each repetition, ``step(..., steps=T)`` followed by
``get_epsilon(delta)``; and the same through dp-accounting 0.6.0
(``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T)``),
PLD at the same value discretisation interval. Median and min of
``--repeats`` runs after one warm-up each, plus both epsilons.

    .venv/bin/python benchmarks/accountant.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant as dp_pld
from dp_accounting.rdp import rdp_privacy_accountant as dp_rdp

from securefl.privacy.accountant import PLDAccountant, PrivacyAccountingWarning, RDPAccountant

SETTINGS = (
    {"sample_rate": 0.01, "noise_multiplier": 1.0, "steps": 10_000, "delta": 1e-5},
    {"sample_rate": 0.001, "noise_multiplier": 0.8, "steps": 10_000, "delta": 1e-7},
)
PLD_INTERVALS = (1e-4, 1e-3)


def _timed(run: Callable[[], float], repeats: int) -> dict[str, float]:
    run()  # warm-up (imports, caches)
    seconds, epsilon = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        epsilon = run()
        seconds.append(time.perf_counter() - start)
    return {"epsilon": epsilon, "median_s": statistics.median(seconds), "min_s": min(seconds)}


def _ours_rdp(q: float, z: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=steps)
    return accountant.get_epsilon(delta)


def _theirs_rdp(q: float, z: float, steps: int, delta: float) -> float:
    accountant = dp_rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(delta)


def _ours_pld(q: float, z: float, steps: int, delta: float, interval: float) -> float:
    accountant = PLDAccountant(value_discretization_interval=interval)
    accountant.step(noise_multiplier=z, sample_rate=q, steps=steps)
    return accountant.get_epsilon(delta)


def _theirs_pld(q: float, z: float, steps: int, delta: float, interval: float) -> float:
    accountant = dp_pld.PLDAccountant(value_discretization_interval=interval)
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(delta)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", PrivacyAccountingWarning)
    results = []
    for setting in SETTINGS:
        q, z, steps, delta = (setting[k] for k in ("sample_rate", "noise_multiplier", "steps", "delta"))
        row: dict[str, object] = dict(setting)
        ours = _timed(functools.partial(_ours_rdp, q, z, steps, delta), args.repeats)
        theirs = _timed(functools.partial(_theirs_rdp, q, z, steps, delta), args.repeats)
        row["rdp"] = {"securefl": ours, "dp_accounting": theirs, "speedup": theirs["median_s"] / ours["median_s"]}
        for interval in PLD_INTERVALS:
            ours = _timed(functools.partial(_ours_pld, q, z, steps, delta, interval), args.repeats)
            theirs = _timed(functools.partial(_theirs_pld, q, z, steps, delta, interval), args.repeats)
            row[f"pld@{interval:g}"] = {
                "securefl": ours,
                "dp_accounting": theirs,
                "speedup": theirs["median_s"] / ours["median_s"],
            }
        results.append(row)
    report = {
        "benchmark": "compose T steps of the Poisson-subsampled Gaussian, then get_epsilon(delta)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "dp_accounting": "0.6.0",
        "repeats": args.repeats,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
