"""The ``securefl`` command: run a federation, compare the protocols, and the privacy tools.

    securefl run --protocol secret-sharing --clients 10 --rounds 20 [--json]
    securefl compare [--json]
    securefl epsilon ... | securefl calibrate ...
    securefl --version

Each subcommand lives in its own module (``run``, ``compare``, ``privacy``)
and registers itself on the parser; a subcommand may set ``validate`` (checks
of the whole configuration, run before any work). A bad value is one line
``securefl <command>: error: ...`` on stderr and exit code 2, with a
did-you-mean suggestion for a mistyped option or choice. Every ``--json``
output follows the convention of :mod:`securefl.jsonout`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from securefl import __version__
from securefl.cli import compare, privacy, run
from securefl.cli.arguments import Parser
from securefl.errors import SecureFLError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``securefl`` parser with every subcommand."""
    parser = Parser(prog="securefl", description="Privacy-preserving federated learning.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    run.register(subparsers)
    compare.register(subparsers)
    privacy.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), check it, and run the subcommand; its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validate = getattr(args, "validate", None)
        if validate is not None:
            validate(args)
        return int(args.func(args))
    except SecureFLError as error:
        print(f"securefl {args.command}: error: {error}", file=sys.stderr)
        return 2
