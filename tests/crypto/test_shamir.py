"""securefl.crypto.shamir: known answers, any-t-of-n recovery, t-1 privacy, wire format, errors."""

import itertools
import os
import time
from collections import Counter

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl.crypto import shamir
from securefl.crypto.shamir import PRIME, Share
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort
from tests.vectors import load_vectors

SHAMIR_CASES = load_vectors("shamir")
SPLIT_CASES = [case for case in SHAMIR_CASES if case["kind"] == "split"]
RECONSTRUCT_CASES = [case for case in SHAMIR_CASES if case["kind"] == "reconstruct"]
INVALID_SHARES = [case for case in SHAMIR_CASES if case["kind"] == "invalid_share"]
SECRET = bytes(range(100, 132))


def ids(cases):
    return [case["comment"] for case in cases]


def evaluate_by_hand(coefficients: list[int], x: int, prime: int = PRIME) -> int:
    return sum(c * pow(x, power, prime) for power, c in enumerate(coefficients)) % prime


def interpolate_by_hand(points: list[tuple[int, int]], prime: int = PRIME) -> int:
    total = 0
    for i, (x_i, y_i) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (x_j, _) in enumerate(points):
            if j != i:
                numerator = numerator * x_j % prime
                denominator = denominator * (x_j - x_i) % prime
        total += y_i * numerator * pow(denominator, -1, prime)
    return total % prime


# --- the field -----------------------------------------------------------------


def test_prime_is_the_smallest_prime_above_2_to_256():
    assert PRIME == 2**256 + 297
    assert gmpy2.is_prime(PRIME, 64)
    assert not any(gmpy2.is_prime(2**256 + k) for k in range(1, 297))


# --- known answers -------------------------------------------------------------


@pytest.mark.parametrize("case", SPLIT_CASES, ids=ids(SPLIT_CASES))
def test_split_known_answer(case):
    secret = bytes.fromhex(case["secret"])
    coefficients = [[int(c, 16) for c in chunk] for chunk in case["coefficients"]]

    shares = shamir._share_secrets(
        [secret], threshold=case["threshold"], shares=case["shares"], higher_coefficients=coefficients
    )[0]

    assert [share.to_bytes().hex() for share in shares] == case["expected_shares"]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=ids(SPLIT_CASES))
def test_split_vector_matches_polynomial_evaluated_by_hand(case):
    secret = bytes.fromhex(case["secret"])
    chunks = [int.from_bytes(secret[i : i + 32], "big") for i in range(0, len(secret), 32)]
    coefficients = [[int(c, 16) for c in chunk] for chunk in case["coefficients"]]

    for x, encoded in enumerate(case["expected_shares"], start=1):
        share = Share.from_bytes(bytes.fromhex(encoded))
        assert share.x == x
        assert share.secret_length == len(secret)
        assert list(share.values) == [
            evaluate_by_hand([chunk, *higher], x) for chunk, higher in zip(chunks, coefficients)
        ]


@pytest.mark.parametrize("case", RECONSTRUCT_CASES, ids=ids(RECONSTRUCT_CASES))
def test_reconstruct_known_answer(case):
    shares = [Share.from_bytes(bytes.fromhex(encoded)) for encoded in case["share_set"]]

    assert shamir.reconstruct(shares, threshold=case["threshold"]).hex() == case["secret"]
    chunk_values = [interpolate_by_hand([(s.x, s.values[k]) for s in shares]) for k in range(len(shares[0].values))]
    secret = bytes.fromhex(case["secret"])
    assert chunk_values == [int.from_bytes(secret[i : i + 32], "big") for i in range(0, len(secret), 32)]


@pytest.mark.parametrize("case", INVALID_SHARES, ids=ids(INVALID_SHARES))
def test_invalid_share_bytes_rejected(case):
    with pytest.raises(InvalidMessage):
        Share.from_bytes(bytes.fromhex(case["share"]))


