"""``securefl compare``: every protocol side by side, written to a report folder.

    securefl compare [--clients 10] [--rounds 20] [--protocols plaintext,secagg] [--out securefl-report] [--json]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from securefl.cli.arguments import non_negative_int, open_unit, positive_float, positive_int, probability

__all__ = ["register", "run_compare"]


def _protocol_list(text: str) -> list[str]:
    from securefl.evaluation.compare import contender_names

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in contender_names()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown protocol(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(contender_names())}"
        )
    return names


def register(subparsers: Any) -> None:
    """Add ``compare`` to an ``add_subparsers()`` object."""
    compare = subparsers.add_parser(
        "compare", help="every protocol side by side: accuracy, epsilon, overhead and a privacy probe"
    )
    compare.add_argument("--clients", type=positive_int, default=10)
    compare.add_argument("--rounds", type=positive_int, default=20)
    compare.add_argument("--dropout", type=probability, default=0.0)
    compare.add_argument("--protocols", type=_protocol_list, default=None,
                         help="comma-separated subset (default: all)")
    compare.add_argument("--epsilon", type=positive_float, default=8.0, help="target epsilon of the DP rows")
    compare.add_argument("--delta", type=open_unit, default=1e-5)
    compare.add_argument("--out", default="securefl-report", help="report folder (default ./securefl-report)")
    compare.add_argument("--seed", type=non_negative_int, default=0,
                         help="seed shared by every contender: identical splits, sampling and dropouts (default 0)")
    compare.add_argument("--json", action="store_true", help="print results.json to stdout")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Run the comparison, write the report, print the table (or results.json); 0 on success."""
    from tqdm import tqdm

    from securefl.evaluation.compare import compare
    from securefl.evaluation.report import format_table, write_report

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

    try:
        comparison = compare(clients=args.clients, rounds=args.rounds, dropout=args.dropout,
                             protocols=args.protocols, seed=args.seed, epsilon=args.epsilon,
                             delta=args.delta, progress=progress)
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
