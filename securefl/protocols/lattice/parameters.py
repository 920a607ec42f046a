"""BFV parameters chosen from the encoding's headroom and the HE security standard (128 bits).

Three numbers make a BFV instance for an addition-only sum of n <= n_max
inputs, each |x| <= B = w_max (2^(b-1) - 1) (the encoding's bound):

- the plain modulus t: the smallest prime t = 1 (mod 2N) (batching: N slots)
  with t >= 2 n_max B + 1, so a sum of n_max inputs never wraps modulo t
  (signed values in (-t/2, t/2)). Refused at configuration time when it
  would need more than 60 bits (SEAL's limit), as the ring's headroom is.
- the ciphertext modulus q of the level the ciphertexts travel at: decryption
  of a sum of n fresh ciphertexts is exact when t/q n (E + 1/2) < 1/2, with
  E = (2N + 1) * 6 sigma the worst-case noise of one public-key encryption
  (e u + e1 + e2 s; u, s ternary; errors cut at 6 sigma, sigma = 3.2) and 1/2
  the rounding of round(q m / t). We take q >= 4 t n_max (E + 1) (one bit to
  spare): the smallest modulus that holds the sum, since bytes on the wire
  are 2 N log2(q) / 8 per N values.
- the poly modulus degree N: the smallest power of two for which q and the
  key-switching prime together stay within the 128-bit bound of the HE
  security standard (ternary secret, classical attacks), the table SEAL
  enforces:

      N        1024  2048  4096  8192  16384  32768
      log2 Q     27    54   109   218    438    881

SEAL keeps the last prime of the coefficient modulus for key switching;
ciphertexts travel at the level of the primes before it, here as few as
hold q (one prime up to 60 bits). The key-switching prime takes what the
security bound leaves, at most 60 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from securefl import validation
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError

__all__ = [
    "MAX_MODULUS_BITS",
    "SECURITY_BITS",
    "NOISE_SIGMA",
    "BFVParameters",
    "is_prime",
    "batching_prime",
    "coefficient_primes",
    "fresh_noise_bound",
]

SECURITY_BITS = 128
MAX_MODULUS_BITS: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
"""log2 of the largest coefficient modulus at 128-bit security, by poly modulus degree (HE standard, Table 1)."""
NOISE_SIGMA = 3.2
_NOISE_MAX = math.ceil(6 * NOISE_SIGMA)  # SEAL cuts its error distribution at 6 sigma (19.2 -> 20)
_PRIME_BITS = 60  # SEAL's largest prime (plain modulus and each coefficient prime)
_WITNESSES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)  # deterministic Miller-Rabin below 3.3e24


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (every modulus here is below 2^61)."""
    if n < 2:
        return False
    for p in _WITNESSES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in _WITNESSES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def batching_prime(minimum: int, degree: int) -> int:
    """The smallest prime t >= ``minimum`` with t = 1 (mod 2 degree)."""
    step = 2 * degree
    candidate = max(minimum - 1, 0) // step * step + 1
    while candidate < minimum or not is_prime(candidate):
        candidate += step
    return candidate