# --- correctness ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shares=st.integers(1, 24), secret=st.binary(min_size=32, max_size=100))
def test_any_threshold_shares_in_any_order_reconstruct(data, shares, secret):
    threshold = data.draw(st.integers(1, shares), label="threshold")
    order = data.draw(st.permutations(range(shares)), label="order")
    extra = data.draw(st.integers(0, shares - threshold), label="extra")
    all_shares = shamir.split(secret, threshold=threshold, shares=shares)

    subset = [all_shares[i] for i in order[: threshold + extra]]

    assert shamir.reconstruct(subset, threshold=threshold) == secret


def test_every_ordered_subset_of_size_t_reconstructs_n5_t3():
    secret = os.urandom(45)
    all_shares = shamir.split(secret, threshold=3, shares=5)

    for subset in itertools.permutations(all_shares, 3):
        assert shamir.reconstruct(subset, threshold=3) == secret


def test_shares_are_numbered_1_to_n_and_carry_length():
    all_shares = shamir.split(os.urandom(70), threshold=2, shares=4)

    assert [share.x for share in all_shares] == [1, 2, 3, 4]
    assert all(share.secret_length == 70 and len(share.values) == 3 for share in all_shares)


def test_threshold_one_shares_equal_the_secret():
    all_shares = shamir.split(SECRET, threshold=1, shares=3)

    assert {share.values for share in all_shares} == {(int.from_bytes(SECRET, "big"),)}


def test_fresh_randomness_every_split():
    first = shamir.split(SECRET, threshold=2, shares=3)
    second = shamir.split(SECRET, threshold=2, shares=3)

    assert first[0].values != second[0].values


@settings(max_examples=20, deadline=None)
@given(
    secrets=st.lists(st.binary(min_size=32, max_size=80), min_size=1, max_size=6),
    shares=st.integers(2, 12),
    data=st.data(),
)
def test_split_many_and_reconstruct_many_round_trip(secrets, shares, data):
    threshold = data.draw(st.integers(1, shares))
    survivors = data.draw(st.permutations(range(shares)))[:threshold]

    shared = shamir.split_many(secrets, threshold=threshold, shares=shares)

    assert len(shared) == len(secrets) and all(len(row) == shares for row in shared)
    share_lists = [[row[i] for i in survivors] for row in shared]
    assert shamir.reconstruct_many(share_lists, threshold=threshold) == secrets
    assert [shamir.reconstruct(share_list, threshold=threshold) for share_list in share_lists] == secrets


def test_reconstruct_many_with_different_survivor_sets():
    secrets = [os.urandom(32), os.urandom(40), os.urandom(32)]
    shared = shamir.split_many(secrets, threshold=3, shares=6)

    share_lists = [shared[0][:3], shared[1][3:], shared[2][1:4]]

    assert shamir.reconstruct_many(share_lists, threshold=3) == secrets
    assert shamir.reconstruct_many([], threshold=3) == []


@settings(max_examples=40, deadline=None)
@given(
    prime=st.sampled_from([11, 65537, PRIME]),
    count=st.integers(1, 5),
    terms=st.integers(1, 6),
    data=st.data(),
)
def test_both_packed_evaluation_strategies_match_hand_evaluation(prime, count, terms, data):
    shares = data.draw(st.integers(1, min(prime - 1, 12)))
    polynomials = [
        data.draw(st.lists(st.integers(0, prime - 1), min_size=terms, max_size=terms)) for _ in range(count)
    ]
    expected = [[evaluate_by_hand(poly, x, prime) for poly in polynomials] for x in range(1, shares + 1)]

    assert shamir._evaluate_by_horner(polynomials, shares, prime) == expected
    assert shamir._evaluate_by_table(polynomials, shares, prime) == expected
    assert shamir._evaluate(polynomials, shares, prime) == expected


@pytest.mark.parametrize("strategy", ["_evaluate_by_horner", "_evaluate_by_table"])
def test_packed_slots_do_not_overflow_at_worst_case(strategy):
    """All coefficients p - 1 at the largest x: the slot-width bound is tight-ish here."""
    polynomials = [[PRIME - 1] * 7, [PRIME - 1] * 7]

    rows = getattr(shamir, strategy)(polynomials, 1000, PRIME)

    for x in (1, 2, 999, 1000):
        assert rows[x - 1] == [evaluate_by_hand(polynomials[0], x)] * 2


