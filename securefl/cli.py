"""The ``securefl`` command: run a federation, and the tools around it.

    securefl run --protocol secret-sharing --clients 10 --rounds 20 [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from securefl import jsonout
from securefl.errors import ConfigurationError, SecureFLError
from securefl.protocols.catalog import make_protocol, protocol_names

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `securefl run: error: ...` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1); found {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1); found {value}")
    return value


def _float(text: str, what: str, accept: Any) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; found {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {what}; found {value}")
    return value


def _positive_float(text: str) -> float:
    return _float(text, "a finite number > 0", lambda v: 0 < v < float("inf"))


def _non_negative_float(text: str) -> float:
    return _float(text, "a finite number >= 0", lambda v: 0 <= v < float("inf"))


def _open_unit(text: str) -> float:
    return _float(text, "a number in (0, 1)", lambda v: 0 < v < 1)


def _unit_interval(text: str) -> float:
    return _float(text, "a number in (0, 1]", lambda v: 0 < v <= 1)


def _add_run(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="train FedAvg on the embedded digits data through a protocol")
    run.add_argument("--protocol", default="secret-sharing", choices=protocol_names(),
                     help="aggregation protocol (plaintext is the insecure baseline)")
    run.add_argument("--clients", type=_positive_int, default=10)
    run.add_argument("--rounds", type=_positive_int, default=20)
    run.add_argument("--local-epochs", type=_positive_int, default=None,
                     help="local epochs per round (default: the FedAvg default)")
    run.add_argument("--dropout", type=_probability, default=0.0,
                     help="probability that a sampled client drops out, at a random protocol phase")
    run.add_argument("--partition", choices=("iid", "dirichlet"), default="iid")
    run.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (with --partition dirichlet)")
    run.add_argument("--mu", type=float, default=0.0, help="FedProx proximal coefficient")
    run.add_argument("--aggregators", type=_positive_int, default=None, help="secret-sharing: number of aggregators")
    run.add_argument("--neighbors", type=_positive_int, default=None,
                     help="secagg+: neighbours per client in the sparse communication graph")
    run.add_argument("--hidden", type=_positive_int, default=None, help="hidden units of the MLP (default 64)")
    run.add_argument("--seed", type=int, default=0)
    privacy = run.add_argument_group("differential privacy (DP-FedAvg, user level)")
    privacy.add_argument("--dp", choices=("none", "central", "distributed"), default="none",
                         help="central: Poisson sampling, L2 clipping, Gaussian noise on the sum; distributed: "
                              "each client adds a share of discrete noise inside the secure sum")
    privacy.add_argument("--epsilon", type=_positive_float, default=None,
                         help="target epsilon after all rounds (calibrates the noise multiplier)")
    privacy.add_argument("--delta", type=_open_unit, default=1e-5, help="target delta (default 1e-5)")
    privacy.add_argument("--noise-multiplier", type=_non_negative_float, default=None,
                         help="noise multiplier z instead of --epsilon")
    privacy.add_argument("--clip", type=_positive_float, default=1.0, help="L2 clip C of each client update")
    privacy.add_argument("--sample-rate", type=_unit_interval, default=1.0,
                         help="Poisson sampling rate q of clients per round")
    privacy.add_argument("--accountant", choices=("rdp", "pld"), default="rdp")
    privacy.add_argument("--bits", type=_positive_int, default=None,
                         help="distributed: ring bits per coordinate (default 16)")
    privacy.add_argument("--mechanism", choices=("skellam", "ddgauss"), default=None,
                         help="distributed: Skellam (default) or distributed discrete Gaussian noise")
    privacy.add_argument("--threshold", type=_unit_interval, default=None,
                         help="distributed with secagg/secagg+: share threshold as a fraction of the cohort; "
                              "noise is calibrated to it (higher: less noise, fewer dropouts tolerated)")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from securefl.fl.fedavg import FedAvgConfig

    if args.aggregators is not None and args.protocol != "secret-sharing":
        raise ConfigurationError(f"--aggregators applies to secret-sharing only; the protocol is {args.protocol}")
    protocol = make_protocol(args.protocol, aggregators=args.aggregators, neighbors=args.neighbors)
    options: dict[str, Any] = dict(
        clients=args.clients, rounds=args.rounds, dropout=args.dropout, partition=args.partition,
        alpha=args.alpha, mu=args.mu, seed=args.seed,
    )
    if args.local_epochs is not None:
        options["local_epochs"] = args.local_epochs
    if args.hidden is not None:
        options["hidden"] = args.hidden
    config = FedAvgConfig(**options)
    trainer = make_trainer(protocol, config, args)
    bar = tqdm(total=config.rounds, desc=protocol.name, unit="round", disable=args.quiet, file=sys.stderr)

    def progress(record: Any) -> None:
        shown = {"accuracy": f"{record.accuracy:.3f}"}
        if record.epsilon is not None:
            shown["epsilon"] = f"{record.epsilon:.2f}"
        bar.set_postfix(shown, refresh=False)
        bar.update(1)

    history = trainer.run(progress=progress)
    bar.close()
    summary = summarize(trainer.protocol, config, history, dp=getattr(trainer, "dp", None))
    summary.update(trainer.summary() if hasattr(trainer, "summary") else {})
    if args.json:
        print(jsonout.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _protocol_list(text: str) -> list[str]:
    from securefl.compare import contender_names

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in contender_names()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown protocol(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(contender_names())}"
        )
    return names


def _add_compare(subparsers: Any) -> None:
    compare = subparsers.add_parser(
        "compare", help="every protocol side by side: accuracy, epsilon, overhead and a privacy probe"
    )
    compare.add_argument("--clients", type=_positive_int, default=10)
    compare.add_argument("--rounds", type=_positive_int, default=20)
    compare.add_argument("--dropout", type=_probability, default=0.0)
    compare.add_argument("--protocols", type=_protocol_list, default=None,
                         help="comma-separated subset (default: all)")
    compare.add_argument("--epsilon", type=_positive_float, default=8.0, help="target epsilon of the DP rows")
    compare.add_argument("--delta", type=_open_unit, default=1e-5)
    compare.add_argument("--out", default="securefl-report", help="report folder (default ./securefl-report)")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--json", action="store_true", help="print results.json to stdout")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from securefl.compare import compare
    from securefl.report import format_table, write_report

    bars: dict[str, Any] = {}

    def progress(name: str, record: Any) -> None:
        bar = bars.get(name)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[name] = tqdm(total=args.rounds, desc=f"{name:<18}", unit="round",
                                    disable=args.quiet, file=sys.stderr)
        bar.set_postfix(accuracy=f"{record.accuracy:.3f}", refresh=False)
        bar.update(1)

    comparison = compare(clients=args.clients, rounds=args.rounds, dropout=args.dropout,
                         protocols=args.protocols, seed=args.seed, epsilon=args.epsilon,
                         delta=args.delta, progress=progress)
    for bar in bars.values():
        bar.close()
    paths = write_report(comparison, args.out)
    if args.json:
        print(paths["results"].read_text(encoding="utf-8"), end="")
    else:
        print(format_table(comparison))
        print(f"\nreport: {paths['report']}  (results.json and plots beside it)")
    return 0


def make_trainer(protocol: Any, config: Any, args: argparse.Namespace) -> Any:
    """FedAvg, or DP-FedAvg when ``--dp central|distributed`` (calibrating z to ``--epsilon``)."""
    from securefl.errors import ConfigurationError
    from securefl.fl.dp import CentralDP, DPFedAvg
    from securefl.fl.fedavg import FedAvg

    distributed_flags = (("--bits", getattr(args, "bits", None)), ("--mechanism", getattr(args, "mechanism", None)),
                         ("--threshold", getattr(args, "threshold", None)))
    if args.dp != "distributed":
        for flag, value in distributed_flags:
            if value is not None:
                raise ConfigurationError(f"{flag} needs --dp distributed")
    if args.dp == "distributed":
        return _distributed_trainer(protocol, config, args)
    if args.dp == "none":
        for flag, value in (("--epsilon", args.epsilon), ("--noise-multiplier", args.noise_multiplier)):
            if value is not None:
                raise ConfigurationError(f"{flag} needs --dp central")
        return FedAvg(protocol, config)
    if (args.epsilon is None) == (args.noise_multiplier is None):
        raise ConfigurationError("--dp central needs exactly one of --epsilon and --noise-multiplier")
    common = dict(clip=args.clip, sample_rate=args.sample_rate, accountant=args.accountant, noise_seed=args.seed)
    if args.epsilon is not None:
        dp = CentralDP.for_target(epsilon=args.epsilon, delta=args.delta, rounds=config.rounds, **common)
    else:
        dp = CentralDP(noise_multiplier=args.noise_multiplier, delta=args.delta, **common)
    return DPFedAvg(protocol, config, dp=dp)


def _distributed_trainer(protocol: Any, config: Any, args: argparse.Namespace) -> Any:
    """DistributedDPFedAvg: ``--bits``, ``--mechanism``, ``--threshold`` (secagg), RDP accountant."""
    import dataclasses

    from securefl.errors import ConfigurationError
    from securefl.fl.distributed_dp import DistributedDP, DistributedDPFedAvg

    if (args.epsilon is None) == (args.noise_multiplier is None):
        raise ConfigurationError("--dp distributed needs exactly one of --epsilon and --noise-multiplier")
    if args.accountant != "rdp":
        raise ConfigurationError("--dp distributed is accounted with --accountant rdp only")
    if args.threshold is not None:
        if "threshold" not in {f.name for f in dataclasses.fields(protocol)}:
            raise ConfigurationError(
                f"--threshold needs a protocol with a share threshold (secagg); found {protocol.name}"
            )
        protocol = dataclasses.replace(protocol, threshold=args.threshold, ring_bits=None)
    dp = DistributedDP(bits=args.bits or 16, mechanism=args.mechanism or "skellam", target_epsilon=args.epsilon,
                       noise_multiplier=args.noise_multiplier, clip=args.clip, sample_rate=args.sample_rate,
                       delta=args.delta, noise_seed=args.seed)
    return DistributedDPFedAvg(protocol, config, dp=dp)


def summarize(protocol: Any, config: Any, history: Any, *, dp: Any = None) -> dict[str, Any]:
    """The figures of one run, as printed by ``securefl run --json``."""
    completed = [r for r in history.records if not r.aborted]

    def mean(attribute: str) -> float:
        values = [getattr(r, attribute) for r in completed]
        return float(sum(values) / len(values)) if values else 0.0

    return {
        "protocol": protocol.name,
        "description": protocol.describe(),
        "secure": bool(protocol.secure),
        "rounds": config.rounds,
        "clients": config.clients,
        "dropout": config.dropout,
        "seed": config.seed,
        "final_accuracy": history.final_accuracy,
        "bytes_up_per_client_per_round": mean("bytes_up_per_client"),
        "bytes_down_per_client_per_round": mean("bytes_down_per_client"),
        "seconds_per_round": mean("seconds"),
        "client_seconds_per_round": mean("client_seconds"),
        "server_seconds_per_round": mean("server_seconds"),
        "rounds_aborted": sum(1 for r in history.records if r.aborted),
        "dropouts": sum(r.dropped for r in history.records),
        "server_saw_individual_updates": any(r.server_saw_individual_updates for r in completed),
        "dp": getattr(dp, "kind", "central") if dp is not None else "none",
        "epsilon": history.records[-1].epsilon if dp is not None else None,
        "delta": dp.delta if dp is not None else None,
        "noise_multiplier": dp.noise_multiplier if dp is not None else None,
        "clip": dp.clip if dp is not None else None,
        "sample_rate": dp.sample_rate if dp is not None else None,
        "accountant": dp.accountant if dp is not None else None,
        "initial_accuracy": history.initial_accuracy,
        "history": history.to_dict()["rounds"],
    }


def format_summary(summary: dict[str, Any]) -> str:
    rows = [
        ("protocol", summary["description"]),
        ("secure", "yes" if summary["secure"] else "NO (insecure baseline)"),
        ("clients x rounds", f"{summary['clients']} x {summary['rounds']}"),
        ("final test accuracy", f"{summary['final_accuracy']:.4f}"),
        ("upload per client per round", f"{summary['bytes_up_per_client_per_round']:,.0f} B"),
        ("download per client per round", f"{summary['bytes_down_per_client_per_round']:,.0f} B"),
        ("seconds per round", f"{summary['seconds_per_round']:.3f}"),
        ("dropouts / aborted rounds", f"{summary['dropouts']} / {summary['rounds_aborted']}"),
        ("server saw individual updates", "YES" if summary["server_saw_individual_updates"] else "no"),
    ]
    if summary["dp"] == "distributed":
        rows.append(("differential privacy", (
            f"distributed {summary['mechanism']}, epsilon={summary['epsilon']:.3f} at delta={summary['delta']:g} "
            f"(z={summary['noise_multiplier']:.4g}, C={summary['clip']:g}, q={summary['sample_rate']:g}, rdp); "
            f"against the server {summary['server_epsilon']:.3f}"
        )))
        rows.append(("ring bits / scale", f"{summary['bits']} / {summary['scale']:.6g} "
                     f"(noise calibrated to a threshold of {summary['design_threshold']} "
                     f"in a cohort of up to {summary['design_cohort']})"))
        rows.append(("wrap-around probability", f"<= {summary['wrap_probability_max']:.3g} per round "
                     f"(design {summary['wrap_probability_design']:.3g})"))
    elif summary["dp"] != "none":
        rows.append(("differential privacy", (
            f"central, epsilon={summary['epsilon']:.3f} at delta={summary['delta']:g} "
            f"(z={summary['noise_multiplier']:.4g}, C={summary['clip']:g}, q={summary['sample_rate']:g}, "
            f"{summary['accountant']})"
        )))
    else:
        rows.append(("differential privacy", "none"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="securefl", description="Privacy-preserving federated learning.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(subparsers)
    _add_compare(subparsers)
    register_privacy: Callable[[Any], None] | None
    try:
        from securefl.privacy.cli import register as register_privacy
    except ImportError:  # pragma: no cover - the privacy package is part of the install
        register_privacy = None
    if register_privacy is not None:
        register_privacy(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SecureFLError as error:
        print(f"securefl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
