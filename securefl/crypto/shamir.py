"""t-of-n Shamir secret sharing of byte strings over the prime field F_p, p = 2^256 + 297.

A secret of L >= 32 bytes is cut into ceil(L/32) big-endian chunks; chunk c
(an integer < 2^256 < p) becomes the constant term of a fresh polynomial

    f_c(X) = c + a_1 X + ... + a_{t-1} X^{t-1}   (mod p),  a_j uniform in F_p,

and share x (x = 1..n) holds (x, L, f_c(x) for every chunk). Any t shares give
f_c(0) = sum_i lambda_i f_c(x_i) with the Lagrange coefficients at zero
lambda_i = prod_{j != i} x_j / (x_j - x_i); any t-1 shares are jointly uniform
and independent of the secret (Shamir 1979, "How to share a secret").

p = 2^256 + 297 is the smallest prime above 2^256, so every 32-byte chunk is a
field element and the code is injective. Threat model: shares are *not*
authenticated -- a wrong share silently yields a wrong secret. Protocols must
carry shares inside AEAD (``securefl.crypto.aead``) and check what the secret
is used for (e.g. re-derive a public key).

Speed: evaluation uses Kronecker substitution on gmpy2 integers -- many field
values side by side in fixed-width slots of one big integer, wide enough that no
carry crosses a slot, reduced mod p only at the end. Few polynomials: a cached
table of packed powers x^j for all x, so f(1..n) = sum_j c_j P_j in t steps.
Many polynomials: their j-th coefficients packed together and Horner's rule per x.
Lagrange coefficients use one modular inversion per x-set (Montgomery's batch
inversion) and are cached per x-set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gmpy2
from gmpy2 import mpz

from securefl import validation
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort

__all__ = [
    "PRIME",
    "CHUNK_BYTES",
    "ELEMENT_BYTES",
    "MIN_SECRET_BYTES",
    "MAX_SECRET_BYTES",
    "MAX_SHARES",
    "Share",
    "split",
    "split_many",
    "split_many_encoded",
    "reconstruct",
    "reconstruct_many",
    "split_elements",
    "reconstruct_elements",
    "lagrange_coefficients",
]

PRIME = 2**256 + 297
"""The field modulus: the smallest prime above 2^256 (checked by gmpy2.is_prime in the tests)."""
CHUNK_BYTES = 32
"""Secret bytes per field element."""
ELEMENT_BYTES = 33
"""Bytes per field element on the wire (big-endian, fixed width; p > 2^256)."""
MIN_SECRET_BYTES = 32
MAX_SECRET_BYTES = 65535
MAX_SHARES = 65535
_HEADER_BYTES = 4  # 2-byte x, 2-byte secret length
_EXTRA_SAMPLE_BYTES = 32  # reduce a value 256 bits wider than p: statistical distance < 2^-256
_ONE_CHUNK_SHARE_BYTES = _HEADER_BYTES + ELEMENT_BYTES  # the encoding of a share of a 32-byte secret
_ONE_CHUNK_LENGTH = CHUNK_BYTES.to_bytes(2, "big")


def _element_count(secret_length: int) -> int:
    return -(-secret_length // CHUNK_BYTES)


def _chunk_lengths(secret_length: int) -> list[int]:
    full, rest = divmod(secret_length, CHUNK_BYTES)
    return [CHUNK_BYTES] * full + ([rest] if rest else [])


@dataclass(frozen=True, repr=False, slots=True)
class Share:
    """One party's share of a byte secret: the point x and f_c(x) for every 32-byte chunk c.

    Wire form (``to_bytes``): x (2 bytes) || secret_length (2 bytes) || each value
    in 33 bytes, all big-endian; 4 + 33 * ceil(L / 32) bytes in all.
    """

    x: int
    secret_length: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not validation.is_integer(self.x) or not 1 <= self.x <= MAX_SHARES:
            raise InvalidMessage(f"share x must be an integer in 1..{MAX_SHARES}; found {self.x!r}")
        length = self.secret_length
        if not validation.is_integer(length) or not MIN_SECRET_BYTES <= length <= MAX_SECRET_BYTES:
            raise InvalidMessage(
                f"share secret_length must be in {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES}; "
                f"found {self.secret_length!r}"
            )
        if not isinstance(self.values, tuple):
            raise InvalidMessage(f"share values must be a tuple; found {type(self.values).__name__}")
        expected = _element_count(self.secret_length)
        if len(self.values) != expected:
            raise InvalidMessage(
                f"share for a {self.secret_length}-byte secret needs {expected} values; "
                f"found {len(self.values)}"
            )
        for index, value in enumerate(self.values):
            if not validation.is_integer(value) or not 0 <= value < PRIME:
                raise InvalidMessage(f"share value {index} is not a field element below p")
        # numpy integers become ints: the wire codec and field arithmetic need Python ints
        object.__setattr__(self, "x", int(self.x))
        object.__setattr__(self, "secret_length", int(self.secret_length))
        object.__setattr__(self, "values", tuple(int(value) for value in self.values))

    def __repr__(self) -> str:  # never print share values
        return f"Share(x={self.x}, secret_length={self.secret_length}, values=<{len(self.values)} hidden>)"

    def to_bytes(self) -> bytes:
        """Canonical fixed-width encoding (see the class docstring)."""
        header = self.x.to_bytes(2, "big") + self.secret_length.to_bytes(2, "big")
        values = self.values
        if len(values) == 1:  # a secret of one chunk (a 32-byte key or seed): no join
            return header + int(values[0]).to_bytes(ELEMENT_BYTES, "big")
        return header + b"".join([int(value).to_bytes(ELEMENT_BYTES, "big") for value in values])

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse and validate a share; any malformed field raises ``InvalidMessage``."""
        if type(data) is bytes and len(data) == _ONE_CHUNK_SHARE_BYTES:  # a share of a 32-byte secret (a key)
            x = int.from_bytes(data[0:2], "big")
            value = int.from_bytes(data[_HEADER_BYTES:], "big")
            if x and data[2:4] == _ONE_CHUNK_LENGTH and value < PRIME:
                return _trusted_share(x, CHUNK_BYTES, (value,))
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidMessage(f"share must be bytes; found {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER_BYTES:
            raise InvalidMessage(f"share of {len(data)} bytes is shorter than its {_HEADER_BYTES}-byte header")
        x = int.from_bytes(data[0:2], "big")
        secret_length = int.from_bytes(data[2:4], "big")
        if x == 0:
            raise InvalidMessage("share x=0 is not an evaluation point; x must be in 1..65535")
        if not MIN_SECRET_BYTES <= secret_length <= MAX_SECRET_BYTES:
            raise InvalidMessage(
                f"share claims a {secret_length}-byte secret; secrets have {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes"
            )
        count = _element_count(secret_length)
        expected = _HEADER_BYTES + ELEMENT_BYTES * count
        if len(data) != expected:
            raise InvalidMessage(
                f"share for a {secret_length}-byte secret must be {expected} bytes; found {len(data)}"
            )
        values = tuple(
            int.from_bytes(data[offset : offset + ELEMENT_BYTES], "big")
            for offset in range(_HEADER_BYTES, expected, ELEMENT_BYTES)
        )
        for index, value in enumerate(values):
            if value >= PRIME:
                raise InvalidMessage(f"share value {index} is not below the field prime")
        return _trusted_share(x, secret_length, values)  # every field was checked above


def _trusted_share(x: int, secret_length: int, values: tuple[int, ...]) -> Share:
    """A Share built from values this module just computed: skips re-validation (a hot path)."""
    share = object.__new__(Share)
    object.__setattr__(share, "x", x)
    object.__setattr__(share, "secret_length", secret_length)
    object.__setattr__(share, "values", values)
    return share


# ---------------------------------------------------------------------------
# parameter checks


def _check_prime(prime: int) -> int:
    if not validation.is_integer(prime) or prime < 3 or not _is_prime(int(prime)):
        raise ConfigurationError(f"prime must be an odd prime; found {prime!r}")
    return int(prime)


@lru_cache(maxsize=16)
def _is_prime(candidate: int) -> bool:
    return bool(gmpy2.is_prime(candidate, 64))


def _check_threshold(threshold: int) -> int:
    return validation.integer(threshold, "threshold", minimum=1, maximum=MAX_SHARES)


def _check_parameters(threshold: int, shares: int, prime: int) -> tuple[int, int]:
    """``(threshold, shares)`` as ints, with 1 <= threshold <= shares < prime."""
    threshold = _check_threshold(threshold)
    if not validation.is_integer(shares) or not threshold <= shares <= MAX_SHARES:
        raise ConfigurationError(
            f"shares must be an integer with threshold ({threshold}) <= shares <= {MAX_SHARES}; "
            f"found {shares!r}"
        )
    if shares >= prime:
        raise ConfigurationError(f"shares ({shares}) must be below the prime ({prime}): x runs over 1..shares")
    return threshold, int(shares)


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, (bytes, bytearray)):
        raise ConfigurationError(f"secret must be bytes; found {type(secret).__name__}")
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise ConfigurationError(
            f"secret must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes; found {len(secret)}"
        )