@settings(max_examples=40, deadline=None)
@given(xs=st.lists(st.integers(1, 65535), min_size=1, max_size=12, unique=True))
def test_lagrange_coefficients_match_slow_reference(xs):
    coefficients = shamir.lagrange_coefficients(xs)

    for i, coefficient in enumerate(coefficients):
        unit = [(x, 1 if j == i else 0) for j, x in enumerate(xs)]
        assert coefficient == interpolate_by_hand(unit)
    assert sum(coefficients) % PRIME == 1  # interpolating the constant 1


def test_lagrange_cache_is_not_mutable_from_outside():
    first = shamir.lagrange_coefficients([1, 2, 3])
    first[0] = 0

    assert shamir.lagrange_coefficients([1, 2, 3])[0] == 3


@settings(max_examples=40, deadline=None)
@given(
    prime=st.sampled_from([11, 13, 257, 65537, PRIME]),
    values=st.lists(st.integers(0, 10), min_size=1, max_size=5),
    data=st.data(),
)
def test_split_elements_round_trip_small_fields(prime, values, data):
    shares = data.draw(st.integers(1, min(prime - 1, 10)))
    threshold = data.draw(st.integers(1, shares))
    survivors = sorted(data.draw(st.permutations(range(1, shares + 1)))[:threshold])

    rows = shamir.split_elements(values, threshold=threshold, shares=shares, prime=prime)

    assert len(rows) == shares and all(len(row) == len(values) for row in rows)
    chosen = [rows[x - 1] for x in survivors]
    assert shamir.reconstruct_elements(survivors, chosen, prime=prime) == values


# --- privacy: any t-1 shares say nothing about the secret ------------------------


def test_t_minus_1_shares_are_a_bijection_of_the_coefficients_exhaustive():
    """Over F_11 with t=3, for every secret and every pair of points, the map from the
    random coefficients (a1, a2) to the two shares is a bijection onto F_11^2:
    the t-1 shares are exactly uniform and independent of the secret."""
    prime, threshold = 11, 3
    coefficients = [[a1, a2] for a1 in range(prime) for a2 in range(prime)]
    for secret in range(prime):
        rows = shamir._split_elements_with([secret] * len(coefficients), coefficients, prime - 1, prime)
        for x1, x2 in itertools.combinations(range(1, prime), threshold - 1):
            seen = {(rows[x1 - 1][k], rows[x2 - 1][k]) for k in range(len(coefficients))}
            assert len(seen) == prime * prime, (secret, x1, x2)


@pytest.mark.parametrize("points", [(1, 2), (2, 5)])
def test_t_minus_1_shares_uniform_and_secret_independent_chi_square(points):
    """Sampling check of the real CSPRNG path over F_13, t=3: the joint distribution of
    two shares is uniform on F_13^2 and the same for secrets 0 and 7."""
    prime, samples = 13, 13 * 13 * 60
    tables = []
    for secret in (0, 7):
        rows = shamir.split_elements([secret] * samples, threshold=3, shares=5, prime=prime)
        cells = np.array(rows[points[0] - 1]) * prime + np.array(rows[points[1] - 1])
        counts = np.bincount(cells, minlength=prime * prime)
        assert stats.chisquare(counts).pvalue > 1e-6
        tables.append(counts)

    assert stats.chi2_contingency(np.array(tables)).pvalue > 1e-6


def test_coefficient_sampling_uniform_over_small_field():
    draws = shamir._random_field_elements(11 * 2000, 11)

    counts = [Counter(draws)[v] for v in range(11)]

    assert stats.chisquare(counts).pvalue > 1e-6


