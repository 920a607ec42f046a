"""``securefl compare``: every protocol side by side, written to a report folder.

    securefl compare [--clients 10] [--dp-clients 100] [--rounds 10] [--dp-rounds 20] [--seeds 3] [--model-params P]
                     [--protocols plaintext,secagg] [--poison K --boost F] [--norm-bound B]
                     [--out securefl-report] [--json]

``validate`` checks every option against every selected row before the first
round trains; ``--json`` prints results.json (the :mod:`securefl.jsonout`
convention).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from securefl.cli.arguments import (
    HelpFormatter,
    non_negative_int,
    open_unit,
    positive_float,
    positive_int,
    probability,
    suggestion,
    unit_interval,
)
from securefl.errors import ConfigurationError

__all__ = ["register", "run_compare", "validate"]


def _protocol_list(text: str) -> list[str]:
    from securefl.evaluation.compare import contender_names

    known = contender_names()
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        hints = [f"did you mean {match!r} for {name!r}?" for name in unknown if (match := suggestion(name, known))]
        raise argparse.ArgumentTypeError(
            f"unknown protocol(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}"
            + "".join(f"; {hint}" for hint in hints)
        )
    return names


def register(subparsers: Any) -> None:
    """Add ``compare`` to an ``add_subparsers()`` object."""
    compare = subparsers.add_parser(
        "compare", help="every protocol side by side: accuracy, epsilon, overhead and a privacy probe",
        description="Every protocol on the same federation (the same data split and seed): accuracy, epsilon, "
                    "bytes and seconds per round, and a curious server's reconstruction attack; the report "
                    "(report.md, results.json, plots) goes to --out.",
        formatter_class=HelpFormatter,
    )
    compare.add_argument("--clients", type=positive_int, default=10, metavar="N",
                         help="clients of the rows without DP (at least 2), all sampled each round")
    compare.add_argument("--dp-clients", type=positive_int, default=100, metavar="M",
                         help="clients of the DP rows, each Poisson-sampled every round at the sampling rate Q")
    compare.add_argument("--sample-rate", type=unit_interval, default=0.3, metavar="Q",
                         help="the DP rows' sampling rate q")
    compare.add_argument("--rounds", type=positive_int, default=10, metavar="T", help="FedAvg rounds without DP")
    compare.add_argument("--dp-rounds", type=positive_int, default=20, metavar="R",
                         help="FedAvg rounds of the DP rows (epsilon covers all of them)")
    compare.add_argument("--seeds", type=positive_int, default=3, metavar="S",
                         help="seeds per row, counting up from SEED; figures are means with their spread "
                              "(min-max below 5 seeds, a 95%% t interval from 5); 1 for a quick look")
    compare.add_argument("--model-params", type=positive_int, default=None, metavar="PARAMS",
                         help="size every row's MLP to about PARAMS parameters (e.g. 100000 or 1000000); default: "
                              "4,810 for the rows without DP, 1,210 for the DP rows")
    compare.add_argument("--dropout", type=probability, default=0.0, metavar="P",
                         help="probability that a sampled client drops out, at a random protocol phase")
    compare.add_argument("--protocols", type=_protocol_list, default=None, metavar="NAMES",
                         help="comma-separated subset of the rows (default: all rows)")
    compare.add_argument("--epsilon", type=positive_float, default=8.0, metavar="EPS",
                         help="target epsilon of the DP rows (central and distributed DP) after all rounds")
    compare.add_argument("--delta", type=open_unit, default=1e-5, metavar="DELTA", help="target delta of the DP rows")
    compare.add_argument("--poison", type=non_negative_int, default=0, metavar="K",
                         help="K clients of every row are model-replacement attackers boosting their update by "
                              "--boost, skipping any clip (default 0: no attack; 1 for the demo)")
    compare.add_argument("--boost", type=positive_float, default=100.0, metavar="F",
                         help="the attackers' boost factor, with --poison")
    compare.add_argument("--norm-bound", type=positive_float, default=None, metavar="B",
                         help="validated-sharing's L2 bound on every update (default: 10)")
    compare.add_argument("--out", default="securefl-report", metavar="DIR", help="report folder")
    compare.add_argument("--seed", type=non_negative_int, default=0, metavar="SEED",
                         help="first seed, shared by every row (data split, sampling, dropout draws)")
    compare.add_argument("--json", action="store_true",
                         help="print results.json to stdout (strict JSON, see docs/index.md)")
    compare.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    compare.set_defaults(func=run_compare, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """Refuse up front, before any training, what a row would refuse part-way (e.g. ``--clients 1``)."""
    from securefl.evaluation.compare import CONTENDERS, contender_names, make_contender_protocol, poisoning

    chosen = [c for c in CONTENDERS if c.name in (args.protocols or contender_names())]
    if args.boost != 100.0 and args.poison == 0:
        raise ConfigurationError("--boost needs --poison K (K > 0 attackers)")
    if args.norm_bound is not None and not any(c.protocol == "validated-sharing" for c in chosen):
        raise ConfigurationError("--norm-bound applies to the validated-sharing row, which is not selected")
    try:
        poisoning(args.poison, args.boost, min(args.clients if c.dp == "none" else args.dp_clients for c in chosen))
    except ConfigurationError as error:
        raise ConfigurationError(f"--poison {args.poison}: {error}") from None
    for contender in chosen:
        flag, clients = ("--clients", args.clients) if contender.dp == "none" else ("--dp-clients", args.dp_clients)
        try:
            make_contender_protocol(contender, norm_bound=args.norm_bound).check_clients(clients)
        except ConfigurationError as error:
            raise ConfigurationError(f"{flag} {clients}: row {contender.name}: {error}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {args.out} is a file; the report needs a folder")


def run_compare(args: argparse.Namespace) -> int:
    """Run the comparison, write the report, print the table (or results.json); 0 on success."""
    from tqdm import tqdm

    from securefl.evaluation.compare import CONTENDERS, compare
    from securefl.evaluation.report import format_table, write_report

    bars: dict[str, Any] = {}
    dp_rows = {contender.name for contender in CONTENDERS if contender.dp != "none"}

    def progress(name: str, seed: int, record: Any) -> None:
        bar = bars.get(name)
        if bar is None:
            for other in bars.values():
                other.close()
            rounds = args.rounds if name not in dp_rows else args.dp_rounds
            bar = bars[name] = tqdm(total=rounds * args.seeds, desc=f"{name:<22}", unit="round",
                                    disable=args.quiet, file=sys.stderr)
        bar.set_postfix(seed=seed, accuracy=f"{record.accuracy:.3f}", refresh=False)
        bar.update(1)

    try:
        comparison = compare(clients=args.clients, rounds=args.rounds, dropout=args.dropout,
                             protocols=args.protocols, seed=args.seed, seeds=args.seeds, epsilon=args.epsilon,
                             delta=args.delta, dp_clients=args.dp_clients, dp_rounds=args.dp_rounds,
                             sample_rate=args.sample_rate,
                             model_parameters=args.model_params, progress=progress, poison=args.poison,
                             boost=args.boost, norm_bound=args.norm_bound)
    finally:
        for bar in bars.values():
            bar.close()
    paths = write_report(comparison, args.out)
    if args.json:
        print(paths["results"].read_text(encoding="utf-8"), end="")
    else:
        print(format_table(comparison))
        print(f"\nreport: {paths['report']}  (results.json and plots beside it)")
    return 0