# ---------------------------------------------------------------------------
# field-level core


def _random_field_elements(count: int, prime: int) -> list[int]:
    """``count`` elements of F_p from the OS CSPRNG (bias < 2^-256 by reducing a wider value)."""
    width = (prime.bit_length() + 7) // 8 + _EXTRA_SAMPLE_BYTES
    raw = os.urandom(width * count)
    return [int.from_bytes(raw[offset : offset + width], "big") % prime for offset in range(0, width * count, width)]


def _slot_bytes(terms: int, shares: int, prime: int) -> int:
    """Bytes per packed slot: any sum_j c_j x^j with c_j < p, x <= shares, j < terms fits."""
    # (p - 1) * sum_{j < t} x^j <= (p - 1) * t * x^(t-1)
    return (prime.bit_length() + terms.bit_length() + (terms - 1) * shares.bit_length() + 1 + 7) // 8


def _unpack(packed: mpz, slots: int, slot_bytes: int, prime: int) -> list[int]:
    raw = packed.to_bytes(slots * slot_bytes, "little")
    return [
        int.from_bytes(raw[offset : offset + slot_bytes], "little") % prime for offset in range(0, len(raw), slot_bytes)
    ]


def _evaluate_by_horner(polynomials: Sequence[Sequence[int]], shares: int, prime: int) -> list[list[int]]:
    """Pack across polynomials: C_j holds the j-th coefficient of every polynomial in its
    own slot, and Horner's rule with a small integer x evaluates all of them at x at once
    (n * t big-integer steps)."""
    terms = len(polynomials[0])
    slot_bytes = _slot_bytes(terms, shares, prime)
    packed = [
        mpz.from_bytes(b"".join([poly[j].to_bytes(slot_bytes, "little") for poly in polynomials]), "little")
        for j in reversed(range(terms))
    ]
    leading, rest = packed[0], packed[1:]
    rows = []
    for x in range(1, shares + 1):
        x = mpz(x)
        accumulator = leading
        for coefficient in rest:
            accumulator = accumulator * x + coefficient
        rows.append(_unpack(accumulator, len(polynomials), slot_bytes, prime))
    return rows