# --- wire format ---------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    x=st.integers(1, 65535),
    secret_length=st.integers(32, 200),
    data=st.data(),
)
def test_share_bytes_round_trip(x, secret_length, data):
    count = -(-secret_length // 32)
    values = tuple(data.draw(st.lists(st.integers(0, PRIME - 1), min_size=count, max_size=count)))
    share = Share(x=x, secret_length=secret_length, values=values)

    encoded = share.to_bytes()

    assert len(encoded) == 4 + 33 * count
    assert Share.from_bytes(encoded) == share


def test_share_repr_hides_values():
    share = shamir.split(SECRET, threshold=2, shares=2)[0]

    assert str(share.values[0]) not in repr(share)
    assert "x=1" in repr(share)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(x=0, secret_length=32, values=(1,)), "x must be"),
        (dict(x=65536, secret_length=32, values=(1,)), "x must be"),
        (dict(x=True, secret_length=32, values=(1,)), "x must be"),
        (dict(x=1, secret_length=31, values=(1,)), "found 31"),
        (dict(x=1, secret_length=33, values=(1,)), "needs 2 values; found 1"),
        (dict(x=1, secret_length=32, values=[1]), "must be a tuple"),
        (dict(x=1, secret_length=32, values=(PRIME,)), "not a field element"),
        (dict(x=1, secret_length=32, values=(-1,)), "not a field element"),
    ],
)
def test_share_constructor_validates(fields, message):
    with pytest.raises(InvalidMessage, match=message):
        Share(**fields)


def test_share_constructor_stores_numpy_integers_as_ints():
    share = shamir.split(SECRET, threshold=2, shares=2)[0]
    rebuilt = Share(x=np.uint16(share.x), secret_length=np.int64(share.secret_length), values=share.values)
    from_numpy = Share(x=np.int32(1), secret_length=np.int64(32), values=(np.int64(5),))

    assert rebuilt == share
    assert all(type(field) is int for field in (from_numpy.x, from_numpy.secret_length, *from_numpy.values))
    assert Share.from_bytes(from_numpy.to_bytes()) == from_numpy


def test_numpy_parameters_and_elements_are_accepted():
    rows = shamir.split_elements([np.int64(7)], threshold=np.int64(2), shares=np.uint8(3), prime=np.int64(11))
    xs = [np.int64(1), np.int64(3)]

    assert shamir.reconstruct_elements(xs, [rows[0], rows[2]], prime=11) == [7]
    assert shamir.reconstruct_elements(xs, [np.array(rows[0]), np.array(rows[2])], prime=11) == [7]


@pytest.mark.parametrize("data", ["00", 5, None])
def test_share_from_non_bytes_rejected(data):
    with pytest.raises(InvalidMessage, match="share must be bytes"):
        Share.from_bytes(data)


# --- errors --------------------------------------------------------------------


def test_duplicate_x_rejected():
    all_shares = shamir.split(SECRET, threshold=2, shares=3)

    with pytest.raises(InvalidMessage, match="duplicate share x=2"):
        shamir.reconstruct([all_shares[1], all_shares[1]], threshold=2)
    with pytest.raises(InvalidMessage, match="duplicate share x=3"):
        shamir.lagrange_coefficients([3, 1, 3])


def test_too_few_shares_abort():
    all_shares = shamir.split(SECRET, threshold=3, shares=5)

    with pytest.raises(ProtocolAbort, match="need 3 shares, got 2"):
        shamir.reconstruct(all_shares[:2], threshold=3)
    with pytest.raises(ProtocolAbort, match="need 3 shares, got 0"):
        shamir.reconstruct([], threshold=3)


def test_mixed_secret_lengths_rejected():
    short = shamir.split(os.urandom(32), threshold=2, shares=2)
    long = shamir.split(os.urandom(64), threshold=2, shares=2)

    with pytest.raises(InvalidMessage, match="64-byte secret; expected 32"):
        shamir.reconstruct([short[0], long[1]], threshold=2)


def test_non_share_inputs_rejected():
    with pytest.raises(InvalidMessage, match="found bytes"):
        shamir.reconstruct([b"\x00" * 37], threshold=1)
    with pytest.raises(InvalidMessage, match="sequence of shares"):
        shamir.reconstruct(shamir.split(SECRET, threshold=1, shares=1)[0], threshold=1)


