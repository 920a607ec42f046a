"""Labels of every PRG expansion and the derivation of the joint and query randomness.

The projection seed of a round (R) and the query randomness (sigma for client
i; gamma, t1, t2 for the round) are

    seed = SHA-256(context(label, session, round, [i,] seed_0, ..., seed_{m-1}))

over fresh 32-byte seeds that every aggregator draws from the OS CSPRNG
after every witness (for R) or proof (for sigma, gamma, t) is fixed at the
aggregators. A client cannot predict them when it commits; a single
aggregator controls at most its own seed, and SHA-256 leaves it no way to
steer the output short of 2^128 work (e.g. to put t on the domain).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from securefl.crypto.keys import context
from securefl.protocols.validated import field, projection
from securefl.protocols.validated.statement import Challenge, Query, Statement

__all__ = ["LABEL", "share_label", "joint_seed_statement", "challenge_for", "round_query", "query_for",
           "randomness_digest"]

LABEL = "securefl/validated-sharing/v2"


def share_label(what: str, session: bytes, round: int, client: int, aggregator: int) -> bytes:
    """Domain label of the PRG expansion of one seeded share ("witness" or "proof")."""
    return context(LABEL, what, session, round, client, aggregator)


def _seed(what: str, session: bytes, round: int, client: int, seeds: Sequence[bytes]) -> bytes:
    return hashlib.sha256(context(LABEL, what, session, round, client, len(seeds), *seeds)).digest()


def joint_seed_statement(session: bytes, round: int, aggregator: int, seed: bytes) -> bytes:
    """What aggregator j signs with its joint seed: a client then uses only seeds its aggregators drew."""
    return context(LABEL, "joint-seed", session, round, aggregator, seed)


def challenge_for(session: bytes, round: int, seeds: Sequence[bytes]) -> Challenge:
    """The round's projection seed: one R for every client (each witness was fixed before any joint seed)."""
    return Challenge(projection_seed=_seed("projection", session, round, 0, seeds))


def round_query(statement: Statement, session: bytes, round: int, challenge: Challenge,
                seeds: Sequence[bytes]) -> Query:
    """The query randomness common to a round: two distinct points off every proof domain, gamma and R^T gamma.

    Common to every client (so the Lagrange bases and R^T gamma are computed
    once): each client's proof was fixed before any query seed. The call
    weights are left empty; :func:`query_for` fills in a client's.
    """
    shared = _seed("query-points", session, round, 0, seeds)
    domain = max(shape.proof_size for shape in (statement.range_layout, statement.norm_layout))
    candidates = field.expand(shared, b"points", 8)
    points: list[int] = []
    for value in (int(v) for v in candidates):  # 8 candidates: each is on the domain with prob < 2^-40
        if pow(value, domain, field.MODULUS) != 1 and value not in points:
            points.append(value)
        if len(points) == 2:
            break
    gamma = field.expand(shared, b"projection-weights", projection.ROWS)
    return Query(call_weights=np.zeros(0, dtype=field.DTYPE), points=tuple(points), projection_weights=gamma,
                 column_weights=projection.transpose_apply(challenge.projection_seed, gamma, statement.length))


def query_for(statement: Statement, session: bytes, round: int, client: int, seeds: Sequence[bytes],
              common: Query) -> Query:
    """Client i's query: its call weights sigma (uniform in F_p) with the round's ``common`` randomness."""
    weights = field.expand(_seed("query", session, round, client, seeds), b"call-weights",
                           statement.range_layout.calls)
    return dataclasses.replace(common, call_weights=weights)


def randomness_digest(session: bytes, round: int, included: Sequence[int], joint_seeds: Sequence[bytes],
                      query_seeds: Sequence[bytes]) -> bytes:
    """What two aggregators compare before combining verifier shares: same clients, same randomness."""
    return hashlib.sha256(context(LABEL, "verify", session, round, len(included), *included,
                                  len(joint_seeds), *joint_seeds, len(query_seeds), *query_seeds)).digest()
