"""The statement a client proves: every coordinate in range and ||q||^2 <= N, over a digit witness.

Public: d coordinates, the value range M = 2^(b-1) - 1 (the encoding's clip,
in ring units), the digit base beta = 2^s, and N = floor((B s_enc)^2), the
squared norm bound in ring units. The witness z in F_p^D, D = d k + m, holds

    q_i + W M = sum_{j<k} z_{i,j} beta^j   (k digits: beta^k > 2 W M; W the largest weight)
    w - 1     = sum_{j<kw} z'_j beta^j     (the weight w, beta^kw >= W)
    t         = sum_{j<m} z''_j beta^j     (the slack, beta^m > N W^2)

and the client proves, with three parallel-sum proofs (:mod:`.proof`):

    range:  sum_k sigma_k sum_j rho_j g(z_{k,j}) = 0,   g(x) = x (x-1) ... (x-beta+1)
    weight: its output is w^2                             (g(x) = x^2, one input)
    norm:   sum_i q_i^2 + t - N w^2 = 0                   (g(x) = x^2; N w^2 is linear in the
                                                           weight proof's output share)

Every digit in [0, beta) gives q_i in [-W M, beta^k - 1 - W M], w in
[1, beta^kw] and t >= 0; as d (beta^k)^2 + beta^m < p / 2 (checked at
configuration), the norm identity mod p holds over the integers, so
||q||^2 <= N w^2: the weighted contribution q = w x s obeys ||x|| <= B. The
vector (q, w) is linear in z, so the aggregate is computed from the same shares.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from securefl.errors import ConfigurationError, InvalidUpdate
from securefl.protocols.validated import field, proof

__all__ = ["Statement", "Rejection", "Challenge", "Query"]


class Rejection(enum.Enum):
    """Why the aggregators excluded a client whose contribution arrived."""

    PROOF_INVALID = "proof-invalid"  # a polynomial identity failed: the proof does not match the shares
    OUT_OF_RANGE = "out-of-range"  # a digit (so a coordinate or the slack) is outside its range
    NORM_EXCEEDED = "norm-exceeded"  # sum q_i^2 + t != N: the squared norm is above the bound


@dataclass(frozen=True)
class Challenge:
    """Joint randomness fixed after the witness: the range proof's slot weights rho."""

    slot_weights: np.ndarray


@dataclass(frozen=True)
class Query:
    """Query randomness fixed after the proof: the call weights sigma and two points off the domains."""

    call_weights: np.ndarray
    points: tuple[int, ...]


