"""The statement a client proves: weight w in [1, W] and ||q||^2 <= N w^2, through a random projection.

Public: d coordinates, the digit base beta = 2^s, N = floor((B s_enc)^2)
(the squared norm bound in ring units) and the largest weight W. The client
sends, in two messages,

    witness:   q in F_p^d, the kw digits of w - 1 and of W - w     (before R is drawn)
    extension: the ky digits of y_j + Y, y = R q (ROWS rows)          (after R is drawn)
               and the m digits of the slack t = N w^2 - ||q||^2

with R the ternary projection of :mod:`.projection` (expanded from joint
randomness drawn after every witness is fixed), Y = ceil(sqrt(101.2 N W^2))
and L = beta^ky > 2 Y. Three parallel-sum proofs (:mod:`.proof`) and two
linear checks follow:

    range:       sum_k sigma_k g(z_k) = 0 over every digit z (single-slot calls), g(x) = x (x-1) ... (x-beta+1)
    weight:      its output is w^2                                 (g(x) = x^2, one input)
    norm:        sum_i q_i^2 + t - N w^2 = 0                       (g(x) = x^2)
    consistency: sum_j gamma_j (ybar_j - Y) - <R^T gamma, q> = 0   (ybar_j recombined from its digits)
    weight:      (w - 1) + (W - w) = W - 1 over the two recombined digit sets, so 1 <= w <= W

Soundness (q read as integers in (-p/2, p/2); L' = L - Y): if some
|q_i| >= L, each row of R puts (R q)_j outside [-Y, L') with probability >= 1/2
(of the three values c, c +- q_i at most the middle one, or only the outer
two, lie in an interval shorter than |q_i|), so all ROWS rows pass with
probability <= 2^-ROWS. Otherwise |(R q)_j| <= d L < p/2 is an integer with
E z^2 = ||q||^2 / 2 and E z^4 <= 3 (E z^2)^2; if ||q||^2 >= 8 L'^2,
Paley-Zygmund gives Pr[|z| <= L'] <= 1 - (3/4)^2 / 3 = 0.8125 per row,
0.8125^256 = 2^-76.7 in all. Else ||q||^2 + t - N w^2 lies in (-p, p)
(8 L'^2 + beta^m + N W^2 < p, checked at configuration), so the norm identity
holds over the integers: ||q||^2 <= N w^2. An honest client's rows stay
within Y except with probability 2 ROWS exp(-Y^2 / (2 N W^2)) <= 2^-64
(Hoeffding). Everything the aggregators check is linear in the shares.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from securefl.errors import ConfigurationError, InvalidUpdate
from securefl.protocols.validated import field, projection, proof

__all__ = ["Statement", "Rejection", "Challenge", "Query"]

_HONEST_TAIL_TENTHS = 1012
"""10 x 2 ln(2 ROWS 2^64) rounded up: Y^2 >= 101.2 N W^2 keeps every honest row within Y but w.p. 2^-64."""


class Rejection(enum.Enum):
    """Why the aggregators excluded a client whose contribution arrived."""

    PROOF_INVALID = "proof-invalid"  # a polynomial identity failed: the proof does not match the shares
    OUT_OF_RANGE = "out-of-range"  # a digit is outside [0, beta), or the weight outside [1, W]
    NORM_EXCEEDED = "norm-exceeded"  # sum q_i^2 + t != N w^2: the squared norm is above the bound
    PROJECTION_MISMATCH = "projection-mismatch"  # the projection digits are not R q + Y: the norm identity held
    # only modulo p (a sum of squares that wraps the field), ||q|| far above the bound


@dataclass(frozen=True)
class Challenge:
    """Joint randomness of a round, fixed after every witness: the seed of the projection R."""

    projection_seed: bytes


@dataclass(frozen=True)
class Query:
    """Query randomness, fixed after the proofs.

    ``call_weights`` (sigma, per client) weight the range proof's calls;
    ``points`` (two, off every proof domain), ``projection_weights`` (gamma,
    ROWS) and ``column_weights`` (R^T gamma, d) are common to the round.
    """

    call_weights: np.ndarray
    points: tuple[int, ...]
    projection_weights: np.ndarray
    column_weights: np.ndarray


@dataclass(frozen=True)
class Statement:
    """The public statement for d coordinates and a weight (see the module docstring)."""

    length: int
    digit_bits: int
    norm_squared: int
    max_weight: int = 1

    def __post_init__(self) -> None:
        if self.length < 1 or not 1 <= self.digit_bits <= 4 or self.norm_squared < 1 or self.max_weight < 1:
            raise ConfigurationError(f"invalid statement {self}")
        span = self.base ** self.projection_digits
        worst = 8 * (span - self.projection_bound) ** 2 + self.base ** self.slack_digits \
            + self.norm_squared * self.max_weight ** 2
        if worst >= field.MODULUS:
            raise ConfigurationError(
                f"8 (L - Y)^2 + beta^m + N W^2 = {worst} is not below p = {field.MODULUS}: the squared norm could "
                f"wrap the field; lower norm_bound, value_bits or max_weight")
        if self.length * span >= field.MODULUS // 2:
            raise ConfigurationError(
                f"d L = {self.length * span} is not below p/2: a projection of {self.length} coordinates could "
                f"wrap the field; lower the length or the norm bound")

    @property
    def base(self) -> int:
        return 1 << self.digit_bits

    def _digits_for(self, largest: int) -> int:
        """Digits of base beta that hold every integer in [0, largest]."""
        return max(1, -(-max(largest, 1).bit_length() // self.digit_bits))

    @property
    def weight_digits(self) -> int:
        """kw: digits of w - 1 (and of W - w) in [0, beta^kw), beta^kw >= W."""
        return self._digits_for(self.max_weight - 1)

    @property
    def slack_digits(self) -> int:
        """m: digits of the slack t = N w^2 - ||q||^2 in [0, N W^2]."""
        return self._digits_for(self.norm_squared * self.max_weight ** 2)

    @cached_property
    def projection_bound(self) -> int:
        """Y: an honest row |(R q)_j| stays within Y (Y^2 >= 101.2 N W^2)."""
        tail = -(-_HONEST_TAIL_TENTHS * self.norm_squared * self.max_weight ** 2 // 10)
        return math.isqrt(tail) + 1

    @property
    def projection_digits(self) -> int:
        """ky: digits of y_j + Y in [0, 2 Y]."""
        return self._digits_for(2 * self.projection_bound)

    @property
    def witness_length(self) -> int:
        """The first message: q and the two weight digit sets."""
        return self.length + 2 * self.weight_digits

    @property
    def extension_length(self) -> int:
        """The start of the second message: the projection digits and the slack digits."""
        return projection.ROWS * self.projection_digits + self.slack_digits

    @property
    def range_inputs(self) -> int:
        return 2 * self.weight_digits + self.extension_length

    @cached_property
    def range_layout(self) -> proof.Layout:
        return proof.layout(self.range_inputs, self.base, single_slot=True)

    @cached_property
    def norm_layout(self) -> proof.Layout:
        return proof.layout(self.length, 2)

    @cached_property
    def weight_layout(self) -> proof.Layout:
        return proof.layout(1, 2)

    def _layouts(self) -> tuple[proof.Layout, proof.Layout, proof.Layout]:
        return self.range_layout, self.norm_layout, self.weight_layout

    @property
    def proof_length(self) -> int:
        """The second message: the extension and the three proofs."""
        return self.extension_length + sum(shape.proof_length for shape in self._layouts())

    @property
    def verifier_length(self) -> int:
        """One verifier share: the three proofs' and one element each for the consistency and weight checks."""
        return sum(shape.verifier_length for shape in self._layouts()) + 2

    @property
    def blind_length(self) -> int:
        return sum(2 * shape.chunk for shape in self._layouts())

    @property
    def soundness_error(self) -> float:
        """An upper bound on Pr[a false statement is accepted] per contribution (module docstring)."""
        rows = projection.ROWS
        polynomial = sum((shape.proof_size / (field.MODULUS - shape.proof_size)) ** 2 for shape in self._layouts())
        return max(0.8125 ** rows, 0.5 ** rows) + 2 / field.MODULUS + polynomial

    # -- gadgets ----------------------------------------------------------------------------

    def _range_gadget(self, values: np.ndarray) -> np.ndarray:
        """prod_{i<beta} (x - i), as prod_{i<beta/2} (y + i (beta-1-i)) with y = x (x - beta + 1)."""
        top = self.base - 1
        pivot = field.mul(values, field.sub(values, np.uint64(top)))
        product: np.ndarray = pivot.copy()
        factor = np.empty_like(pivot)
        for offset in range(1, self.base // 2):
            field.add(pivot, np.uint64(offset * (top - offset)), out=factor)
            field.mul(product, factor, out=product)
        return product

    @staticmethod
    def _square(values: np.ndarray) -> np.ndarray:
        return field.mul(values, values)

    @staticmethod
    def _ones(count: int) -> np.ndarray:
        return np.ones(count, dtype=field.DTYPE)

    # -- prover ---------------------------------------------------------------------------------

    def check_update(self, signed: np.ndarray, weight: int) -> None:
        """``InvalidUpdate`` unless 1 <= w <= W and ||q||^2 <= N w^2 (an honest client proves only true
        statements)."""
        if signed.size != self.length:
            raise InvalidUpdate(f"update has {signed.size} coordinates; the statement has {self.length}")
        if not 1 <= weight <= self.max_weight:
            raise InvalidUpdate(f"weight {weight} is outside [1, {self.max_weight}]")
        squared = _squared_norm(signed)
        if squared > self.norm_squared * weight * weight:
            raise InvalidUpdate(f"the squared norm {squared} of the encoded update exceeds the bound "
                                f"{self.norm_squared} x w^2 (ring units): scale or clip the update below the bound")

    def _digits(self, values: np.ndarray, count: int) -> np.ndarray:
        """The low ``count`` base-beta digits of non-negative int64 ``values`` (a value >= beta^count wraps)."""
        shifts = np.arange(count, dtype=np.int64) * self.digit_bits
        return ((values[:, None] >> shifts[None, :]) & (self.base - 1)).reshape(-1).astype(field.DTYPE)

    def witness(self, signed: np.ndarray, weight: int) -> np.ndarray:
        """The first message from the signed coordinates q and the weight w: (q mod p, digits of w - 1 and of
        W - w; a weight outside [1, W] wraps its digits and fails the weight check)."""
        span = self.base ** self.weight_digits
        weight_parts = np.array([(weight - 1) % span, (self.max_weight - weight) % span], dtype=np.int64)
        return np.concatenate([field.from_signed(signed), self._digits(weight_parts, self.weight_digits)])

    def extension(self, witness: np.ndarray, challenge: Challenge, *, slack: int | None = None) -> np.ndarray:
        """The projection digits of y + Y (reduced mod L: a false claim is caught) and the slack digits.

        ``slack`` overrides t (for tests of false statements).
        """
        coordinates = witness[: self.length]
        projected = field.to_signed(projection.project(challenge.projection_seed, coordinates))
        span = self.base ** self.projection_digits
        shifted = (projected % span + self.projection_bound) % span
        if slack is None:
            weight = int(self.weight(witness, leader=True)[0])
            slack = self.norm_squared * weight * weight - _squared_norm(field.to_signed(coordinates))
        reduced = slack % self.base ** self.slack_digits
        slack_digits = [(reduced >> (self.digit_bits * j)) & (self.base - 1) for j in range(self.slack_digits)]
        return np.concatenate([self._digits(shifted, self.projection_digits),
                               np.array(slack_digits, dtype=field.DTYPE)])

    def prove(self, witness: np.ndarray, challenge: Challenge, blinds: np.ndarray, *,
              extension: np.ndarray | None = None) -> np.ndarray:
        """The second message: the extension and the range, norm and weight proofs (``blinds``: uniform,
        :attr:`blind_length` of them; ``extension`` overrides :meth:`extension`, for tests of false ones)."""
        ranges, norms, weights = self._layouts()
        if extension is None:
            extension = self.extension(witness, challenge)
        cut = 2 * ranges.chunk
        cut2 = cut + 2 * norms.chunk
        return np.concatenate([
            extension,
            proof.prove(ranges, np.concatenate([witness[self.length :], extension]), self._range_gadget,
                        self._ones(1), blinds[:cut]),
            proof.prove(norms, witness[: self.length], self._square, self._ones(norms.chunk), blinds[cut:cut2]),
            proof.prove(weights, self.weight(witness, leader=True), self._square, self._ones(1), blinds[cut2:]),
        ])

    # -- linear maps of shares ----------------------------------------------------------------

    def _recombine(self, digits: np.ndarray, count: int) -> np.ndarray:
        powers = np.array([1 << (self.digit_bits * j) for j in range(count)], dtype=field.DTYPE)
        return field.sum_mod(field.mul(digits.reshape(-1, count), powers[None, :]), axis=1)

    def coordinates(self, witness_share: np.ndarray) -> np.ndarray:
        """A share of q (the witness carries it as is)."""
        return witness_share[: self.length]

    def weight(self, witness_share: np.ndarray, *, leader: bool) -> np.ndarray:
        """A share of w: sum_j z_j beta^j over the digits of w - 1 (plus 1 on the leader's share)."""
        share = self._recombine(witness_share[self.length : self.length + self.weight_digits], self.weight_digits)
        return field.add(share, np.uint64(1)) if leader else share

    def verifier_share(self, witness_share: np.ndarray, proof_share: np.ndarray, *, leader: bool,
                       query: Query) -> np.ndarray:
        """This aggregator's verifier share of one client (linear in its shares).

        The weight proof's output share, a share of w^2, enters the norm
        offset and is sent as 0 (the sum would reveal w); the norm proof's
        output share is ||q||^2 + t - N w^2, then come the consistency element
        gamma . (ybar - Y) - <R^T gamma, q> and the weight-range element: all
        zero for a true statement.
        """
        ranges, norms, weights = self._layouts()
        extension = proof_share[: self.extension_length]
        proofs = proof_share[self.extension_length :]
        cut = ranges.proof_length
        cut2 = cut + norms.proof_length
        coordinates = self.coordinates(witness_share)
        range_share = proof.verifier_share(ranges, np.concatenate([witness_share[self.length :], extension]),
                                           proofs[:cut], query.points, query.call_weights)
        weight_share = proof.verifier_share(weights, self.weight(witness_share, leader=leader), proofs[cut2:],
                                            query.points, None)
        rows = projection.ROWS * self.projection_digits
        slack = self._recombine(extension[rows:], self.slack_digits)
        offset = field.sub(slack, field.mul(weight_share[-1:], np.uint64(self.norm_squared)))
        weight_share[-1] = 0  # the share of w^2 stays here (it entered the offset): summed, it would reveal w
        norm_share = proof.verifier_share(norms, coordinates, proofs[cut:cut2], query.points, None, offset)
        projected = self._recombine(extension[:rows], self.projection_digits)
        consistency = (field.dot(projected, query.projection_weights)
                       - field.dot(coordinates, query.column_weights)) % field.MODULUS
        if leader:
            consistency = (consistency - self.projection_bound * int(field.sum_mod(query.projection_weights))) \
                % field.MODULUS
        both = self._recombine(witness_share[self.length : self.length + 2 * self.weight_digits],
                               self.weight_digits)
        weight_sum = (int(both[0]) + int(both[1]) - (self.max_weight - 1 if leader else 0)) % field.MODULUS
        return np.concatenate([range_share, norm_share, weight_share,
                               np.array([consistency, weight_sum], dtype=field.DTYPE)])

    def decide(self, combined: np.ndarray) -> Rejection | None:
        """None when the summed verifier shares accept; else the first check that failed."""
        ranges, norms, weights = self._layouts()
        cut = ranges.verifier_length
        cut2 = cut + norms.verifier_length
        cut3 = cut2 + weights.verifier_length
        range_part, norm_part, weight_part = combined[:cut], combined[cut:cut2], combined[cut2:cut3]
        if not (proof.identity_holds(ranges, range_part, self._range_gadget, self._ones(1))
                and proof.identity_holds(norms, norm_part, self._square, self._ones(norms.chunk))
                and proof.identity_holds(weights, weight_part, self._square, self._ones(1))):
            return Rejection.PROOF_INVALID
        if proof.output_of(ranges, range_part) != 0 or int(combined[cut3 + 1]) != 0:
            return Rejection.OUT_OF_RANGE
        if proof.output_of(norms, norm_part) != 0:
            return Rejection.NORM_EXCEEDED
        if int(combined[cut3]) != 0:  # the norm identity held only mod p: a square that wraps the field
            return Rejection.PROJECTION_MISMATCH
        return None


def _squared_norm(signed: np.ndarray) -> int:
    """sum q_i^2 exactly: int64 blocks while every square stays below 2^52, Python integers beyond."""
    if signed.size and int(np.abs(signed).max()) >= 1 << 26:
        values = signed.astype(object)
        return int(np.dot(values, values))
    squares = signed.astype(np.int64) ** 2
    return sum(int(block.sum()) for block in np.array_split(squares, max(1, squares.size // 2048)))
