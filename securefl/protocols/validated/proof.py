"""A fully linear proof that sum_k sigma_k sum_j w_j g(a_{k,j}) equals a claimed value (ParallelSum gadget).

The n inputs a (linear functions of the secret-shared witness) are laid out
as K calls of c slots. Wire polynomial f_j (degree < N1, N1 a power of two)
takes a_{k,j} at omega1^k (k = 1..K) and two uniformly random blinds at
omega1^0 and omega1^(N1-1); the proof is the blinds and the evaluations of

    P(X) = sum_j w_j g(f_j(X))       (degree < N2 = deg(g)' N1)

on the subgroup of order N2 (it contains the wire domain: P(omega1^k) is
entry k N2/N1). The prover shares the proof like the witness. For query
points t1, t2 outside the subgroup, each verifier computes, linearly in its
shares, f_j(t_i) (Lagrange basis at t_i, O(N1 c) = O(n) vectorised), P(t_i)
and sum_k sigma_k P(omega1^k); the aggregators add their verifier shares and
accept iff sum_j w_j g(f_j(t_i)) = P(t_i) for both points and the output is
the claim.

Soundness: a false P makes Q = sum_j w_j g(f_j) - P a non-zero polynomial of
degree < N2, zero at two independent uniform points with probability at most
(N2 / (p - N2))^2 (Schwartz-Zippel). Zero knowledge: two random blinds per
wire make (f_j(t1), f_j(t2)) uniform for t1, t2 off the domain, and P(t_i) and
the output are then determined, so the reconstructed verifier message is
simulatable; each share alone is uniform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from securefl.protocols.validated import field

__all__ = ["Layout", "layout", "prove", "verifier_share", "VERIFIER_POINTS", "identity_holds"]

VERIFIER_POINTS = 2
Gadget = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Layout:
    """Shape of one parallel-sum proof: n inputs as ``calls`` x ``chunk``, wire and proof domains."""

    inputs: int
    degree: int
    chunk: int
    calls: int
    wire_size: int
    proof_size: int

    @property
    def proof_length(self) -> int:
        """Field elements of the proof: 2 blinds per wire and P on the proof domain."""
        return 2 * self.chunk + self.proof_size

    @property
    def verifier_length(self) -> int:
        """Field elements of one verifier share: f(t_i) and P(t_i) per point, and the output."""
        return VERIFIER_POINTS * (self.chunk + 1) + 1

    @property
    def stride(self) -> int:
        return self.proof_size // self.wire_size


def _next_power(value: int) -> int:
    return 1 << max(value - 1, 0).bit_length()


def layout(inputs: int, degree: int, *, single_slot: bool = False) -> Layout:
    """The layout minimising proof plus verifier size (about 2 sqrt(deg n) elements each).

    ``single_slot`` lays out one input per call (c = 1): no slot weights, so
    the inputs may be chosen after every other randomness but the query's.
    """
    if inputs < 1 or degree < 2:
        raise ValueError(f"a parallel-sum proof needs >= 1 input and degree >= 2; found {inputs}, {degree}")
    stretch = _next_power(degree)
    if single_slot:
        wire_size = max(4, _next_power(inputs + 2))
        return Layout(inputs, degree, 1, inputs, wire_size, stretch * wire_size)
    best: Layout | None = None
    wire_size = 4
    while True:
        calls_max = wire_size - 2
        chunk = -(-inputs // calls_max)
        calls = -(-inputs // chunk)
        candidate = Layout(inputs, degree, chunk, calls, wire_size, stretch * wire_size)
        cost = candidate.proof_length + candidate.verifier_length
        if best is None or cost < best.proof_length + best.verifier_length:
            best = candidate
        if calls_max >= inputs:
            return best
        wire_size *= 2


def _wires(shape: Layout, inputs: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The wire values on the wire domain: row 0 and row N1-1 the blinds, rows 1..K the calls, zeros else."""
    values = np.zeros((shape.wire_size, shape.chunk), dtype=field.DTYPE)
    values[1 : shape.calls + 1].reshape(-1)[: shape.inputs] = inputs
    values[0], values[-1] = first, last
    return values


def prove(shape: Layout, inputs: np.ndarray, gadget: Gadget, weights: np.ndarray, blinds: np.ndarray) -> np.ndarray:
    """The proof (blinds, P on the proof domain) for ``inputs``; ``blinds`` are 2 chunk uniform elements."""
    chunk = shape.chunk
    wires = _wires(shape, inputs, blinds[:chunk], blinds[chunk:])
    coefficients = np.zeros((shape.proof_size, chunk), dtype=field.DTYPE)
    coefficients[: shape.wire_size] = field.intt(wires)
    evaluations = field.ntt(coefficients)
    polynomial = field.sum_mod(field.mul(gadget(evaluations), weights[None, :]), axis=1)
    return np.concatenate([blinds, polynomial])


def verifier_share(shape: Layout, inputs: np.ndarray, proof: np.ndarray, points: tuple[int, ...],
                   output_weights: np.ndarray | None, output_offset: np.ndarray | None = None) -> np.ndarray:
    """One aggregator's verifier share: linear in its shares of the inputs and the proof.

    ``output_weights`` (sigma_k; None for all ones) weight the call outputs;
    ``output_offset`` is added to the output share (a claim linear in the shares).
    """
    chunk = shape.chunk
    wires = _wires(shape, inputs, proof[:chunk], proof[chunk : 2 * chunk])
    polynomial = proof[2 * chunk :]
    pieces: list[np.ndarray] = []
    for point in points:
        basis = field.lagrange_at(point, shape.wire_size)
        pieces.append(field.sum_mod(field.mul(wires, basis[:, None]), axis=0))
        pieces.append(np.array([field.dot(field.lagrange_at(point, shape.proof_size), polynomial)], dtype=field.DTYPE))
    outputs = polynomial[shape.stride : (shape.calls + 1) * shape.stride : shape.stride]
    weighted = outputs if output_weights is None else field.mul(outputs, output_weights)
    total = field.sum_mod(weighted)
    if output_offset is not None:
        total = field.add(total, output_offset)
    pieces.append(np.asarray(total, dtype=field.DTYPE).reshape(1))
    return np.concatenate(pieces)


def identity_holds(shape: Layout, combined: np.ndarray, gadget: Gadget, weights: np.ndarray) -> bool:
    """Whether sum_j w_j g(f_j(t_i)) = P(t_i) at every query point (``combined``: the summed verifier shares)."""
    chunk = shape.chunk
    for index in range(VERIFIER_POINTS):
        start = index * (chunk + 1)
        wires, claimed = combined[start : start + chunk], int(combined[start + chunk])
        if field.dot(gadget(wires), weights) != claimed:
            return False
    return True


def output_of(shape: Layout, combined: np.ndarray) -> int:
    """The reconstructed output (the last element of a combined verifier share)."""
    return int(combined[-1])
