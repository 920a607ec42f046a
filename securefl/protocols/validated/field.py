"""Vectorised arithmetic in the Goldilocks field F_p, p = 2^64 - 2^32 + 1, on numpy uint64 arrays.

p - 1 = 2^32 (2^32 - 1), so F_p has multiplicative subgroups of every order
2^s, s <= 32: radix-2 NTTs of any power-of-two size up to 2^32. Elements are
canonical uint64 values in [0, p). A product is formed exactly from 32-bit
limbs (four 32x32 -> 64-bit products) and reduced with 2^64 = 2^32 - 1 and
2^96 = -1 (mod p); no Python loop runs over coordinates.
"""

from __future__ import annotations

import functools

import numpy as np

from securefl.crypto import prg

__all__ = ["MODULUS", "DTYPE", "ELEMENT_BYTES", "add", "sub", "neg", "mul", "power", "inverse", "dot", "sum_mod",
           "from_signed", "to_signed", "root_of_unity", "ntt", "intt", "lagrange_at", "expand", "is_canonical"]

MODULUS = (1 << 64) - (1 << 32) + 1
DTYPE = np.dtype(np.uint64)
ELEMENT_BYTES = 8
_P = np.uint64(MODULUS)
_EPSILON = np.uint64((1 << 32) - 1)  # 2^64 mod p
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_GENERATOR = 7  # a generator of F_p^*
_TWO_ADICITY = 32


def is_canonical(vector: np.ndarray) -> bool:
    """Whether every coordinate of a uint64 vector is below p (a received share's check)."""
    return vector.size == 0 or int(vector.max()) < MODULUS


def add(a: np.ndarray, b: np.ndarray | np.uint64) -> np.ndarray:
    """a + b mod p."""
    with np.errstate(over="ignore"):
        total = a + b  # wraps mod 2^64
        total = total + np.where(total < a, _EPSILON, np.uint64(0))  # 2^64 = 2^32 - 1; no second wrap (a, b < p)
        result: np.ndarray = np.where(total >= _P, total - _P, total)
        return result


def neg(a: np.ndarray) -> np.ndarray:
    """-a mod p."""
    return np.where(a == 0, a, _P - a)


def sub(a: np.ndarray, b: np.ndarray | np.uint64) -> np.ndarray:
    """a - b mod p."""
    with np.errstate(over="ignore"):
        difference = a - b
        return np.where(a < b, difference + _P, difference)  # wrapped: a - b + 2^64; + p - 2^64 is + p (mod 2^64)


def mul(a: np.ndarray, b: np.ndarray | np.uint64) -> np.ndarray:
    """a * b mod p, exactly, from 32-bit limbs."""
    with np.errstate(over="ignore"):
        a0, a1 = a & _LOW, a >> _SHIFT
        b0, b1 = np.bitwise_and(b, _LOW), np.right_shift(b, _SHIFT)
        low = a0 * b0
        cross = a0 * b1
        other = a1 * b0
        middle = cross + other
        carry_middle = (middle < cross).astype(np.uint64) << _SHIFT
        high = a1 * b1 + (middle >> _SHIFT) + carry_middle
        shifted = middle << _SHIFT
        lo = low + shifted
        high = high + (lo < low)
        # x = lo + 2^64 (h0 + 2^32 h1) = lo + h0 (2^32 - 1) - h1 (mod p)
        h0, h1 = high & _LOW, high >> _SHIFT
        t = (h0 << _SHIFT) - h0
        s = lo + t
        s = s + np.where(s < t, _EPSILON, np.uint64(0))
        u = s - h1
        u = u - np.where(s < h1, _EPSILON, np.uint64(0))
        product: np.ndarray = np.where(u >= _P, u - _P, u)
        return product


