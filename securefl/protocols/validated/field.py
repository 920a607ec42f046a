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
from securefl.errors import ConfigurationError

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


def add(a: np.ndarray, b: np.ndarray | np.uint64, out: np.ndarray | None = None) -> np.ndarray:
    """a + b mod p (into ``out`` when given; it may be a or b)."""
    with np.errstate(over="ignore"):
        complement = np.subtract(_P, b)  # p - b in (0, p]
        below = np.less(a, complement)
        result = np.empty(np.broadcast_shapes(np.shape(a), np.shape(b)), dtype=DTYPE) if out is None else out
        np.subtract(a, complement, out=result)  # a + b - p, wrapped when a + b < p
        np.add(result, _P, out=result, where=below)
        return result


def neg(a: np.ndarray) -> np.ndarray:
    """-a mod p."""
    return np.where(a == 0, a, _P - a)


def sub(a: np.ndarray, b: np.ndarray | np.uint64, out: np.ndarray | None = None) -> np.ndarray:
    """a - b mod p (into ``out`` when given; it may be a or b)."""
    with np.errstate(over="ignore"):
        below = np.less(a, b)
        result = np.empty(np.broadcast_shapes(np.shape(a), np.shape(b)), dtype=DTYPE) if out is None else out
        np.subtract(a, b, out=result)
        np.add(result, _P, out=result, where=below)  # wrapped: a - b + 2^64; + p - 2^64 is + p (mod 2^64)
        return result


_BLOCK = 1 << 15  # elements per block: a block's temporaries stay in cache


def _scalar_parts(b: np.ndarray | np.uint64 | int) -> tuple[np.uint64, np.uint64] | None:
    if isinstance(b, np.ndarray) and b.ndim > 0:
        return None
    value = int(b)
    return np.uint64(value & 0xFFFFFFFF), np.uint64(value >> 32)