@dataclass(frozen=True)
class Statement:
    """The public statement for d coordinates and a weight (see the module docstring)."""

    length: int
    value_bits: int
    digit_bits: int
    norm_squared: int
    max_weight: int = 1

    def __post_init__(self) -> None:
        if self.length < 1 or not 1 <= self.digit_bits <= 4 or self.value_bits < 2 or self.norm_squared < 0 \
                or self.max_weight < 1:
            raise ConfigurationError(f"invalid statement {self}")
        limit = field.MODULUS // 2
        worst = self.length * (self.base ** self.digits) ** 2 + self.base ** self.slack_digits
        if worst >= limit:
            raise ConfigurationError(
                f"d (beta^k)^2 + beta^m = {worst} is not below p/2 = {limit}: the squared norm of {self.length} "
                f"coordinates of {self.value_bits} bits could wrap the field; lower value_bits or the length")

    @property
    def base(self) -> int:
        return 1 << self.digit_bits

    def _digits_for(self, largest: int) -> int:
        """Digits of base beta that hold every integer in [0, largest]."""
        return max(1, -(-max(largest, 1).bit_length() // self.digit_bits))

    @property
    def offset(self) -> int:
        """W M: the largest |q_i| (M = 2^(b-1) - 1 per unit of weight, W the largest weight)."""
        return self.max_weight * ((1 << (self.value_bits - 1)) - 1)

    @property
    def digits(self) -> int:
        """k: digits per coordinate (q_i + W M in [0, beta^k))."""
        return self._digits_for(2 * self.offset)

    @property
    def weight_digits(self) -> int:
        """Digits of w - 1 in [0, beta^kw), beta^kw >= W."""
        return self._digits_for(self.max_weight - 1)

    @property
    def slack_digits(self) -> int:
        """m: digits of the slack t = N w^2 - ||q||^2 in [0, N W^2]."""
        return self._digits_for(self.norm_squared * self.max_weight ** 2)

    @property
    def witness_length(self) -> int:
        return self.length * self.digits + self.weight_digits + self.slack_digits

    @cached_property
    def range_layout(self) -> proof.Layout:
        return proof.layout(self.witness_length, self.base)

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
        return sum(shape.proof_length for shape in self._layouts())

    @property
    def verifier_length(self) -> int:
        return sum(shape.verifier_length for shape in self._layouts())

    @property
    def blind_length(self) -> int:
        return sum(2 * shape.chunk for shape in self._layouts())

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
        """``InvalidUpdate`` unless 1 <= w <= W, |q_i| <= W M and ||q||^2 <= N w^2 (an honest client proves
        only true statements)."""
        if signed.size != self.length:
            raise InvalidUpdate(f"update has {signed.size} coordinates; the statement has {self.length}")
        if not 1 <= weight <= self.max_weight:
            raise InvalidUpdate(f"weight {weight} is outside [1, {self.max_weight}]")
        if signed.size and int(np.abs(signed).max()) > self.offset:
            raise InvalidUpdate(f"a coordinate exceeds the range W M={self.offset}")
        squared = _squared_norm(signed)
        if squared > self.norm_squared * weight * weight:
            raise InvalidUpdate(f"the squared norm {squared} of the encoded update exceeds the bound "
                                f"{self.norm_squared} x w^2 (ring units): scale or clip the update below the bound")

    def _digits(self, value: np.ndarray, count: int) -> np.ndarray:
        shifts = np.arange(count, dtype=np.int64) * self.digit_bits
        return ((value[:, None] >> shifts[None, :]) & (self.base - 1)).reshape(-1)

    def witness(self, signed: np.ndarray, weight: int, *, slack: int | None = None) -> np.ndarray:
        """z from the signed coordinates q and weight w; ``slack`` overrides t (for tests of false statements)."""
        shifted = signed.astype(np.int64) + self.offset
        if slack is None:
            slack = self.norm_squared * weight * weight - _squared_norm(signed)
        weight_part = self._digits(np.array([weight - 1], dtype=np.int64), self.weight_digits)
        slack_part = [(slack >> (self.digit_bits * j)) & (self.base - 1) for j in range(self.slack_digits)]
        return np.concatenate([self._digits(shifted, self.digits).astype(field.DTYPE),
                               weight_part.astype(field.DTYPE), np.array(slack_part, dtype=field.DTYPE)])

    def prove(self, witness: np.ndarray, challenge: Challenge, blinds: np.ndarray) -> np.ndarray:
        """The proof for ``witness``: range, norm and weight proofs; ``blinds`` uniform, :attr:`blind_length`."""
        ranges, norms, weights = self._layouts()
        cut = 2 * ranges.chunk
        cut2 = cut + 2 * norms.chunk
        return np.concatenate([
            proof.prove(ranges, witness, self._range_gadget, challenge.slot_weights, blinds[:cut]),
            proof.prove(norms, self.coordinates(witness, leader=True), self._square, self._ones(norms.chunk),
                        blinds[cut:cut2]),
            proof.prove(weights, self.weight(witness, leader=True), self._square, self._ones(1), blinds[cut2:]),
        ])

    # -- linear maps of shares ----------------------------------------------------------------

    def _combine(self, digits: np.ndarray, count: int) -> np.ndarray:
        powers = np.array([1 << (self.digit_bits * j) for j in range(count)], dtype=field.DTYPE)
        return field.sum_mod(field.mul(digits.reshape(-1, count), powers[None, :]), axis=1)

    def coordinates(self, witness_share: np.ndarray, *, leader: bool) -> np.ndarray:
        """A share of q: sum_j z_{i,j} beta^j (minus W M on the leader's share)."""
        share = self._combine(witness_share[: self.length * self.digits], self.digits)
        return field.sub(share, np.uint64(self.offset)) if leader else share

    def weight(self, witness_share: np.ndarray, *, leader: bool) -> np.ndarray:
        """A share of w: sum_j z_j beta^j (plus 1 on the leader's share)."""
        start = self.length * self.digits
        share = self._combine(witness_share[start : start + self.weight_digits], self.weight_digits)
        return field.add(share, np.uint64(1)) if leader else share

    def slack(self, witness_share: np.ndarray) -> np.ndarray:
        return self._combine(witness_share[self.length * self.digits + self.weight_digits :], self.slack_digits)

    def verifier_share(self, witness_share: np.ndarray, proof_share: np.ndarray, *, leader: bool,
                       challenge: Challenge, query: Query) -> np.ndarray:
        """This aggregator's verifier share of one client (linear in its shares).

        The weight proof's output share is a share of w^2; the norm proof's
        output share is ||q||^2 + t - N w^2, zero for a true statement.
        """
        ranges, norms, weights = self._layouts()
        cut = ranges.proof_length
        cut2 = cut + norms.proof_length
        range_share = proof.verifier_share(ranges, witness_share, proof_share[:cut], query.points,
                                           query.call_weights[: ranges.calls])
        weight_share = proof.verifier_share(weights, self.weight(witness_share, leader=leader), proof_share[cut2:],
                                            query.points, None)
        squared_weight = weight_share[-1:]
        offset = field.sub(self.slack(witness_share), field.mul(squared_weight, np.uint64(self.norm_squared)))
        norm_share = proof.verifier_share(norms, self.coordinates(witness_share, leader=leader),
                                          proof_share[cut:cut2], query.points, None, offset)
        return np.concatenate([range_share, norm_share, weight_share])

    def decide(self, combined: np.ndarray, challenge: Challenge) -> Rejection | None:
        """None when the summed verifier shares accept; else the first check that failed."""
        ranges, norms, weights = self._layouts()
        cut = ranges.verifier_length
        cut2 = cut + norms.verifier_length
        range_part, norm_part, weight_part = combined[:cut], combined[cut:cut2], combined[cut2:]
        if not (proof.identity_holds(ranges, range_part, self._range_gadget, challenge.slot_weights)
                and proof.identity_holds(norms, norm_part, self._square, self._ones(norms.chunk))
                and proof.identity_holds(weights, weight_part, self._square, self._ones(1))):
            return Rejection.PROOF_INVALID
        if proof.output_of(ranges, range_part) != 0:
            return Rejection.OUT_OF_RANGE
        if proof.output_of(norms, norm_part) != 0:
            return Rejection.NORM_EXCEEDED
        return None


def _squared_norm(signed: np.ndarray) -> int:
    """sum q_i^2 exactly (int64 squares, summed as Python ints by blocks: no overflow)."""
    squares = signed.astype(np.int64) ** 2
    return sum(int(block.sum()) for block in np.array_split(squares, max(1, squares.size // 4096)))