@lru_cache(maxsize=4)
def _power_table(terms: int, shares: int, slot_bytes: int) -> tuple[mpz, ...]:
    """P_j = sum_x x^j 2^(8 * slot_bytes * (x - 1)) for j < terms: every x's powers side by side."""
    table = []
    powers = [1] * shares
    for _ in range(terms):
        table.append(mpz.from_bytes(b"".join([power.to_bytes(slot_bytes, "little") for power in powers]), "little"))
        powers = [power * x for power, x in zip(powers, range(1, shares + 1))]
    return tuple(table)


def _evaluate_by_table(polynomials: Sequence[Sequence[int]], shares: int, prime: int) -> list[list[int]]:
    """Pack across evaluation points: sum_j c_j P_j holds f(x) in slot x for every x at
    once (m * t big-integer steps; the table of powers is cached per (n, t))."""
    terms = len(polynomials[0])
    slot_bytes = _slot_bytes(terms, shares, prime)
    table = _power_table(terms, shares, slot_bytes)
    columns = []
    for poly in polynomials:
        accumulator = mpz(0)
        for coefficient, powers in zip(poly, table):
            accumulator = gmpy2.fma(coefficient, powers, accumulator)
        columns.append(_unpack(accumulator, shares, slot_bytes, prime))
    return [list(row) for row in zip(*columns)]


