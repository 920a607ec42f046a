"""Argument checks shared by every configuration object: one place, one wording.

Each check returns the value in its canonical Python type (an ``int`` for a
numpy integer, a ``float`` for an int given as a float parameter) or raises
``ConfigurationError`` naming the parameter and echoing what was found, as
in ``"threshold must be a positive integer; found -1"``. A bool is never an
integer here, although Python says it is.
"""

from __future__ import annotations

import math
import numbers

from securefl.errors import ConfigurationError

__all__ = [
    "is_integer",
    "is_number",
    "integer",
    "positive_int",
    "non_negative_int",
    "boolean",
    "finite_float",
    "positive_float",
    "non_negative_float",
    "probability",
    "byte_string",
]


def is_integer(value: object) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    kind = type(value)
    if kind is int:  # the common case, without the abstract-class check (this runs on hot paths)
        return True
    return kind is not bool and isinstance(value, numbers.Integral)


def is_number(value: object) -> bool:
    """True for Python and numpy integers and reals, False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum] (either bound optional)."""
    if not is_integer(value):
        raise ConfigurationError(f"{name} must be an integer; found {value!r}")
    number = int(value)  # type: ignore[call-overload]
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}; found {number}")
    if maximum is not None and number > maximum:
        raise ConfigurationError(f"{name} must be <= {maximum}; found {number}")
    return number


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1."""
    if not is_integer(value) or int(value) < 1:  # type: ignore[call-overload]
        raise ConfigurationError(f"{name} must be a positive integer; found {value!r}")
    return int(value)  # type: ignore[call-overload]


def non_negative_int(value: object, name: str) -> int:
    """``value`` as an int >= 0."""
    if not is_integer(value) or int(value) < 0:  # type: ignore[call-overload]
        raise ConfigurationError(f"{name} must be a non-negative integer; found {value!r}")
    return int(value)  # type: ignore[call-overload]


def boolean(value: object, name: str) -> bool:
    """``value`` itself if it is True or False (no truthiness)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False; found {value!r}")
    return value


def finite_float(value: object, name: str) -> float:
    """``value`` as a finite float (ints accepted, bools not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigurationError(f"{name} must be a finite number; found {value!r}")
    return float(value)


def positive_float(value: object, name: str) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < math.inf:
        raise ConfigurationError(f"{name} must be a positive finite number; found {value!r}")
    return float(value)


def non_negative_float(value: object, name: str) -> float:
    """``value`` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < math.inf:
        raise ConfigurationError(f"{name} must be a non-negative finite number; found {value!r}")
    return float(value)


def probability(value: object, name: str, *, allow_zero: bool = True, allow_one: bool = True) -> float:
    """``value`` as a float in [0, 1]; ``allow_zero`` / ``allow_one`` open either end.

    Every failure (not a number, NaN, outside the interval) names the interval.
    """
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    low_ok = number > 0 or (allow_zero and number == 0)
    high_ok = number < 1 or (allow_one and number == 1)
    if not (low_ok and high_ok):
        interval = ("[" if allow_zero else "(") + "0, 1" + ("]" if allow_one else ")")
        raise ConfigurationError(f"{name} must be a probability in {interval}; found {value!r}")
    return number


def byte_string(value: object, name: str, *, size: int | None = None) -> bytes:
    """``value`` as bytes (exactly ``size`` long when given); bytearray and memoryview are copied."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"{name} must be bytes; found {type(value).__name__}")
    data = bytes(value)
    if size is not None and len(data) != size:
        raise ConfigurationError(f"{name} must be {size} bytes; found {len(data)}")
    return data