def _reduce_into(lo: np.ndarray, hi: np.ndarray, t: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
    """out = (lo + 2^64 hi) mod p, canonical; lo, hi, t and m (bool) are scratch of out's shape."""
    # lo + 2^64 (h0 + 2^32 h1) = lo - h1 + h0 (2^32 - 1)  (mod p)
    np.right_shift(hi, _SHIFT, out=t)  # h1
    np.less(lo, t, out=m)  # borrow
    np.subtract(lo, t, out=lo)
    np.subtract(lo, _EPSILON, out=lo, where=m)  # - 2^64 = - (2^32 - 1); no second wrap
    np.bitwise_and(hi, _LOW, out=t)  # h0
    np.left_shift(t, _SHIFT, out=hi)
    np.subtract(hi, t, out=hi)  # h0 (2^32 - 1) < 2^64
    np.add(lo, hi, out=out)
    np.less(out, hi, out=m)  # carry
    np.add(out, _EPSILON, out=out, where=m)  # + 2^64 = + (2^32 - 1); no second wrap
    np.greater_equal(out, _P, out=m)
    np.subtract(out, _P, out=out, where=m)


def _mul_flat(a: np.ndarray, b: np.ndarray | None, parts: tuple[np.uint64, np.uint64] | None,
              out: np.ndarray) -> None:
    """out = a * b mod p on 1-D contiguous arrays (b an array, or the scalar ``parts`` (low, high))."""
    scalar_parts: tuple[np.uint64, np.uint64] = (np.uint64(0), np.uint64(0))
    if b is None:
        if parts is None:
            raise ConfigurationError("a field product needs a second factor: an array or a scalar's (low, high) parts")
        scalar_parts = parts
    size = a.shape[0]
    width = min(size, _BLOCK)
    a0, a1, lo, mid, t = (np.empty(width, dtype=DTYPE) for _ in range(5))
    m = np.empty(width, dtype=bool)
    if b is not None:
        b0, b1 = np.empty(width, dtype=DTYPE), np.empty(width, dtype=DTYPE)
    for start in range(0, size, width):
        stop = min(start + width, size)
        n = stop - start
        av, ov = a[start:stop], out[start:stop]
        x0, x1, xl, xm, xt, xb = a0[:n], a1[:n], lo[:n], mid[:n], t[:n], m[:n]
        np.bitwise_and(av, _LOW, out=x0)
        np.right_shift(av, _SHIFT, out=x1)
        y0: np.ndarray | np.uint64
        y1: np.ndarray | np.uint64
        if b is None:
            y0, y1 = scalar_parts
        else:
            bv = b[start:stop]
            y0, y1 = b0[:n], b1[:n]
            np.bitwise_and(bv, _LOW, out=y0)
            np.right_shift(bv, _SHIFT, out=y1)
        # schoolbook on 32-bit limbs; no partial sum can wrap
        np.multiply(x0, y0, out=xl)  # a0 b0
        np.multiply(x0, y1, out=xm)  # a0 b1
        np.right_shift(xl, _SHIFT, out=xt)
        np.add(xm, xt, out=xm)  # <= 2^64 - 2^32
        np.multiply(x1, y0, out=x0)  # a1 b0
        np.bitwise_and(xm, _LOW, out=xt)
        np.add(x0, xt, out=x0)  # <= 2^64 - 2^32
        np.multiply(x1, y1, out=x1)  # a1 b1
        np.right_shift(xm, _SHIFT, out=xm)
        np.add(x1, xm, out=x1)
        np.right_shift(x0, _SHIFT, out=xt)
        np.add(x1, xt, out=x1)  # high 64 bits
        np.bitwise_and(xl, _LOW, out=xl)
        np.left_shift(x0, _SHIFT, out=x0)
        np.bitwise_or(xl, x0, out=xl)  # low 64 bits
        _reduce_into(xl, x1, xt, xb, ov)


def mul(a: np.ndarray, b: np.ndarray | np.uint64, out: np.ndarray | None = None) -> np.ndarray:
    """a * b mod p, exactly, from 32-bit limbs (into ``out`` when given; it may be a or b)."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(b))
    parts = _scalar_parts(b)
    left = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=DTYPE), shape)).reshape(-1)
    right = None if parts is not None else \
        np.ascontiguousarray(np.broadcast_to(np.asarray(b, dtype=DTYPE), shape)).reshape(-1)
    result = np.empty(shape, dtype=DTYPE) if out is None else out
    if result.flags.c_contiguous:
        with np.errstate(over="ignore"):
            _mul_flat(left, right, parts, result.reshape(-1))
    else:
        flat = np.empty(left.shape[0], dtype=DTYPE)
        with np.errstate(over="ignore"):
            _mul_flat(left, right, parts, flat)
        result[...] = flat.reshape(shape)
    return result


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


@functools.lru_cache(maxsize=32)
def _bit_reversal(size: int) -> np.ndarray:
    bits = size.bit_length() - 1
    indices = np.arange(size, dtype=np.int64)
    reversed_ = np.zeros(size, dtype=np.int64)
    for bit in range(bits):
        reversed_ |= ((indices >> bit) & 1) << (bits - 1 - bit)
    reversed_.flags.writeable = False
    return reversed_


@functools.lru_cache(maxsize=64)
def _stage_twiddles(root: int, size: int) -> tuple[np.ndarray, ...]:
    """Per stage (half = 2, 4, ..., size / 2): [w^0, ..., w^(half-1)], w = root^(size / (2 half)); read-only."""
    stages = []
    half = 2
    while half < size:
        twiddles = _powers(pow(root, size // (2 * half), MODULUS), half)
        twiddles.flags.writeable = False
        stages.append(twiddles)
        half *= 2
    return tuple(stages)


def _transform(values: np.ndarray, root: int) -> np.ndarray:
    """The DFT of each column of ``values`` (shape (N, ...)) over <root>, radix-2, vectorised per stage."""
    size = values.shape[0]
    if size & (size - 1):
        raise ValueError(f"NTT size must be a power of two; found {size}")
    tail = values.shape[1:]
    x: np.ndarray = np.ascontiguousarray(np.asarray(values, dtype=DTYPE)[_bit_reversal(size)])
    if size < 2:
        return x
    scratch = np.empty((size // 2, *tail), dtype=DTYPE)
    pairs = x.reshape((size // 2, 2, *tail))
    even, odd = pairs[:, 0], pairs[:, 1]
    sub(even, odd, out=scratch)  # the first stage's twiddle is 1
    add(even, odd, out=even)
    odd[...] = scratch
    half = 2
    for twiddles in _stage_twiddles(root, size):
        blocks = x.reshape((size // (2 * half), 2, half, *tail))
        even, odd = blocks[:, 0], blocks[:, 1]
        product = scratch.reshape((size // (2 * half), half, *tail))
        mul(odd, twiddles.reshape((half,) + (1,) * len(tail)), out=product)
        sub(even, product, out=odd)
        add(even, product, out=even)
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