_POWER_TABLE_BUDGET = 1 << 24  # bytes a cached power table may take


def _evaluate(polynomials: Sequence[Sequence[int]], shares: int, prime: int) -> list[list[int]]:
    """rows[x - 1][k] = polynomial k (coefficients low to high, all of one degree) at x = 1..n, mod p.

    Kronecker substitution: values sit in fixed-width slots of one big integer,
    wide enough that no carry crosses a slot, so one big-integer operation does
    the work of many field operations. Pack across whichever of polynomials (m)
    or points (n) is more numerous: the Python-level loop runs min(m, n) * t times.
    """
    terms = len(polynomials[0])
    if len(polynomials) < shares and terms * shares * _slot_bytes(terms, shares, prime) <= _POWER_TABLE_BUDGET:
        return _evaluate_by_table(polynomials, shares, prime)
    return _evaluate_by_horner(polynomials, shares, prime)


def _split_elements_with(
    values: Sequence[int], higher: Sequence[Sequence[int]], shares: int, prime: int
) -> list[list[int]]:
    polynomials = [[value, *coefficients] for value, coefficients in zip(values, higher)]
    return _evaluate(polynomials, shares, prime)


def split_elements(
    values: Sequence[int], *, threshold: int, shares: int, prime: int = PRIME
) -> list[tuple[int, ...]]:
    """Shamir-share field elements: ``result[i][k]`` = f_k(i + 1), f_k(0) = values[k].

    Each f_k has degree threshold - 1 with coefficients drawn from the OS CSPRNG.
    Low-level: ``prime`` may be any prime above ``shares`` (tests use small fields).
    """
    prime = _check_prime(prime)
    threshold, shares = _check_parameters(threshold, shares, prime)
    for index, value in enumerate(values):
        if not validation.is_integer(value) or not 0 <= value < prime:
            raise ConfigurationError(f"value {index} must be an integer in [0, {prime}); found {value!r}")
    values = [int(value) for value in values]
    if not values:
        return [() for _ in range(shares)]
    randomness = _random_field_elements(len(values) * (threshold - 1), prime)
    higher = [randomness[k * (threshold - 1) : (k + 1) * (threshold - 1)] for k in range(len(values))]
    return [tuple(row) for row in _split_elements_with(values, higher, shares, prime)]


@lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    # lambda_i = X / (x_i * d_i) with X = prod_j x_j, d_i = prod_{j != i} (x_j - x_i).
    # Invert every e_i = x_i * d_i with one inversion (Montgomery's trick).
    denominators = []
    for i, x_i in enumerate(xs):
        product = x_i
        for j, x_j in enumerate(xs):
            if j != i:
                product *= x_j - x_i
        denominators.append(mpz(product % prime))
    numerator = mpz(1)
    for x in xs:
        numerator = numerator * x % prime
    prefix = [mpz(1)]
    for denominator in denominators:
        prefix.append(prefix[-1] * denominator % prime)
    inverse = gmpy2.invert(prefix[-1], prime)
    coefficients = [mpz(0)] * len(xs)
    for i in reversed(range(len(xs))):
        coefficients[i] = numerator * inverse * prefix[i] % prime
        inverse = inverse * denominators[i] % prime
    return tuple(int(c) for c in coefficients)


def _check_points(xs: Sequence[int], prime: int) -> tuple[int, ...]:
    seen: set[int] = set()
    for x in xs:
        if not validation.is_integer(x) or not 1 <= x < prime:
            raise InvalidMessage(f"share x must be an integer in 1..{prime - 1}; found {x!r}")
        if x in seen:
            raise InvalidMessage(f"duplicate share x={x}")
        seen.add(x)
    return tuple(int(x) for x in xs)


