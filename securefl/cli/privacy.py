"""``securefl epsilon`` and ``securefl calibrate``: the privacy subcommands.

:func:`securefl.cli.main` calls :func:`register` with its ``add_subparsers()``
object, then ``args.func(args)``, which returns the exit code. Bad values give one
line ``securefl <command>: error: ...`` naming the value on stderr and exit code 2.
``--json`` prints one :mod:`securefl.jsonout` document (an infinite epsilon is
``"inf"``); while the accountant works for more than half a second, progress
goes to stderr, never stdout.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import AbstractContextManager
from typing import Any, Literal

from securefl import jsonout, validation
from securefl.cli.arguments import HelpFormatter
from securefl.cli.progress import working
from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    PLDAccountant,
    PrivacyAccountingWarning,
    RDPAccountant,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
)
from securefl.privacy.calibration import EventFactory, calibrate_noise_multiplier, epsilon_for

__all__ = ["register", "run_calibrate", "run_epsilon"]

_EXIT_USAGE = 2

#: Default of an option that applies to one mechanism only (None on the namespace: not given).
_CLIP = 1.0


def _discretization(args: argparse.Namespace) -> float | None:
    """``--discretization`` (None: the PLD accountant's adaptive grid), refused unless the accountant is PLD."""
    if args.discretization is None:
        return None
    if args.accountant != "pld":
        raise ConfigurationError(f"--discretization needs --accountant pld; the accountant is {args.accountant}")
    return float(args.discretization)


def _error(command: str, message: str) -> int:
    print(f"securefl {command}: error: {message}", file=sys.stderr)
    return _EXIT_USAGE


def _emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(jsonout.dumps(dict(sorted(result.items()))))
    else:
        print("\n".join(lines))


def _working(command: str, what: str, args: argparse.Namespace) -> AbstractContextManager[None]:
    """Progress on stderr (never stdout) while the accountant works, unless ``--quiet``."""
    return working(f"securefl {command}: {what} ({args.accountant.upper()} accountant)",
                   enabled=not getattr(args, "quiet", False))


def _mechanism(args: argparse.Namespace) -> tuple[EventFactory | None, dict[str, Any]]:
    """The event factory of ``--mechanism`` (None: the Gaussian) and the figures to report with it.

    Skellam and the distributed discrete Gaussian need the pipeline's
    ``--dimension`` and ``--scale`` (their sensitivities after conditional
    rounding, in ring units) and, for ``ddgauss``, ``--shares``.
    """
    from securefl.privacy.distributed import Mechanism, event_factory, sensitivities

    mechanism: Mechanism | Literal["gaussian"] = getattr(args, "mechanism", "gaussian")
    discrete = {"--dimension": args.dimension, "--scale": args.scale, "--shares": args.shares, "--clip": args.clip}
    if mechanism == "gaussian":
        given = [flag for flag, value in discrete.items() if value is not None]
        if given:
            raise ConfigurationError(f"{given[0]} needs --mechanism skellam or ddgauss")
        return None, {"mechanism": "gaussian"}
    if args.dimension is None or args.scale is None:
        raise ConfigurationError(f"--mechanism {mechanism} needs --dimension and --scale")
    if args.shares is not None and mechanism != "ddgauss":
        raise ConfigurationError("--shares needs --mechanism ddgauss")
    shares = 1 if args.shares is None else args.shares
    clip = _CLIP if args.clip is None else args.clip
    _, l2, l1 = sensitivities(dimension=args.dimension, scale=args.scale, clip=clip)
    factory = event_factory(mechanism=mechanism, dimension=args.dimension, scale=args.scale, clip=clip,
                            shares=shares)
    figures: dict[str, Any] = {"mechanism": mechanism, "l2_sensitivity": l2, "l1_sensitivity": l1}
    if mechanism == "ddgauss":
        figures["shares"] = shares
    return factory, figures


def run_epsilon(args: argparse.Namespace) -> int:
    """Print epsilon (and, for RDP, the optimal order) of T subsampled rounds of ``--mechanism``."""
    try:
        z = check_noise_multiplier(args.noise_multiplier)
        q = check_sample_rate(args.sample_rate)
        steps = check_steps(args.steps)
        delta = check_delta(args.delta)
        event_for, figures = _mechanism(args)
        discretization = _discretization(args)
        order: float | None = None
        with warnings.catch_warnings(record=True) as caught, _working("epsilon", "composing the rounds", args):
            warnings.simplefilter("always", PrivacyAccountingWarning)
            if args.accountant == "rdp":
                rdp = RDPAccountant()
                if event_for is None:
                    rdp.step(noise_multiplier=z, sample_rate=q, steps=steps)
                else:
                    rdp.compose(event_for(z, q), count=steps)
                epsilon, order = rdp.get_epsilon_and_order(delta)
            else:
                pld = PLDAccountant(value_discretization_interval=discretization)
                if event_for is None:
                    pld.step(noise_multiplier=z, sample_rate=q, steps=steps)
                else:
                    pld.compose(event_for(z, q), count=steps)
                epsilon = pld.get_epsilon(delta)
        notes = [str(w.message) for w in caught if issubclass(w.category, PrivacyAccountingWarning)]
    except ConfigurationError as exc:
        return _error("epsilon", str(exc))
    result: dict[str, Any] = {
        "accountant": args.accountant,
        "noise_multiplier": z,
        "sample_rate": q,
        "steps": steps,
        "delta": delta,
        "epsilon": epsilon,
        **figures,
    }
    lines = [f"epsilon = {epsilon:.6g} at delta = {delta:g} ({args.accountant.upper()} accountant)"]
    if "l2_sensitivity" in figures:
        lines.append(f"{figures['mechanism']}: L2 / L1 sensitivity after rounding = "
                     f"{figures['l2_sensitivity']:.6g} / {figures['l1_sensitivity']:.6g} ring units")
    if order is not None:
        result["optimal_order"] = order
        lines.append(f"optimal RDP order = {order:g}")
    if notes:
        result["warnings"] = notes
        lines.extend(f"warning: {note}" for note in notes)
    _emit(result, args.json, lines)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    """Print the noise multiplier reaching a target epsilon, and the epsilon it achieves."""
    try:
        target_epsilon = validation.positive_float(args.epsilon, "epsilon")
        q = check_sample_rate(args.sample_rate)
        steps = check_steps(args.steps)
        delta = check_delta(args.delta)
        event_for, figures = _mechanism(args)
        discretization = _discretization(args)
        with _working("calibrate", "searching the noise multiplier", args):
            z = calibrate_noise_multiplier(
                target_epsilon=target_epsilon,
                delta=delta,
                sample_rate=q,
                steps=steps,
                accountant=args.accountant,
                value_discretization_interval=discretization,
                event_for=event_for,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PrivacyAccountingWarning)
                achieved = epsilon_for(
                    noise_multiplier=z,
                    sample_rate=q,
                    steps=steps,
                    delta=delta,
                    accountant=args.accountant,
                    value_discretization_interval=discretization,
                    event_for=event_for,
                )
    except ConfigurationError as exc:
        return _error("calibrate", str(exc))
    result = {
        "accountant": args.accountant,
        "target_epsilon": target_epsilon,
        "sample_rate": q,
        "steps": steps,
        "delta": delta,
        "noise_multiplier": z,
        "epsilon": achieved,
        **figures,
    }
    lines = [
        f"noise multiplier = {z:.6g}",
        f"epsilon = {achieved:.6g} at delta = {delta:g} "
        f"(target {target_epsilon:g}, {args.accountant.upper()} accountant)",
    ]
    _emit(result, args.json, lines)
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample-rate", type=float, required=True, metavar="Q",
                        help="Poisson sampling rate q in (0, 1]")
    parser.add_argument("--steps", type=int, required=True, metavar="T", help="number of rounds T >= 1")
    parser.add_argument("--delta", type=float, required=True, metavar="DELTA", help="target delta in (0, 1)")
    parser.add_argument("--accountant", choices=("rdp", "pld"), default="rdp",
                        help="Renyi DP, or privacy loss distributions (tighter, takes seconds)")
    parser.add_argument("--discretization", type=float, default=None, metavar="WIDTH",
                        help="pld: value discretisation interval of the privacy loss distribution "
                             "(default: adaptive, a tenth of the per-round loss's standard deviation, at most 1e-4)")
    parser.add_argument("--mechanism", choices=("gaussian", "skellam", "ddgauss"), default="gaussian",
                        help="gaussian (central DP), skellam or ddgauss (distributed DP, rdp accountant)")
    parser.add_argument("--dimension", type=int, default=None, metavar="DIM",
                        help="skellam/ddgauss, and needed there: update length, padded to a power of two "
                             "(default: none)")
    parser.add_argument("--scale", type=float, default=None, metavar="SCALE",
                        help="skellam/ddgauss, and needed there: ring units per float unit of the pipeline "
                             "(default: none)")
    parser.add_argument("--clip", type=float, default=None, metavar="C",
                        help=f"skellam/ddgauss: L2 clip of an update (default: {_CLIP:g})")
    parser.add_argument("--shares", type=int, default=None, metavar="SHARES",
                        help="ddgauss: number of noise shares the release carries, the threshold (default: 1)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (strict JSON, see docs/index.md)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def register(subparsers: Any) -> None:
    """Add the ``epsilon`` and ``calibrate`` subcommands to an ``add_subparsers()`` object."""
    epsilon = subparsers.add_parser(
        "epsilon",
        formatter_class=HelpFormatter,
        help="epsilon of T Poisson-subsampled rounds (Gaussian, Skellam or distributed discrete Gaussian)",
        description="Epsilon spent by T rounds of DP-FedAvg: central Gaussian, or distributed Skellam / "
                    "discrete Gaussian with the sensitivities of the distributed-DP pipeline.",
    )
    epsilon.add_argument("--noise-multiplier", type=float, required=True, metavar="Z", help="noise std / clip norm")
    _add_common(epsilon)
    epsilon.set_defaults(func=run_epsilon)

    calibrate = subparsers.add_parser(
        "calibrate",
        formatter_class=HelpFormatter,
        help="noise multiplier for a target epsilon",
        description="Smallest noise multiplier whose epsilon after T rounds is <= the target.",
    )
    calibrate.add_argument("--epsilon", type=float, required=True, metavar="E", help="target epsilon > 0")
    _add_common(calibrate)
    calibrate.set_defaults(func=run_calibrate)
