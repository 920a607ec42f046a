"""What every ``securefl`` subcommand shares: one-line argparse errors, suggestions, defaults in help, checked types.

* :class:`Parser` -- argparse whose errors are one line ``securefl run: error: ...``
  (exit code 2), with a did-you-mean suggestion for a mistyped option
  (``--protocl`` -> ``--protocol``) or choice (``secagg++`` -> ``secagg+``).
* :class:`HelpFormatter` -- every option's help ends with its default.
* ``positive_int`` ... ``unit_interval`` -- argument types that name the bad value.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "HelpFormatter",
    "suggestion",
    "positive_int",
    "non_negative_int",
    "probability",
    "positive_float",
    "non_negative_float",
    "open_unit",
    "unit_interval",
]


def suggestion(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``word`` (difflib ratio >= 0.6), or None."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after every option's help, unless the help already states its default.

    Flags (``--json``) and required options have none; an option whose
    default is None must say in its help what leaving it out means.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.nargs == 0 or action.required or action.default in (None, argparse.SUPPRESS)
                or "default" in text.lower() or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``securefl run: error: ...``, exit code 2) and did-you-mean suggestions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.suggest_on_error = False  # Python >= 3.14 has its own; ours covers unknown options too

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's, but an unrecognized option is refused by the subcommand that got it, with a suggestion."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._chosen(parsed)
            parser.error(f"unrecognized arguments: {' '.join(extras)}{parser._suggest_options(extras)}")
        return parsed

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        """As argparse's, but an unknown ``--option`` of this parser is refused first, with a suggestion.

        Before any other check, so that a mistyped option is named as such,
        not reported as a missing required one. A parser with subcommands
        checks only the words before the subcommand (the rest is the
        subcommand's parser's).
        """
        words = list(sys.argv[1:] if args is None else args)
        end = words.index("--") if "--" in words else len(words)
        if self._subcommands():
            end = next((i for i, word in enumerate(words[:end]) if not word.startswith("-")), end)
        unknown = self._unknown_options(words[:end])
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}{self._suggest_options(unknown)}")
        return super().parse_known_args(args, namespace)

    def _subcommands(self) -> list[argparse._SubParsersAction[Any]]:
        return [action for action in self._actions if isinstance(action, argparse._SubParsersAction)]

    def _unknown_options(self, words: Sequence[str]) -> list[str]:
        """The ``--name`` words that are neither an option of this parser nor an abbreviation of one."""
        known = list(self._option_string_actions)
        return [word for word in words if word.startswith("--") and len(word) > 2
                and not any(option.startswith(word.split("=", 1)[0]) for option in known)]

    def _chosen(self, namespace: argparse.Namespace) -> Parser:
        """The innermost subcommand's parser that ``namespace`` went through (self without subcommands)."""
        for action in self._subcommands():
            chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
            if isinstance(chosen, Parser):
                return chosen._chosen(namespace)
        return self

    def _suggest_options(self, extras: Sequence[str]) -> str:
        known = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
        unknown = [word.split("=", 1)[0] for word in extras if word.startswith("--") and len(word) > 2]
        hints = {option: match for option in unknown if (match := suggestion(option, known)) is not None}
        if not hints:
            return ""
        if len(unknown) == 1:
            return f"; did you mean {hints[unknown[0]]}?"
        return "; did you mean " + ", ".join(f"{match} (for {option})" for option, match in hints.items()) + "?"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as error:
            match = suggestion(str(value), [str(choice) for choice in action.choices or ()])
            if match is None:
                raise
            raise argparse.ArgumentError(action, f"{error.message}; did you mean {match!r}?") from None


def _number(text: str, what: str, kind: Callable[[str], Any], accept: Callable[[Any], bool]) -> Any:
    """``kind(text)`` when it parses and ``accept`` holds; an argparse error naming ``what`` otherwise."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; found {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {what}; found {value}")
    return value


def _float(text: str, what: str, accept: Callable[[float], bool]) -> float:
    return float(_number(text, what, float, accept))


def positive_int(text: str) -> int:
    return int(_number(text, "a positive integer", int, lambda v: v >= 1))


def non_negative_int(text: str) -> int:
    return int(_number(text, "an integer >= 0", int, lambda v: v >= 0))


def probability(text: str) -> float:
    return _float(text, "a probability in [0, 1)", lambda v: 0.0 <= v < 1.0)


def positive_float(text: str) -> float:
    return _float(text, "a finite number > 0", lambda v: 0 < v < float("inf"))


def non_negative_float(text: str) -> float:
    return _float(text, "a finite number >= 0", lambda v: 0 <= v < float("inf"))


def open_unit(text: str) -> float:
    return _float(text, "a number in (0, 1)", lambda v: 0 < v < 1)


def unit_interval(text: str) -> float:
    return _float(text, "a number in (0, 1]", lambda v: 0 < v <= 1)