def lagrange_coefficients(xs: Sequence[int], prime: int = PRIME) -> list[int]:
    """Lagrange coefficients at zero: lambda_i = prod_{j != i} x_j / (x_j - x_i) mod p.

    f(0) = sum_i lambda_i f(x_i) for every f of degree < len(xs). One modular
    inversion per call; results are cached per (xs, prime) since x-sets repeat.
    """
    prime = _check_prime(prime)
    if len(xs) == 0:
        raise ConfigurationError("lagrange_coefficients needs at least one point")
    return list(_lagrange_at_zero(_check_points(xs, prime), prime))


def _combine(coefficients: Sequence[int], rows: Sequence[Sequence[int]], width: int, prime: int) -> list[int]:
    return [sum(c * row[k] for c, row in zip(coefficients, rows)) % prime for k in range(width)]


def reconstruct_elements(xs: Sequence[int], rows: Sequence[Sequence[int]], *, prime: int = PRIME) -> list[int]:
    """Interpolate at zero through every given point: ``result[k]`` = sum_i lambda_i rows[i][k].

    ``rows[i]`` holds the values at ``xs[i]``; all rows have the same width.
    Correct when the polynomials have degree < len(xs).
    """
    coefficients = lagrange_coefficients(xs, prime)
    if len(rows) != len(xs):
        raise InvalidMessage(f"{len(xs)} points but {len(rows)} rows of values")
    width = len(rows[0])
    for x, row in zip(xs, rows):
        if len(row) != width:
            raise InvalidMessage(f"share x={x} has {len(row)} values; expected {width}")
        for value in row:
            if not validation.is_integer(value) or not 0 <= value < prime:
                raise InvalidMessage(f"share x={x} holds a value that is not a field element below {prime}")
    return _combine(coefficients, [[int(value) for value in row] for row in rows], width, int(prime))


# ---------------------------------------------------------------------------
# byte secrets


def _chunks(secret: bytes) -> list[int]:
    return [
        int.from_bytes(secret[offset : offset + CHUNK_BYTES], "big") for offset in range(0, len(secret), CHUNK_BYTES)
    ]


def _share_secrets(
    secrets: Sequence[bytes],
    *,
    threshold: int,
    shares: int,
    higher_coefficients: Sequence[Sequence[int]] | None = None,
    encoded: bool = False,
) -> list[list[Any]]:
    """Shares of every secret; ``higher_coefficients`` (one list of t-1 per chunk, all
    secrets' chunks in order) is for known-answer vectors only -- None means the OS CSPRNG."""
    threshold, shares = _check_parameters(threshold, shares, PRIME)
    for secret in secrets:
        _check_secret(secret)
    elements: list[int] = []
    for secret in secrets:
        elements.extend(_chunks(secret))
    if not elements:
        return []
    if higher_coefficients is None:
        randomness = _random_field_elements(len(elements) * (threshold - 1), PRIME)
        higher_coefficients = [
            randomness[k * (threshold - 1) : (k + 1) * (threshold - 1)] for k in range(len(elements))
        ]
    elif len(higher_coefficients) != len(elements) or any(
        len(coefficients) != threshold - 1 or not all(validation.is_integer(c) and 0 <= c < PRIME for c in coefficients)
        for coefficients in higher_coefficients
    ):
        raise ConfigurationError(f"need {len(elements)} lists of {threshold - 1} field elements")
    else:
        higher_coefficients = [[int(c) for c in coefficients] for coefficients in higher_coefficients]
    rows = _split_elements_with(elements, higher_coefficients, shares, PRIME)
    if encoded:
        encodings = []
        start = 0
        for secret in secrets:
            stop = start + _element_count(len(secret))
            length = len(secret).to_bytes(2, "big")
            if stop == start + 1:  # one chunk: header || f(x)
                encodings.append([x.to_bytes(2, "big") + length + row[start].to_bytes(ELEMENT_BYTES, "big")
                                  for x, row in enumerate(rows, 1)])
            else:
                encodings.append([x.to_bytes(2, "big") + length
                                  + b"".join([value.to_bytes(ELEMENT_BYTES, "big") for value in row[start:stop]])
                                  for x, row in enumerate(rows, 1)])
            start = stop
        return encodings
    result = []
    start = 0
    for secret in secrets:
        stop = start + _element_count(len(secret))
        result.append(
            [_trusted_share(x, len(secret), tuple(row[start:stop])) for x, row in enumerate(rows, 1)]
        )
        start = stop
    return result


