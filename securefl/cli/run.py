"""``securefl run``: FedAvg on the embedded digits data through one protocol, with an optional DP plugin.

    securefl run --protocol secret-sharing --clients 10 --rounds 20 [--dp central --epsilon 8] [--seed 0] [--json]

The trainer is ``FedAvg(protocol, config, dp=CentralDP(...) | DistributedDP(...) | None)``;
every figure the table prints is in the ``--json`` object too. Without
``--seed`` every random choice (split, sampling, rounding, noise) comes from
the OS entropy pool and the output says so (``"seed": null``,
``"seed_source": "os-entropy-pool"``). The object follows the
:mod:`securefl.jsonout` convention: ``dropped`` counts the clients that
dropped (each round's ``dropouts`` maps them to a phase), and an infinite
epsilon is ``"inf"`` while ``null`` means no DP.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from securefl import jsonout
from securefl.cli.arguments import (
    HelpFormatter,
    non_negative_float,
    non_negative_int,
    open_unit,
    positive_float,
    positive_int,
    probability,
    unit_interval,
)
from securefl.cli.progress import working
from securefl.errors import ConfigurationError
from securefl.protocols.base import Protocol
from securefl.protocols.catalog import make_protocol, protocol_names

if TYPE_CHECKING:
    from securefl.fl.fedavg import FedAvg, FedAvgConfig, History
    from securefl.privacy.plugins import DifferentialPrivacy

__all__ = ["register", "run", "make_dp", "summarize", "format_summary"]

#: ``seed_source`` in the output: the user's ``--seed``, or the OS entropy pool (not reproducible).
SEED_GIVEN, SEED_FROM_OS = "given", "os-entropy-pool"


#: Defaults of the DP options, applied by :func:`make_dp` (None on the namespace: not given, refused without --dp).
DP_DEFAULTS: dict[str, Any] = {"delta": 1e-5, "clip": 1.0, "sample_rate": 1.0, "accountant": "rdp"}


def register(subparsers: Any) -> None:
    """Add ``run`` to an ``add_subparsers()`` object."""
    run_parser = subparsers.add_parser(
        "run", help="train FedAvg on the embedded digits data through a protocol",
        description="FedAvg on the embedded scikit-learn digits data through one aggregation protocol, with an "
                    "optional DP plugin; prints a table, or one JSON object with --json.",
        formatter_class=HelpFormatter,
    )
    run_parser.add_argument("--protocol", default="secret-sharing", choices=protocol_names(),
                            help="aggregation protocol (plaintext is the insecure baseline)")
    run_parser.add_argument("--clients", type=positive_int, default=10, metavar="N", help="clients in the federation")
    run_parser.add_argument("--rounds", type=positive_int, default=20, metavar="T", help="FedAvg rounds")
    run_parser.add_argument("--local-epochs", type=positive_int, default=None, metavar="E",
                            help="local epochs per round (default: 3)")
    run_parser.add_argument("--dropout", type=probability, default=0.0, metavar="P",
                            help="probability that a sampled client drops out, at a random protocol phase")
    run_parser.add_argument("--partition", choices=("iid", "dirichlet"), default="iid",
                            help="split of the training data across clients (dirichlet: label skew)")
    run_parser.add_argument("--alpha", type=positive_float, default=None, metavar="ALPHA",
                            help="Dirichlet concentration, with --partition dirichlet only (default: 0.5)")
    run_parser.add_argument("--mu", type=non_negative_float, default=0.0, metavar="MU",
                            help="FedProx proximal coefficient (0: FedAvg)")
    run_parser.add_argument("--aggregators", type=positive_int, default=None, metavar="M",
                            help="secret-sharing only: number of aggregators (default: 2)")
    run_parser.add_argument("--norm-bound", type=positive_float, default=None, metavar="B",
                            help="validated-sharing only: the L2 bound the aggregators verify on every update; "
                                 "honest clients clip to it, a client whose proof fails is excluded "
                                 "(default: 10)")
    run_parser.add_argument("--neighbors", type=positive_int, default=None, metavar="K",
                            help="secagg+ only, and needed there: neighbours per client in the sparse "
                                 "communication graph (default: none)")
    run_parser.add_argument("--hidden", type=positive_int, default=None, metavar="H",
                            help="hidden units of the MLP (default: 64)")
    run_parser.add_argument("--seed", type=non_negative_int, default=None, metavar="SEED",
                            help="seed of a reproducible simulation (default: none, every random choice "
                                 "from the OS entropy pool)")
    privacy = run_parser.add_argument_group(
        "differential privacy (DP-FedAvg, user level)",
        "Every option below needs --dp central or --dp distributed; those marked distributed need --dp distributed.",
    )
    privacy.add_argument("--dp", choices=("none", "central", "distributed"), default="none",
                         help="central: Poisson sampling, L2 clipping, Gaussian noise on the sum; distributed: "
                              "each client adds a share of discrete noise inside the secure sum")
    privacy.add_argument("--epsilon", type=positive_float, default=None, metavar="EPS",
                         help="target epsilon after all rounds, calibrating the noise multiplier; give it or "
                              "--noise-multiplier (default: none)")
    privacy.add_argument("--delta", type=open_unit, default=None, metavar="DELTA",
                         help=f"target delta (default: {DP_DEFAULTS['delta']:g})")
    privacy.add_argument("--noise-multiplier", type=non_negative_float, default=None, metavar="Z",
                         help="noise multiplier z (noise std / clip) instead of --epsilon (default: none)")
    privacy.add_argument("--clip", type=positive_float, default=None, metavar="C",
                         help=f"L2 clip C of each client update (default: {DP_DEFAULTS['clip']:g})")
    privacy.add_argument("--sample-rate", type=unit_interval, default=None, metavar="Q",
                         help=f"Poisson sampling rate q of clients per round (default: {DP_DEFAULTS['sample_rate']:g})")
    privacy.add_argument("--accountant", choices=("rdp", "pld"), default=None,
                         help=f"privacy accountant; distributed DP is accounted with rdp only "
                              f"(default: {DP_DEFAULTS['accountant']})")
    privacy.add_argument("--bits", type=positive_int, default=None, metavar="BITS",
                         help="distributed: ring bits per coordinate (default: 16)")
    privacy.add_argument("--mechanism", choices=("skellam", "ddgauss"), default=None,
                         help="distributed: Skellam or distributed discrete Gaussian noise (default: skellam)")
    privacy.add_argument("--threshold", type=unit_interval, default=None, metavar="FRACTION",
                         help="distributed with secagg/secagg+: share threshold as a fraction of the cohort; "
                              "noise is calibrated to it (higher: less noise, fewer dropouts tolerated; "
                              "default: the protocol's)")
    privacy.add_argument("--dp-against", choices=("release", "server"), default=None,
                         help="distributed: meet --epsilon against observers of the released model (sampling "
                              "amplifies) or against the server, which knows who took part (no amplification; "
                              "default: release)")
    run_parser.add_argument("--json", action="store_true",
                            help="print one JSON object instead of the table (strict JSON, see docs/index.md)")
    run_parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run_parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check every option, train, then print the summary (table or ``--json``); 0 on success."""
    from tqdm import tqdm

    from securefl.fl.fedavg import FedAvg

    config = _config(args)
    with working(f"securefl run: calibrating the noise multiplier ({_accountant(args).upper()} accountant)",
                 enabled=not args.quiet and args.epsilon is not None):
        dp = make_dp(args, clients=config.clients, rounds=config.rounds)
    protocol = _protocol(args, dp)
    _check_population(protocol, dp, config.clients)
    trainer = FedAvg(protocol, config, dp=dp)
    bar = tqdm(total=config.rounds, desc=protocol.name, unit="round", disable=args.quiet, file=sys.stderr)

    def progress(record: Any) -> None:
        shown = {"accuracy": f"{record.accuracy:.3f}"}
        if record.epsilon is not None:
            shown["epsilon"] = f"{record.epsilon:.2f}"
        bar.set_postfix(shown, refresh=False)
        bar.update(1)

    try:
        history = trainer.run(progress=progress)
    finally:
        bar.close()
    summary = summarize(trainer, history)
    print(jsonout.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _config(args: argparse.Namespace) -> FedAvgConfig:
    from securefl.fl.fedavg import FedAvgConfig

    if args.alpha is not None and args.partition != "dirichlet":
        raise ConfigurationError(f"--alpha needs --partition dirichlet; the partition is {args.partition}")
    options: dict[str, Any] = dict(clients=args.clients, rounds=args.rounds, dropout=args.dropout,
                                   partition=args.partition, mu=args.mu, seed=args.seed)
    for option, value in (("alpha", args.alpha), ("local_epochs", args.local_epochs), ("hidden", args.hidden)):
        if value is not None:
            options[option] = value
    return FedAvgConfig(**options)


def _protocol(args: argparse.Namespace, dp: DifferentialPrivacy | None) -> Protocol:
    """The ``--protocol`` with its options; ``--threshold`` (distributed DP) set on SecAgg's share threshold."""
    if args.aggregators is not None and args.protocol not in ("secret-sharing", "validated-sharing"):
        raise ConfigurationError(f"--aggregators applies to secret-sharing and validated-sharing only; the protocol "
                                 f"is {args.protocol}")
    if args.norm_bound is not None and args.protocol != "validated-sharing":
        raise ConfigurationError(f"--norm-bound applies to validated-sharing only; the protocol is {args.protocol}")
    if args.neighbors is not None and args.protocol not in ("secagg", "secagg+"):
        raise ConfigurationError(f"--neighbors applies to secagg+ only; the protocol is {args.protocol}")
    options: dict[str, Any] = dict(aggregators=args.aggregators, neighbors=args.neighbors)
    if args.norm_bound is not None:
        options["norm_bound"] = args.norm_bound
    protocol = make_protocol(args.protocol, **options)
    if args.threshold is not None:
        if not dataclasses.is_dataclass(protocol) or "threshold" not in {f.name for f in dataclasses.fields(protocol)}:
            raise ConfigurationError(
                f"--threshold needs a protocol with a share threshold (secagg, secagg+); found {protocol.name}"
            )
        protocol = dataclasses.replace(protocol, threshold=args.threshold)
    return protocol


def _accountant(args: argparse.Namespace) -> str:
    return str(args.accountant or DP_DEFAULTS["accountant"])


def make_dp(args: argparse.Namespace, *, clients: int, rounds: int) -> DifferentialPrivacy | None:
    """The DP plugin of ``--dp central|distributed`` (None for ``--dp none``), for ``clients`` and ``rounds``.

    Exactly one of ``--epsilon`` (z calibrated over ``rounds`` rounds) and
    ``--noise-multiplier``; flags of another kind of DP are refused. The
    noise generators are left to FedAvg: seeded from ``--seed``, else the OS.
    """
    from securefl.privacy.plugins import CentralDP, DistributedDP

    for flag, value in (("--bits", args.bits), ("--mechanism", args.mechanism), ("--threshold", args.threshold),
                        ("--dp-against", args.dp_against)):
        if value is not None and args.dp != "distributed":
            raise ConfigurationError(f"{flag} needs --dp distributed; the DP is {args.dp}")
    if args.dp == "none":
        for flag, value in (("--epsilon", args.epsilon), ("--noise-multiplier", args.noise_multiplier),
                            ("--delta", args.delta), ("--clip", args.clip), ("--sample-rate", args.sample_rate),
                            ("--accountant", args.accountant)):
            if value is not None:
                raise ConfigurationError(f"{flag} needs --dp central or --dp distributed")
        return None
    if (args.epsilon is None) == (args.noise_multiplier is None):
        raise ConfigurationError(f"--dp {args.dp} needs exactly one of --epsilon and --noise-multiplier")
    given = {name: getattr(args, name) for name in DP_DEFAULTS}
    figures = {name: DP_DEFAULTS[name] if value is None else value for name, value in given.items()}
    common: dict[str, Any] = dict(clip=figures["clip"], noise_multiplier=args.noise_multiplier,
                                  target_epsilon=args.epsilon, delta=figures["delta"], rounds=rounds,
                                  sample_rate=figures["sample_rate"], population=clients)
    if args.dp == "central":
        return CentralDP(accountant=figures["accountant"], **common)
    if figures["accountant"] != "rdp":
        raise ConfigurationError("--dp distributed is accounted with --accountant rdp only")
    if args.dp_against == "server" and args.epsilon is None:
        raise ConfigurationError("--dp-against server calibrates --epsilon; with --noise-multiplier both epsilons "
                                 "are reported anyway")
    return DistributedDP(bits=args.bits or 16, mechanism=args.mechanism or "skellam",
                         against=args.dp_against or "release", **common)


def _check_population(protocol: Protocol, dp: DifferentialPrivacy | None, clients: int) -> None:
    """Refuse up front a federation whose every round the protocol would refuse (e.g. one client)."""
    if dp is not None and protocol.modular_sum:  # it runs over the plugin's protocol (distributed: its ring)
        from securefl.privacy.plugins import DistributedDP

        # ring_protocol: a check that builds no engines (protocol_for would fix the clients' shares at V / t).
        protocol = dp.ring_protocol(protocol) if isinstance(dp, DistributedDP) else dp.protocol_for(protocol)
    protocol.check_clients(clients)


def summarize(trainer: FedAvg, history: History) -> dict[str, Any]:
    """The figures of one run, as printed by ``securefl run --json`` (the DP ones from ``trainer.summary()``)."""
    from securefl.evaluation.compare import protocol_run

    config = trainer.config
    protocol = protocol_run(trainer)
    completed = [r for r in history.records if not r.aborted]

    def mean(attribute: str) -> float:
        values = [getattr(r, attribute) for r in completed]
        return float(sum(values) / len(values)) if values else 0.0

    summary: dict[str, Any] = {
        "protocol": protocol.name,
        "description": protocol.describe(),
        "secure": bool(protocol.secure),
        "rounds": config.rounds,
        "clients": config.clients,
        "dropout": config.dropout,
        "seed": config.seed,
        "seed_source": SEED_GIVEN if config.seed is not None else SEED_FROM_OS,
        "final_accuracy": history.final_accuracy,
        "bytes_up_per_client_per_round": mean("bytes_up_per_client"),
        "bytes_down_per_client_per_round": mean("bytes_down_per_client"),
        "seconds_per_round": mean("seconds"),
        "client_seconds_per_round": mean("client_seconds"),
        "server_seconds_per_round": mean("server_seconds"),
        "setup_seconds_per_round": mean("setup_seconds"),
        "seconds_by_part_per_round": history.seconds_by_part_per_round(),
        "unaccounted_seconds_per_round": float(sum(r.unaccounted_seconds for r in history.records)
                                               / max(len(history.records), 1)),
        "rounds_aborted": sum(1 for r in history.records if r.aborted),
        "dropped": sum(r.dropped for r in history.records),
        "server_saw_individual_updates": any(bool(r.server_saw_individual_updates) for r in completed),
        "rejected": {str(r.round): {str(client): reason for client, reason in r.rejected.items()}
                     for r in history.records if r.rejected},
        "l2_clipped_updates": _l2_clipped(history),
        "dp": "none",
        "epsilon": None,
        "delta": None,
        "noise_multiplier": None,
        "clip": None,
        "sample_rate": None,
        "accountant": None,
        "initial_accuracy": history.initial_accuracy,
        "config": history.to_dict()["config"],
        "history": history.to_dict()["rounds"],
    }
    if trainer.dp is not None:
        summary.update(trainer.summary())
        if summary["dp"] == "distributed":
            summary["accountant"] = "rdp"  # DistributedDP composes its events with the RDP accountant only
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The table ``securefl run`` prints without ``--json``: every row is a field of the JSON object."""
    seed = (str(summary["seed"]) if summary["seed_source"] == SEED_GIVEN
            else "none: drawn from the OS entropy pool (pass --seed to reproduce a run)")
    rows = [
        ("protocol", summary["description"]),
        ("secure", "yes" if summary["secure"] else "NO (insecure baseline)"),
        ("clients x rounds", f"{summary['clients']} x {summary['rounds']}"),
        ("seed", seed),
        ("final test accuracy", f"{summary['final_accuracy']:.4f}"),
        ("upload per client per round", f"{summary['bytes_up_per_client_per_round']:,.0f} B"),
        ("download per client per round", f"{summary['bytes_down_per_client_per_round']:,.0f} B"),
        ("seconds per round", f"{summary['seconds_per_round']:.3f}"),
        ("  of which (all parties)", ", ".join(f"{part.replace('_', ' ')} {spent:.3g}" for part, spent
                                               in summary["seconds_by_part_per_round"].items() if spent)
         + f"; unaccounted {summary['unaccounted_seconds_per_round']:.2g}"),
        ("dropped / aborted rounds", f"{summary['dropped']} / {summary['rounds_aborted']}"),
        ("server saw individual updates", "YES" if summary["server_saw_individual_updates"] else "no"),
        *_robustness_rows(summary),
        *_privacy_rows(summary),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _l2_clipped(history: History) -> int:
    """Updates whose L2 norm was clipped over the run (a protocol's norm bound, or DP's clip; 0 for neither)."""
    return sum(round(r.l2_clip_fraction * len(r.sampled)) for r in history.records if r.l2_clip_fraction)


def _robustness_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Rejected contributions per round (validated-sharing), and the honest clients' L2 clipping."""
    if summary["protocol"] != "validated-sharing":
        return []
    rejected = summary["rejected"]
    shown = "; ".join(f"round {r}: " + ", ".join(f"client {c} {reason}" for c, reason in clients.items())
                      for r, clients in rejected.items())
    total = sum(len(clients) for clients in rejected.values())
    return [("rejected contributions", f"{total}" + (f" ({shown})" if shown else "")),
            ("honest updates L2-clipped", str(summary["l2_clipped_updates"]))]


def _privacy_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    if summary["dp"] == "none":
        return [("differential privacy", "none")]
    sampling = ("clients sampled from the OS CSPRNG" if summary.get("client_sampling") == "os-csprng"
                else "a seeded simulation's sample: predictable to whoever knows the seed")
    figures = (f"z={summary['noise_multiplier']:.4g}, C={summary['clip']:g}, q={summary['sample_rate']:g}, "
               f"{summary['accountant']}; {sampling}")
    epsilon = f"epsilon={summary['epsilon']:.3f} at delta={summary['delta']:g}"
    if summary["dp"] == "central":
        return [("differential privacy", f"central, {epsilon} ({figures})")]
    return [
        ("differential privacy", f"distributed {summary['mechanism']}, {epsilon} ({figures}); "
                                 f"against the server {summary['server_epsilon']:.3f} (no amplification by "
                                 f"sampling; the target applies to the {summary['dp_against']})"),
        ("ring bits / scale", f"{summary['bits']} / {summary['scale']:.6g} " + (
            f"(exact noise: every round carries the target variance for any {summary['design_threshold']} or "
            f"more survivors of a cohort of up to {summary['design_cohort']})" if summary.get("exact_noise") else
            f"(noise calibrated to a threshold of {summary['design_threshold']} in a cohort of up to "
            f"{summary['design_cohort']})")),
        ("wrap-around probability", f"<= {summary['wrap_probability_max']:.3g} per round "
                                    f"(design {summary['wrap_probability_design']:.3g})"),
    ]
