"""Accountant speed and tightness: compose T DP-FedAvg steps and answer epsilon, ours vs dp-accounting.

Prints one JSON object. For each setting and accountant kind it times, on a
fresh accountant each repetition, ``step(..., steps=T)`` followed by
``get_epsilon(delta)``; and the same through dp-accounting 0.6.0
(``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T)``),
PLD at the same value discretisation interval. Median and min of
``--repeats`` runs after one warm-up each, plus both epsilons. ``pld@default``
is our adaptive grid (its interval reported), with prv-accountant's estimate
from ``tests/privacy/prv_accountant_reference.json`` where the setting is there.

``--distributed`` adds RDP vs PLD for the Skellam and distributed discrete
Gaussian events of the digits run (d = 1,210, scale 2,306): the RDP
accountant's epsilon, and the PLD of the adjacent pair that puts the whole L2
sensitivity (rounded down to an integer) on one coordinate, Poisson-sampled,
from the exact noise PMF (by FFT) on a 1e-4 grid. That pair is one the
release admits, so its epsilon is a *lower* bound on the event's true epsilon:
RDP over it bounds what any PLD of these events could save.

    .venv/bin/python benchmarks/accountant.py [--repeats 5] [--distributed]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting.pld import pld_privacy_accountant as dp_pld
from dp_accounting.rdp import rdp_privacy_accountant as dp_rdp

from securefl.privacy.accountant import (
    DiscretePLD,
    PLDAccountant,
    PrivacyAccountingWarning,
    RDPAccountant,
    _connect_the_dots,
)

SETTINGS = (
    {"sample_rate": 0.01, "noise_multiplier": 1.0, "steps": 10_000, "delta": 1e-5},
    {"sample_rate": 0.001, "noise_multiplier": 0.8, "steps": 10_000, "delta": 1e-7},
    {"sample_rate": 0.0003, "noise_multiplier": 3.0, "steps": 3000, "delta": 1e-6},
    {"sample_rate": 0.0003, "noise_multiplier": 10.0, "steps": 3000, "delta": 1e-6},
)
PLD_INTERVALS = (1e-4, 1e-3)
PRV_REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "privacy" / "prv_accountant_reference.json"
#: (mechanism, shares, z, q, T, delta) of the distributed comparison; d = 1,210, scale 2,306.
DISTRIBUTED = (
    ("skellam", 1, 1.2, 0.3, 20, 1e-5),
    ("ddgauss", 1, 1.2, 0.3, 20, 1e-5),
    ("ddgauss", 50, 1.2, 0.3, 20, 1e-5),
    ("skellam", 1, 1.0, 0.01, 1000, 1e-5),
    ("skellam", 1, 3.0, 0.0003, 3000, 1e-6),
)


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


def _ours_pld_default(q: float, z: float, steps: int, delta: float) -> float:
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=steps)
    return accountant.get_epsilon(delta)


def _prv_estimates() -> dict[tuple[float, float, int, float], float]:
    if not PRV_REFERENCE.exists():
        return {}
    cells = json.loads(PRV_REFERENCE.read_text())["cells"]
    return {(c["sample_rate"], c["noise_multiplier"], c["steps"], c["delta"]): c["eps_estimate"] for c in cells}


def _noise_pmf(mechanism: str, variance: float, shares: int, radius: int) -> np.ndarray:
    """PMF on -radius..radius of Sk(V) (characteristic function exp(V (cos t - 1))) or of a sum of
    ``shares`` discrete Gaussians N_Z(0, V / shares), by FFT on a circle much wider than the noise."""
    size = 1 << math.ceil(math.log2(4 * radius + 1))
    if mechanism == "skellam":
        t = 2 * math.pi * np.arange(size // 2 + 1) / size
        circular = np.fft.irfft(np.exp(variance * (np.cos(t) - 1.0)), size)
    else:
        sigma2 = variance / shares
        half = math.ceil(14 * math.sqrt(sigma2)) + 1
        k = np.arange(-half, half + 1)
        local = np.exp(-(k.astype(np.float64) ** 2) / (2 * sigma2))
        local = np.roll(np.concatenate([local / local.sum(), np.zeros(size - k.size)]), -half)
        circular = np.fft.irfft(np.fft.rfft(local) ** shares, size)
    pmf = np.maximum(np.roll(circular, radius)[: 2 * radius + 1], 0.0)
    return pmf / pmf.sum()


def _single_coordinate_pld(
    mechanism: str, variance: float, shares: int, shift: int, q: float, steps: int, delta: float
) -> float:
    """Epsilon of T Poisson-sampled releases of ``noise + shift * e_1`` vs ``noise``, by connect-the-dots.

    The grid step is the PLD accountant's default rule: a tenth of the smaller
    per-step loss std of the two directions, at most 1e-4.
    """
    radius = math.ceil(20 * math.sqrt(variance)) + shift
    base = _noise_pmf(mechanism, variance, shares, radius)
    with_client = (1 - q) * base + q * np.concatenate([np.zeros(shift), base[:-shift]])
    pairs = []
    for first, second in ((with_client, base), (base, with_client)):
        keep = (first > 0) & (second > 0)
        pairs.append((first[keep], second[keep]))
    stds = []
    for p, r in pairs:
        loss = np.log(p) - np.log(r)
        mean = float(p @ loss)
        stds.append(math.sqrt(float(p @ (loss - mean) ** 2)))
    interval = min(1e-4, 0.1 * min(stds))
    epsilons = []
    for p, r in pairs:
        loss = np.log(p) - np.log(r)
        order = np.argsort(loss)
        loss, p, r = loss[order], p[order], r[order]
        tail_p = np.concatenate([np.cumsum(p[::-1])[::-1], [0.0]])
        tail_r = np.concatenate([np.cumsum(r[::-1])[::-1], [0.0]])
        k_low, k_high = math.floor(loss[0] / interval), math.ceil(loss[-1] / interval)
        grid = np.arange(k_low, k_high + 1) * interval
        above = np.searchsorted(loss, grid, side="right")
        deltas = np.maximum(tail_p[above] - np.exp(grid) * tail_r[above], 0.0)
        pld: DiscretePLD = _connect_the_dots(deltas, k_low, interval).self_compose(steps)
        epsilons.append(pld.get_epsilon(delta))
    return max(epsilons)


def _distributed_rows() -> list[dict[str, Any]]:
    from securefl.privacy.distributed import event_factory, sensitivities

    dimension, scale = 1210, 2306.0
    _, l2, _ = sensitivities(dimension=dimension, scale=scale)
    rows = []
    for mechanism, shares, z, q, steps, delta in DISTRIBUTED:
        event = event_factory(mechanism=mechanism, dimension=dimension, scale=scale, shares=shares)(z, q)
        rdp = RDPAccountant()
        rdp.compose(event, count=steps)
        rdp_epsilon = rdp.get_epsilon(delta)
        pld_epsilon = _single_coordinate_pld(mechanism, (z * l2) ** 2, shares, math.floor(l2), q, steps, delta)
        gaussian = PLDAccountant()
        gaussian.step(noise_multiplier=z, sample_rate=q, steps=steps)
        rows.append({
            "mechanism": mechanism, "shares": shares, "noise_multiplier": z, "sample_rate": q, "steps": steps,
            "delta": delta, "l2_sensitivity": l2, "rdp": rdp_epsilon, "pld_single_coordinate": pld_epsilon,
            "rdp_over_pld": rdp_epsilon / pld_epsilon, "gaussian_pld_default": gaussian.get_epsilon(delta),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--distributed", action="store_true", help="add RDP vs PLD for Skellam / DDG")
    args = parser.parse_args()
    prv = _prv_estimates()
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
        adaptive = PLDAccountant()
        adaptive.step(noise_multiplier=z, sample_rate=q, steps=steps)
        row["pld@default"] = {
            "securefl": _timed(functools.partial(_ours_pld_default, q, z, steps, delta), args.repeats),
            "interval": adaptive.effective_interval,
            "prv_estimate": prv.get((q, z, steps, delta)),
        }
        results.append(row)
    report: dict[str, Any] = {
        "benchmark": "compose T steps of the Poisson-subsampled Gaussian, then get_epsilon(delta)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "dp_accounting": "0.6.0",
        "repeats": args.repeats,
        "results": results,
    }
    if args.distributed:
        report["distributed_rdp_vs_single_coordinate_pld"] = _distributed_rows()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