def split(secret: bytes, *, threshold: int, shares: int) -> list[Share]:
    """Split ``secret`` (>= 32 bytes) into ``shares`` shares, any ``threshold`` of which recover it.

    Returns the shares for x = 1..shares in order. Any threshold - 1 of them are
    uniformly distributed whatever the secret. Randomness: the OS CSPRNG.
    """
    return _share_secrets([secret], threshold=threshold, shares=shares)[0]


def split_many(secrets: Sequence[bytes], *, threshold: int, shares: int) -> list[list[Share]]:
    """``split`` for many secrets at once (one packed evaluation); ``result[k]`` shares ``secrets[k]``."""
    if isinstance(secrets, (bytes, bytearray)):
        raise ConfigurationError("split_many takes a sequence of secrets, not one bytes object")
    return _share_secrets(list(secrets), threshold=threshold, shares=shares)


def split_many_encoded(secrets: Sequence[bytes], *, threshold: int, shares: int) -> list[list[bytes]]:
    """``split_many`` with every share as its ``Share.to_bytes`` encoding (no Share objects are built)."""
    if isinstance(secrets, (bytes, bytearray)):
        raise ConfigurationError("split_many_encoded takes a sequence of secrets, not one bytes object")
    return _share_secrets(list(secrets), threshold=threshold, shares=shares, encoded=True)


def _select(shares: Sequence[Share], threshold: int) -> list[Share]:
    """Validate a share set and return the first ``threshold`` shares."""
    if isinstance(shares, (bytes, bytearray, Share)):
        raise InvalidMessage(f"expected a sequence of shares; found {type(shares).__name__}")
    shares = list(shares)
    seen: set[int] = set()
    secret_length = None
    for share in shares:
        if not isinstance(share, Share):
            raise InvalidMessage(f"expected Share objects; found {type(share).__name__}")
        if share.x in seen:
            raise InvalidMessage(f"duplicate share x={share.x}")
        seen.add(share.x)
        if secret_length is None:
            secret_length = share.secret_length
        elif share.secret_length != secret_length:
            raise InvalidMessage(
                f"share x={share.x} is for a {share.secret_length}-byte secret; expected {secret_length}"
            )
    if len(shares) < threshold:
        raise ProtocolAbort(f"need {threshold} shares, got {len(shares)}")
    return shares[:threshold]


def _decode(elements: Sequence[int], secret_length: int) -> bytes:
    parts = []
    for value, length in zip(elements, _chunk_lengths(secret_length)):
        if value >> (8 * length):
            raise InvalidMessage("shares are inconsistent: a reconstructed chunk is out of range")
        parts.append(int(value).to_bytes(length, "big"))
    return b"".join(parts)


def reconstruct(shares: Sequence[Share], *, threshold: int) -> bytes:
    """Recover the secret from the first ``threshold`` of ``shares`` (Lagrange interpolation at 0).

    Duplicate x or mixed secret lengths raise ``InvalidMessage``; fewer than
    ``threshold`` shares raise ``ProtocolAbort``. Shares beyond the first
    ``threshold`` are validated but not used, so they are not cross-checked.
    """
    return reconstruct_many([shares], threshold=threshold)[0]


def reconstruct_many(share_lists: Sequence[Sequence[Share]], *, threshold: int) -> list[bytes]:
    """``reconstruct`` for many secrets; Lagrange coefficients are computed once per x-set."""
    threshold = _check_threshold(threshold)
    selected = [_select(shares, threshold) for shares in share_lists]
    coefficients_by_xs: dict[tuple[int, ...], tuple[int, ...]] = {}
    secrets = []
    for chosen in selected:
        xs = tuple(share.x for share in chosen)
        coefficients = coefficients_by_xs.get(xs)
        if coefficients is None:
            coefficients = coefficients_by_xs[xs] = _lagrange_at_zero(xs, PRIME)
        secret_length = chosen[0].secret_length
        elements = _combine(coefficients, [share.values for share in chosen], len(chosen[0].values), PRIME)
        secrets.append(_decode(elements, secret_length))
    return secrets
