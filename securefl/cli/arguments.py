"""What every ``securefl`` subcommand shares: one-line argparse errors and checked argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

__all__ = [
    "Parser",
    "positive_int",
    "non_negative_int",
    "probability",
    "positive_float",
    "non_negative_float",
    "open_unit",
    "unit_interval",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `securefl run: error: ...` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; found {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; found {value}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1); found {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1); found {value}")
    return value


def _float(text: str, what: str, accept: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; found {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {what}; found {value}")
    return value


def positive_float(text: str) -> float:
    return _float(text, "a finite number > 0", lambda v: 0 < v < float("inf"))


def non_negative_float(text: str) -> float:
    return _float(text, "a finite number >= 0", lambda v: 0 <= v < float("inf"))


def open_unit(text: str) -> float:
    return _float(text, "a number in (0, 1)", lambda v: 0 < v < 1)


def unit_interval(text: str) -> float:
    return _float(text, "a number in (0, 1]", lambda v: 0 < v <= 1)
