"""The shared argument checks: what each accepts, its canonical return type, and the wording of each refusal."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from securefl import validation
from securefl.errors import ConfigurationError

NOT_NUMBERS = [None, "1", b"1", [1], 1j]


# -- predicates -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, 2**100, np.int8(1), np.uint64(2**64 - 1), np.int64(-5)])
def test_is_integer_accepts_python_and_numpy_integers(value: object) -> None:
    assert validation.is_integer(value)


@pytest.mark.parametrize("value", [True, False, np.True_, 1.0, np.float64(2.0), Fraction(2), "1", None])
def test_is_integer_refuses_bools_floats_and_the_rest(value: object) -> None:
    assert not validation.is_integer(value)


@pytest.mark.parametrize("value", [0, 1.5, -math.inf, math.nan, np.float32(0.5), np.int64(3), Fraction(1, 3)])
def test_is_number_accepts_reals(value: object) -> None:
    assert validation.is_number(value)


@pytest.mark.parametrize("value", [True, np.True_, *NOT_NUMBERS])
def test_is_number_refuses_bools_and_non_reals(value: object) -> None:
    assert not validation.is_number(value)


# -- integers ---------------------------------------------------------------------------


@given(st.integers())
def test_integer_returns_every_int_unchanged(value: int) -> None:
    assert validation.integer(value, "n") == value


def test_integer_canonicalises_numpy_integers() -> None:
    result = validation.integer(np.uint16(7), "n")
    assert result == 7 and type(result) is int


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (True, {}, "n must be an integer; found True"),
        (1.0, {}, "n must be an integer; found 1.0"),
        ("3", {}, "n must be an integer; found '3'"),
        (-1, {"minimum": 0}, "n must be >= 0; found -1"),
        (2**64, {"minimum": 0, "maximum": 2**64 - 1}, f"n must be <= {2**64 - 1}; found {2**64}"),
    ],
)
def test_integer_refusals_name_the_parameter_and_echo_the_value(value: object, bounds: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.integer(value, "n", **bounds)
    assert str(caught.value) == message


def test_integer_bounds_are_inclusive() -> None:
    assert validation.integer(0, "n", minimum=0, maximum=0) == 0
    assert validation.integer(2**64 - 1, "round", minimum=0, maximum=2**64 - 1) == 2**64 - 1


@pytest.mark.parametrize("value", [1, 2**70, np.int32(5)])
def test_positive_int_accepts_one_and_above(value: object) -> None:
    result = validation.positive_int(value, "clients")
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize("value", [0, -1, True, 1.0, np.float64(3.0), None])
def test_positive_int_refuses(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.positive_int(value, "clients")
    assert str(caught.value) == f"clients must be a positive integer; found {value!r}"


@pytest.mark.parametrize("value", [0, 1, np.uint8(0)])
def test_non_negative_int_accepts_zero_and_above(value: object) -> None:
    assert type(validation.non_negative_int(value, "seed")) is int


@pytest.mark.parametrize("value", [-1, False, 0.0, "0"])
def test_non_negative_int_refuses(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.non_negative_int(value, "seed")
    assert str(caught.value) == f"seed must be a non-negative integer; found {value!r}"


# -- booleans ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_boolean_returns_the_bool(value: bool) -> None:
    assert validation.boolean(value, "strict") is value


@pytest.mark.parametrize("value", [0, 1, "True", None, np.True_])
def test_boolean_refuses_truthy_and_falsy_stand_ins(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.boolean(value, "strict")
    assert str(caught.value) == f"strict must be True or False; found {value!r}"


# -- floats -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -2, 1.5, np.float32(0.25), np.int64(4), Fraction(1, 4)])
def test_finite_float_returns_a_float(value: object) -> None:
    result = validation.finite_float(value, "lr")
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, *NOT_NUMBERS])
def test_finite_float_refuses(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.finite_float(value, "lr")
    assert str(caught.value) == f"lr must be a finite number; found {value!r}"


@pytest.mark.parametrize("value", [1e-300, 1, 3.5, np.float64(2.0)])
def test_positive_float_accepts_above_zero(value: object) -> None:
    assert type(validation.positive_float(value, "clip")) is float


@pytest.mark.parametrize("value", [0, 0.0, -1e-300, math.inf, math.nan, True, None])
def test_positive_float_refuses(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.positive_float(value, "clip")
    assert str(caught.value) == f"clip must be a positive finite number; found {value!r}"


@pytest.mark.parametrize("value", [0, 0.0, 2.5, np.int64(3)])
def test_non_negative_float_accepts_zero_and_above(value: object) -> None:
    assert type(validation.non_negative_float(value, "noise_multiplier")) is float


@pytest.mark.parametrize("value", [-1.0, -1e-300, math.inf, math.nan, False, "0"])
def test_non_negative_float_refuses(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.non_negative_float(value, "noise_multiplier")
    assert str(caught.value) == f"noise_multiplier must be a non-negative finite number; found {value!r}"


# -- probabilities ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow_zero", "allow_one", "interval"),
    [(True, True, "[0, 1]"), (False, True, "(0, 1]"), (True, False, "[0, 1)"), (False, False, "(0, 1)")],
)
def test_probability_ends_open_and_close_as_asked(allow_zero: bool, allow_one: bool, interval: str) -> None:
    assert validation.probability(0.5, "q", allow_zero=allow_zero, allow_one=allow_one) == 0.5
    for end, allowed in ((0, allow_zero), (1, allow_one)):
        if allowed:
            assert validation.probability(end, "q", allow_zero=allow_zero, allow_one=allow_one) == float(end)
        else:
            with pytest.raises(ConfigurationError) as caught:
                validation.probability(end, "q", allow_zero=allow_zero, allow_one=allow_one)
            assert str(caught.value) == f"q must be a probability in {interval}; found {end!r}"


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf, True, None, "0.5"])
def test_every_refused_probability_names_the_interval(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.probability(value, "delta", allow_zero=False, allow_one=False)
    assert str(caught.value) == f"delta must be a probability in (0, 1); found {value!r}"


def test_probability_returns_a_float() -> None:
    result = validation.probability(np.float32(0.5), "q")
    assert result == 0.5 and type(result) is float


# -- bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"\x00" * 32, bytearray(32), memoryview(bytes(32))])
def test_byte_string_copies_bytes_like_values_to_bytes(value: object) -> None:
    result = validation.byte_string(value, "session", size=32)
    assert result == bytes(32) and type(result) is bytes


def test_byte_string_copy_does_not_follow_the_source() -> None:
    source = bytearray(4)
    copied = validation.byte_string(source, "session")
    source[0] = 1
    assert copied == bytes(4)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_byte_string_refuses_wrong_lengths_on_both_sides(length: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.byte_string(bytes(length), "session", size=32)
    assert str(caught.value) == f"session must be 32 bytes; found {length}"


@pytest.mark.parametrize("value", ["abc", 32, None, [0] * 32, np.zeros(32, dtype=np.uint8)])
def test_byte_string_refuses_non_bytes(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validation.byte_string(value, "session")
    assert str(caught.value) == f"session must be bytes; found {type(value).__name__}"


def test_any_length_is_accepted_without_a_size() -> None:
    assert validation.byte_string(b"", "label") == b""
