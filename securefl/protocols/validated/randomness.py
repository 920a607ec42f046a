"""Labels of every PRG expansion and the derivation of the joint and query randomness.

Joint randomness (rho) and query randomness (sigma, t1, t2) of client i are

    seed = SHA-256(context(label, session, round, i, seed_0, ..., seed_{m-1}))

over fresh 32-byte seeds that every aggregator draws from the OS CSPRNG
after the client's witness (for rho) or proof (for sigma, t) is fixed at
the aggregators. The client cannot predict them when it commits; a single
aggregator controls at most its own seed, and SHA-256 leaves it no way to
steer the output short of 2^128 work (e.g. to put t on the domain).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from securefl.crypto.keys import context
from securefl.protocols.validated import field
from securefl.protocols.validated.statement import Challenge, Query, Statement

__all__ = ["LABEL", "share_label", "challenge_for", "query_for", "randomness_digest"]

LABEL = "securefl/validated-sharing/v1"


def share_label(what: str, session: bytes, round: int, client: int, aggregator: int) -> bytes:
    """Domain label of the PRG expansion of one seeded share ("witness" or "proof")."""
    return context(LABEL, what, session, round, client, aggregator)


def _seed(what: str, session: bytes, round: int, client: int, seeds: Sequence[bytes]) -> bytes:
    return hashlib.sha256(context(LABEL, what, session, round, client, len(seeds), *seeds)).digest()


def challenge_for(statement: Statement, session: bytes, round: int, client: int,
                  seeds: Sequence[bytes]) -> Challenge:
    """rho: the range proof's slot weights, uniform in F_p."""
    seed = _seed("joint", session, round, client, seeds)
    return Challenge(slot_weights=field.expand(seed, b"slot-weights", statement.range_layout.chunk))


def query_for(statement: Statement, session: bytes, round: int, client: int, seeds: Sequence[bytes]) -> Query:
    """sigma (call weights, per client) and two distinct query points outside every proof's subgroup.

    The points are the same for every client of the round (so the Lagrange
    bases are computed once): each client's proof was fixed before any query seed.
    """
    weights = field.expand(_seed("query", session, round, client, seeds), b"call-weights",
                           statement.range_layout.calls)
    domain = max(statement.range_layout.proof_size, statement.norm_layout.proof_size)
    candidates = field.expand(_seed("query-points", session, round, 0, seeds), b"points", 8)
    points: list[int] = []
    for value in (int(v) for v in candidates):  # 8 candidates: each is on the domain with prob < 2^-40
        if pow(value, domain, field.MODULUS) != 1 and value not in points:
            points.append(value)
        if len(points) == 2:
            break
    return Query(call_weights=np.asarray(weights), points=tuple(points))


def randomness_digest(session: bytes, round: int, included: Sequence[int], joint_seeds: Sequence[bytes],
                      query_seeds: Sequence[bytes]) -> bytes:
    """What two aggregators compare before combining verifier shares: same clients, same randomness."""
    return hashlib.sha256(context(LABEL, "verify", session, round, len(included), *included,
                                  len(joint_seeds), *joint_seeds, len(query_seeds), *query_seeds)).digest()
