"""Exact distributed noise over SecAgg: whole noise shares, the excess removed once the survivors are known.

With n clients and t = the fewest inputs a completed round sums
(``SecAgg.minimum_inputs``), client u adds to its input one noise share

    e_u ~ Sk(V/t) per coordinate, expanded from one 32-byte noise seed s_u,

so a round that completes with m = |U| >= t survivors carries m V/t. The
server then removes exactly m - t whole shares, those of

    D(U) = the m - t members of U that come first when U is sorted by
           SHA-256(context("securefl/secagg/v1/noise-removal-order", round, u))

(ties, which need a SHA-256 collision, broken by index). What stays is the
sum of the t shares of U \\ D(U): Sk(V) per coordinate exactly, the law the
accountant charges, for every m in [t, n] (sums of independent Skellams are
Skellam: Sk(a) + Sk(b) = Sk(a + b), the Poisson halves add).

Seeds and shares. s_u comes from the client's DP stage (its generator: a
simulation's seeded one, else the OS entropy pool; ``InputWithNoiseSeed``) or,
when none came with the input, from the OS CSPRNG. Client u Shamir-shares s_u
among its neighbourhood with its mask key and self-mask seed (one more share
per neighbour) and sends the anchor a_u = HKDF(s_u, context(anchor, session,
round, u)) beside its self-mask commitment. In unmasking each honest client
computes D(U) itself from the survivor set it checked (the set it signed,
against a malicious server) and reveals its share of s_v only for surviving
members v of its neighbourhood in D(U), never for v outside D(U) or dropped;
the server reconstructs s_v, checks it against a_v (a mismatch aborts the
round: the sum would be wrong), expands e_v once and subtracts it.

Threat model. Against the server and c colluding survivors the honest noise
left is at least (t - c) V / t: the t shares kept are those of U \\ D(U), of
which at most c are known to the coalition (the worst case is every colluder
outside D(U)). The order is public and fixed before the round, so the server
cannot choose who loses its noise except by pretending drops, and each
pretended drop lowers m (and so the number of shares removed). The order and
the expansion are bound to the round and the client, not the session: each
seed is fresh per round, the bound above holds for any order, and leaving
the session out keeps a seeded simulation's released noise seed-determined.

The excess noise lives only in the ring before unmasking: removal is exact
mod 2^b, so only the released sum (noise V) must fit the ring.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from securefl import validation
from securefl.crypto import prg
from securefl.crypto.keys import context, derive32
from securefl.errors import ConfigurationError

__all__ = ["NOISE_SAMPLER", "ExactNoise", "InputWithNoiseSeed", "removal_order", "noise_share", "noise_anchor"]

NOISE_SAMPLER = f"numpy-{np.__version__}/pcg64/skellam-as-poisson-difference"
"""The deterministic sampler every party of a session must share (part of the run's fingerprint)."""

_VERSION = "securefl/secagg/v1"
_ORDER = f"{_VERSION}/noise-removal-order"
_ANCHOR = f"{_VERSION}/noise-anchor"
_SHARE = f"{_VERSION}/noise-share"


@dataclass(frozen=True)
class ExactNoise:
    """The public noise schedule of one round: V = ``variance``, t = ``kept`` shares, n = ``clients``.

    Each client adds Sk(V / t); a round of m survivors removes the m - t
    shares of :meth:`removals` and keeps t, Sk(V) in all.
    """

    variance: float
    kept: int
    clients: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "variance", validation.positive_float(self.variance, "noise variance"))
        clients = validation.positive_int(self.clients, "clients")
        kept = validation.positive_int(self.kept, "kept")
        if kept > clients:
            raise ConfigurationError(f"exact noise keeps t={kept} shares, more than the clients n={clients}")

    @property
    def share_variance(self) -> float:
        """V / t: the variance of one client's whole share."""
        return self.variance / self.kept

    def removals(self, survivors: Iterable[int], *, round: int) -> tuple[int, ...]:
        """D(U): the m - t survivors whose shares are removed, in increasing index order.

        ``ConfigurationError`` unless t <= m <= n (callers that take U from a
        peer turn it into their own refusal first).
        """
        members = sorted(set(survivors))
        if not self.kept <= len(members) <= self.clients:
            raise ConfigurationError(f"{len(members)} survivors is outside exact noise's [{self.kept}, "
                                     f"{self.clients}]")
        ordered = removal_order(members, round=round)
        return tuple(sorted(ordered[: len(members) - self.kept]))

    def identity(self) -> tuple[str, str, int, int]:
        """The schedule's fields for the run fingerprint (the variance as an exact float hex)."""
        return (NOISE_SAMPLER, self.variance.hex(), self.kept, self.clients)


def removal_order(clients: Iterable[int], *, round: int) -> list[int]:
    """``clients`` sorted by SHA-256(context(removal order, round, u)): the public order D(U) is a prefix of."""
    def key(client: int) -> tuple[bytes, int]:
        return hashlib.sha256(context(_ORDER, round, client)).digest(), client

    return sorted(clients, key=key)


def noise_anchor(seed: bytes, *, session: bytes, round: int, client: int) -> bytes:
    """a_u = HKDF(s_u, context(anchor, session, round, u)): binds the noise seed, hides it."""
    return derive32(seed, context(_ANCHOR, session, round, client))


def noise_share(seed: bytes, noise: ExactNoise, *, length: int, round: int, client: int) -> NDArray[np.int64]:
    """e_u: ``length`` draws of Sk(V/t) = Poisson(V/2t) - Poisson(V/2t), a function of s_u, the round and u.

    The Poisson mean is nudged up one ulp (never less noise than V/t).
    """
    rng = prg.generator(seed, context(_SHARE, round, client))
    mean = math.nextafter(noise.share_variance / 2.0, math.inf)
    share: NDArray[np.int64] = rng.poisson(mean, size=length).astype(np.int64)
    share -= rng.poisson(mean, size=length).astype(np.int64)
    return share


class InputWithNoiseSeed(np.ndarray):
    """A client's ring vector with the secret seed of its exact-noise share, as its DP stage hands it over.

    The SecAgg client engine takes ``noise_seed`` with the input
    (``SecAggClient.provide_input``) and keeps only a plain copy of the
    vector; arrays derived from this one do not carry the seed.
    """

    noise_seed: bytes | None

    @classmethod
    def of(cls, vector: NDArray[Any], noise_seed: bytes) -> InputWithNoiseSeed:
        if not isinstance(noise_seed, bytes) or len(noise_seed) != prg.SEED_BYTES:
            raise ConfigurationError(f"noise seed must be {prg.SEED_BYTES} bytes")
        carried = np.asarray(vector).view(cls)
        carried.noise_seed = noise_seed
        return carried

    def __array_finalize__(self, obj: Any) -> None:
        self.noise_seed = None