def sum_mod(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The sum mod p of canonical elements along ``axis`` (at most 2^31 terms)."""
    low = (values & _LOW).sum(axis=axis, dtype=np.uint64)
    high = (values >> _SHIFT).sum(axis=axis, dtype=np.uint64)
    with np.errstate(over="ignore"):
        high = np.where(high >= _P, high - _P, high)
        low = np.where(low >= _P, low - _P, low)
    return add(mul(np.asarray(high), np.uint64(1 << 32)), np.asarray(low))


def dot(a: np.ndarray, b: np.ndarray) -> int:
    """sum_i a_i b_i mod p."""
    return int(sum_mod(mul(a, b)))


def power(base: np.ndarray, exponent: int) -> np.ndarray:
    """base^exponent mod p, element-wise (square and multiply over the exponent's bits)."""
    result = np.ones_like(base)
    square = base.copy()
    while exponent:
        if exponent & 1:
            result = mul(result, square)
        exponent >>= 1
        if exponent:
            square = mul(square, square)
    return result


def inverse(a: np.ndarray) -> np.ndarray:
    """a^-1 = a^(p-2) mod p (a must be non-zero)."""
    return power(a, MODULUS - 2)


def from_signed(values: np.ndarray) -> np.ndarray:
    """Signed int64 values as field elements (v mod p)."""
    signed = np.asarray(values, dtype=np.int64)
    magnitude = np.abs(signed).astype(np.uint64)
    return np.where(signed < 0, _P - magnitude, magnitude)


def to_signed(elements: np.ndarray) -> np.ndarray:
    """Canonical elements as signed integers in (-p/2, p/2), as int64 (|v| < 2^63 required)."""
    half = _P >> np.uint64(1)
    negative = elements > half
    return np.where(negative, -((_P - elements).astype(np.int64)), elements.astype(np.int64))


def root_of_unity(order: int) -> int:
    """A primitive ``order``-th root of unity (order a power of two, at most 2^32)."""
    if order < 1 or order & (order - 1) or order > 1 << _TWO_ADICITY:
        raise ValueError(f"order must be a power of two <= 2^32; found {order}")
    return pow(_GENERATOR, (MODULUS - 1) // order, MODULUS)


def _powers(root: int, count: int) -> np.ndarray:
    """[1, root, root^2, ...] (count of them), by doubling."""
    out = np.ones(count, dtype=DTYPE)
    filled = 1
    while filled < count:
        take = min(filled, count - filled)
        out[filled : filled + take] = mul(out[:take], np.uint64(pow(root, filled, MODULUS)))
        filled += take
    return out


def _bit_reversal(size: int) -> np.ndarray:
    bits = size.bit_length() - 1
    indices = np.arange(size, dtype=np.int64)
    reversed_ = np.zeros(size, dtype=np.int64)
    for bit in range(bits):
        reversed_ |= ((indices >> bit) & 1) << (bits - 1 - bit)
    return reversed_


def _transform(values: np.ndarray, root: int) -> np.ndarray:
    """The DFT of each column of ``values`` (shape (N, ...)) over <root>, radix-2, vectorised per stage."""
    size = values.shape[0]
    if size & (size - 1):
        raise ValueError(f"NTT size must be a power of two; found {size}")
    tail = values.shape[1:]
    x: np.ndarray = values[_bit_reversal(size)]
    half = 1
    while half < size:
        twiddles = _powers(pow(root, size // (2 * half), MODULUS), half).reshape((half,) + (1,) * len(tail))
        blocks = x.reshape((size // (2 * half), 2, half) + tail)
        even, odd = blocks[:, 0], mul(blocks[:, 1], twiddles)
        x = np.stack((add(even, odd), sub(even, odd)), axis=1).reshape((size, *tail))
        half *= 2
    return x


def ntt(coefficients: np.ndarray) -> np.ndarray:
    """Evaluations at omega^0..omega^(N-1) (omega of order N) of the polynomials in each column."""
    return _transform(coefficients, root_of_unity(coefficients.shape[0]))


def intt(evaluations: np.ndarray) -> np.ndarray:
    """Coefficients from evaluations on the size-N subgroup (the inverse of :func:`ntt`)."""
    size = evaluations.shape[0]
    inverse_root = pow(root_of_unity(size), MODULUS - 2, MODULUS)
    return mul(_transform(evaluations, inverse_root), np.uint64(pow(size, MODULUS - 2, MODULUS)))


@functools.lru_cache(maxsize=64)
def lagrange_at(point: int, size: int) -> np.ndarray:
    """L_i(point) for the Lagrange basis of the size-N subgroup: omega^i (x^N - 1) / (N (x - omega^i)).

    ``point`` must lie outside the subgroup. Then sum_i L_i(x) f(omega^i) = f(x) for deg f < N.
    The result is read-only and cached: every client of a round is queried at the same points.
    """
    domain = _powers(root_of_unity(size), size)
    numerator = (pow(point, size, MODULUS) - 1) * pow(size, MODULUS - 2, MODULUS) % MODULUS
    if numerator == 0:
        raise ValueError("the evaluation point lies in the interpolation domain")
    gaps = sub(np.full(size, point % MODULUS, dtype=DTYPE), domain)
    basis = mul(mul(domain, inverse(gaps)), np.uint64(numerator))
    basis.flags.writeable = False
    return basis


def expand(seed: bytes, label: bytes, length: int) -> np.ndarray:
    """``length`` uniform field elements from a 32-byte seed (AES-CTR words, those >= p rejected).

    A 64-bit word is >= p with probability < 2^-32; a few spare words are drawn
    and the first ``length`` accepted ones are kept, so the output is exactly
    uniform over F_p^length given a uniform keystream.
    """
    spare = 16
    while True:
        words = prg.keystream_bytes(seed, label, 8 * (length + spare)).view("<u8").astype(DTYPE, copy=False)
        kept = words[words < _P]
        if kept.size >= length:
            return np.ascontiguousarray(kept[:length])
        spare *= 16