def coefficient_primes(degree: int, sizes: tuple[int, ...]) -> list[int] | None:
    """The primes SEAL's ``CoeffModulus.Create(degree, sizes)`` picks: for each size b, the largest
    b-bit primes p = 1 (mod 2 degree), as many as b occurs, in the order of ``sizes``; None if too few exist."""
    step = 2 * degree
    taken: dict[int, list[int]] = {}
    out = []
    for bits in sizes:
        found = taken.setdefault(bits, [])
        candidate = (found[-1] if found else ((1 << bits) - 2) // step * step + 1 + step) - step
        while candidate >= 1 << (bits - 1) and not is_prime(candidate):
            candidate -= step
        if candidate < 1 << (bits - 1):
            return None
        found.append(candidate)
        out.append(candidate)
    return out


def fresh_noise_bound(degree: int) -> int:
    """E = (2N + 1) ceil(6 sigma): a bound on |e u + e1 + e2 s| for one public-key encryption."""
    return (2 * degree + 1) * _NOISE_MAX


def _sizes(degree: int, required: int, plain: int) -> tuple[int, ...] | None:
    """Prime sizes for a data level q >= ``required`` (as few bits and primes as hold it, balanced) and the
    largest key-switching prime the security bound leaves; every prime SEAL would pick distinct from t."""
    smallest = (2 * degree).bit_length() + 1  # a prime = 1 (mod 2N) has at least this many bits
    for needed in (required.bit_length(), required.bit_length() + 1):
        count = -(-needed // _PRIME_BITS)
        data = tuple(needed // count + (1 if i < needed % count else 0) for i in range(count))
        for special in range(min(_PRIME_BITS, MAX_MODULUS_BITS[degree] - needed), smallest - 1, -1):
            primes = coefficient_primes(degree, (*data, special))
            if primes is None or plain in primes:
                continue
            if math.prod(primes[:-1]) < required:  # SEAL's primes fall just short: one bit more
                break
            return (*data, special)
    return None


@dataclass(frozen=True)
class BFVParameters:
    """One BFV instance: N, t and the bit sizes of the coefficient primes (the last for key switching)."""

    poly_modulus_degree: int
    plain_modulus: int
    coeff_mod_bit_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        degree = self.poly_modulus_degree
        if degree not in MAX_MODULUS_BITS:
            raise ConfigurationError(f"poly_modulus_degree must be one of {sorted(MAX_MODULUS_BITS)}; found {degree!r}")
        sizes = self.coeff_mod_bit_sizes
        if len(sizes) < 2 or any(not validation.is_integer(b) or not 2 <= b <= _PRIME_BITS for b in sizes):
            raise ConfigurationError(f"coeff_mod_bit_sizes must be >= 2 prime sizes of 2..60 bits; found {sizes!r}")
        if sum(sizes) > MAX_MODULUS_BITS[degree]:
            raise ConfigurationError(
                f"a coefficient modulus of {sum(sizes)} bits at N={degree} is below {SECURITY_BITS}-bit security "
                f"(at most {MAX_MODULUS_BITS[degree]} bits)"
            )
        t = self.plain_modulus
        if not validation.is_integer(t) or t.bit_length() > _PRIME_BITS or t % (2 * degree) != 1 or not is_prime(t):
            raise ConfigurationError(f"plain_modulus must be a prime = 1 (mod {2 * degree}) of <= 60 bits; found {t!r}")

    @classmethod
    def for_encoding(cls, encoding: Encoding, *, poly_modulus_degree: int | None = None) -> BFVParameters:
        """The smallest parameters (bytes on the wire first, then N) for sums of ``encoding``'s inputs."""
        bound = encoding.max_weight * ((1 << (encoding.value_bits - 1)) - 1)
        clients = encoding.max_clients
        degrees = sorted(MAX_MODULUS_BITS) if poly_modulus_degree is None else [poly_modulus_degree]
        reasons = []
        for degree in degrees:
            if degree not in MAX_MODULUS_BITS:
                raise ConfigurationError(
                    f"poly_modulus_degree must be one of {sorted(MAX_MODULUS_BITS)}; found {degree!r}"
                )
            t = batching_prime(2 * clients * bound + 1, degree)
            if t.bit_length() > _PRIME_BITS:
                raise ConfigurationError(
                    f"a sum of max_clients={clients} values of magnitude up to max_weight x 2^(value_bits-1)-1 = "
                    f"{bound} needs a plain modulus of {t.bit_length()} bits; BFV's is at most {_PRIME_BITS}: "
                    f"lower value_bits, max_weight or max_clients"
                )
            required = 4 * t * clients * (fresh_noise_bound(degree) + 1)
            sizes = _sizes(degree, required, t)
            if sizes is None:
                reasons.append(f"N={degree}: q of {required.bit_length()} bits leaves no room for the "
                               f"key-switching prime")
                continue
            return cls(poly_modulus_degree=degree, plain_modulus=t, coeff_mod_bit_sizes=sizes)
        raise ConfigurationError("no BFV parameters at 128-bit security hold this sum: " + "; ".join(reasons))

    @property
    def slots(self) -> int:
        """Values per ciphertext: N (batching)."""
        return self.poly_modulus_degree

    @property
    def data_bits(self) -> int:
        """log2 q of the level ciphertexts travel at (every prime but the key-switching one), nominal."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    def ciphertexts(self, values: int) -> int:
        """ceil(values / N)."""
        return -(-values // self.slots)

    def required_modulus(self, max_clients: int) -> int:
        """4 t n (E + 1): the q a sum of ``max_clients`` fresh ciphertexts needs to decrypt exactly (a bit spare)."""
        return 4 * self.plain_modulus * max_clients * (fresh_noise_bound(self.poly_modulus_degree) + 1)

    def max_ciphertext_bytes(self) -> int:
        """An upper bound on one serialized ciphertext: 2 polynomials x N x primes x 8 bytes, plus headers."""
        return 2 * self.poly_modulus_degree * (len(self.coeff_mod_bit_sizes) - 1) * 8 + 4096

    def describe(self) -> str:
        return (f"N={self.poly_modulus_degree}, t={self.plain_modulus} ({self.plain_modulus.bit_length()} bits), "
                f"q primes {list(self.coeff_mod_bit_sizes)} bits")