def test_inconsistent_shares_detected_when_chunk_overflows():
    all_shares = shamir.split(os.urandom(33), threshold=2, shares=2)  # last chunk is 1 byte
    first, second = all_shares[1].values
    tampered = Share(x=2, secret_length=33, values=(first, (second + 2**100) % PRIME))

    with pytest.raises(InvalidMessage, match="inconsistent"):
        shamir.reconstruct([all_shares[0], tampered], threshold=2)


def test_tampered_full_chunk_share_gives_wrong_secret_silently():
    """Documents the threat model: Shamir shares are not authenticated (carry them in AEAD)."""
    all_shares = shamir.split(SECRET, threshold=2, shares=2)
    tampered = Share(x=2, secret_length=32, values=((all_shares[1].values[0] + 1) % PRIME,))

    assert shamir.reconstruct([all_shares[0], tampered], threshold=2) != SECRET


@pytest.mark.parametrize(
    "threshold, shares, message",
    [
        (0, 3, "threshold must be"),
        (-1, 3, "threshold must be"),
        (4, 3, "found 3"),
        (2, 65536, "found 65536"),
        (1.5, 3, "threshold must be"),
        (True, 3, "threshold must be"),
    ],
)
def test_bad_parameters_refused(threshold, shares, message):
    with pytest.raises(ConfigurationError, match=message):
        shamir.split(SECRET, threshold=threshold, shares=shares)


@pytest.mark.parametrize("length", [0, 16, 31, 65536])
def test_bad_secret_length_refused(length):
    with pytest.raises(ConfigurationError, match=f"found {length}"):
        shamir.split(bytes(length), threshold=1, shares=1)


def test_bad_secret_type_refused():
    with pytest.raises(ConfigurationError, match="found str"):
        shamir.split("x" * 32, threshold=1, shares=1)
    with pytest.raises(ConfigurationError, match="sequence of secrets"):
        shamir.split_many(SECRET, threshold=1, shares=1)


def test_reconstruct_threshold_checked():
    with pytest.raises(ConfigurationError, match="found 0"):
        shamir.reconstruct(shamir.split(SECRET, threshold=1, shares=1), threshold=0)


def test_small_field_parameter_checks():
    with pytest.raises(ConfigurationError, match="below the prime"):
        shamir.split_elements([1], threshold=2, shares=11, prime=11)
    with pytest.raises(ConfigurationError, match="odd prime; found 12"):
        shamir.split_elements([1], threshold=2, shares=3, prime=12)
    with pytest.raises(ConfigurationError, match=r"\[0, 11\); found 11"):
        shamir.split_elements([11], threshold=2, shares=3, prime=11)
    with pytest.raises(InvalidMessage, match="1..10; found 11"):
        shamir.lagrange_coefficients([1, 11], prime=11)
    with pytest.raises(InvalidMessage, match="found 0"):
        shamir.lagrange_coefficients([0, 1])
    with pytest.raises(InvalidMessage, match="2 points but 1 rows"):
        shamir.reconstruct_elements([1, 2], [[3]], prime=11)
    with pytest.raises(InvalidMessage, match="not a field element below 11"):
        shamir.reconstruct_elements([1, 2], [[3], [11]], prime=11)


def test_injected_coefficients_checked():
    with pytest.raises(ConfigurationError, match="need 1 lists of 1 field elements"):
        shamir._share_secrets([SECRET], threshold=2, shares=2, higher_coefficients=[[PRIME]])


# --- speed (a loose regression guard; benchmarks/shamir.py measures properly) ----


def test_n100_t51_split_and_reconstruct_fast():
    secret = os.urandom(32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        all_shares = shamir.split(secret, threshold=51, shares=100)
        shamir._lagrange_at_zero.cache_clear()
        recovered = shamir.reconstruct(all_shares[49:], threshold=51)
        best = min(best, time.perf_counter() - start)
        assert recovered == secret

    assert best < 0.05  # target is well under 10 ms; generous for a shared CI box
