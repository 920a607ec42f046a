"""Exact distributed noise over SecAgg: a removable Skellam ladder (add-then-remove).

The idea is Dordis's XNoise (Jiang, Wang & Chen, EuroSys 2024): each client
adds more noise than the released sum needs, in components generated from
seeds it Shamir-shares like its self-mask seed; once the survivor set U is
fixed the unmasking step reveals exactly the seeds whose components must go,
so the sum carries the target variance V whatever the number of survivors.

With n clients and t = the fewest inputs a completed round sums, client u
adds, per coordinate,

    base   Sk(V/n)                                  (fresh noise, never removed)
    c_k    Sk(w_k),  w_k = V/k - V/(k+1) = V/(k(k+1)),   k = t .. n-1   (removable)

in total V/n + sum_{k=t}^{n-1} w_k = V/t (the telescoping sum). A round that
completes with m = |U| >= t survivors removes c_t .. c_{m-1} of every
survivor, leaving sum_{k=m}^{n-1} w_k + V/n = V/m per survivor, m V/m = V in
all. Sums of independent Skellams are Skellam (Sk(a) + Sk(b) = Sk(a + b):
the Poisson halves add), so what remains is *exactly* Sk(V) per coordinate,
the law the accountant charges, for every m in [t, n].

Seeds: a hash chain per client. s_{n-1} is 32 bytes from the OS CSPRNG and
s_k = HKDF(s_{k+1}, "chain", session, round, u, k) down to s_t; c_k is
expanded from s_k alone (``prg.generator``), and the anchor
a_u = HKDF(s_t, "anchor", session, round, u) goes to the server with the
self-mask commitment. Client u Shamir-shares every s_k (k = t..n-1) among its
neighbourhood with its mask key and self-mask seed. To remove c_t .. c_{m-1}
the server needs only s_{m-1} (it hashes down to s_t and checks a_u), and
s_{m-1} tells it nothing of s_m .. s_{n-1} (HKDF is one-way), so the
components that must stay, k >= m, stay hidden. m is never taken from the
server: each honest client computes it from the survivor set it checked
(signed, against a malicious server) and reveals its share of s_{m-1} of a
survivor together with that survivor's self-mask share, never for a dropped
client.

The excess noise lives only in the ring before unmasking: removal is exact
mod 2^b, so only the released sum (noise V) must fit the ring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from securefl import validation
from securefl.crypto import prg
from securefl.crypto.keys import context, derive32
from securefl.errors import ConfigurationError

__all__ = ["NOISE_SAMPLER", "NoiseLadder", "noise_chain", "chain_down", "noise_anchor", "component",
           "excess_noise"]

NOISE_SAMPLER = f"numpy-{np.__version__}/pcg64/skellam-as-poisson-difference"
"""The deterministic sampler every party of a session must share (part of the run's fingerprint)."""

_VERSION = "securefl/secagg/v1"
_CHAIN = f"{_VERSION}/noise-chain"
_ANCHOR = f"{_VERSION}/noise-anchor"
_COMPONENT = f"{_VERSION}/noise-component"


@dataclass(frozen=True)
class NoiseLadder:
    """The public noise schedule of one round: V, t = ``first`` and n = ``clients``.

    Removable levels k = t..n-1 of variance V/(k(k+1)) each; the base share
    V/n is added by the client's DP stage (fresh noise, never shared).
    """

    variance: float
    first: int
    clients: int

    def __post_init__(self) -> None:
        variance = self.variance
        if isinstance(variance, bool) or not isinstance(variance, (int, float)) or not math.isfinite(variance) \
                or variance <= 0:
            raise ConfigurationError(f"noise variance must be a positive finite number; found {variance!r}")
        object.__setattr__(self, "variance", float(variance))
        clients = validation.positive_int(self.clients, "clients")
        first = validation.positive_int(self.first, "first")
        if first > clients:
            raise ConfigurationError(f"the ladder's first level t={first} exceeds the clients n={clients}")

    @property
    def levels(self) -> range:
        """The removable levels k = t .. n-1."""
        return range(self.first, self.clients)

    @property
    def count(self) -> int:
        """n - t: the seeds each client shares."""
        return self.clients - self.first

    @property
    def base_variance(self) -> float:
        """V/n: the fresh share each client adds itself."""
        return self.variance / self.clients

    def component_variance(self, level: int) -> float:
        """w_k = V/k - V/(k+1) = V/(k(k+1))."""
        return self.variance / (level * (level + 1))

    def reveal_level(self, survivors: int) -> int | None:
        """The seed level whose share is revealed for m = ``survivors``: m - 1, or None when m = t (nothing goes)."""
        if not self.first <= survivors <= self.clients:
            raise ConfigurationError(f"{survivors} survivors is outside the ladder's [{self.first}, {self.clients}]")
        return survivors - 1 if survivors > self.first else None

    def identity(self) -> tuple[str, str, int, int]:
        """The ladder's fields for the run fingerprint (the variance as an exact float hex)."""
        return (NOISE_SAMPLER, self.variance.hex(), self.first, self.clients)


def _chain_step(seed: bytes, *, session: bytes, round: int, client: int, level: int) -> bytes:
    """s_level = HKDF(s_{level+1}, context(chain, session, round, client, level))."""
    return derive32(seed, context(_CHAIN, session, round, client, level))


def noise_chain(top: bytes, ladder: NoiseLadder, *, session: bytes, round: int, client: int) -> dict[int, bytes]:
    """{k: s_k} for k = t..n-1 from s_{n-1} = ``top`` (32 bytes from the OS CSPRNG)."""
    if len(top) != prg.SEED_BYTES:
        raise ConfigurationError(f"noise seed must be {prg.SEED_BYTES} bytes; found {len(top)}")
    return chain_down(top, level=ladder.clients - 1, first=ladder.first, session=session, round=round,
                      client=client)


def chain_down(seed: bytes, *, level: int, first: int, session: bytes, round: int, client: int) -> dict[int, bytes]:
    """{k: s_k} for k = first..level, from s_level = ``seed`` (hashing down the chain)."""
    seeds = {level: bytes(seed)}
    for k in range(level - 1, first - 1, -1):
        seeds[k] = _chain_step(seeds[k + 1], session=session, round=round, client=client, level=k)
    return seeds


def noise_anchor(lowest: bytes, *, session: bytes, round: int, client: int) -> bytes:
    """a_u = HKDF(s_t, context(anchor, session, round, u)): binds every seed of the chain, hides them."""
    return derive32(lowest, context(_ANCHOR, session, round, client))


def component(seed: bytes, ladder: NoiseLadder, *, level: int, length: int, session: bytes, round: int,
              client: int) -> NDArray[np.int64]:
    """c_k: ``length`` draws of Sk(w_k) = Poisson(w_k/2) - Poisson(w_k/2), a function of s_k alone.

    The Poisson mean is nudged up one ulp (never less noise than w_k).
    """
    rng = prg.generator(seed, context(_COMPONENT, session, round, client, level))
    mean = math.nextafter(ladder.component_variance(level) / 2.0, math.inf)
    noise: NDArray[np.int64] = rng.poisson(mean, size=length).astype(np.int64)
    noise -= rng.poisson(mean, size=length).astype(np.int64)
    return noise


def excess_noise(seeds: dict[int, bytes], ladder: NoiseLadder, *, levels: Iterable[int], length: int,
                 session: bytes, round: int, client: int) -> NDArray[np.int64]:
    """sum of c_k over ``levels`` (each from ``seeds[k]``): what a client adds, or what the server removes."""
    total = np.zeros(length, dtype=np.int64)
    for level in levels:
        total += component(seeds[level], ladder, level=level, length=length, session=session, round=round,
                           client=client)
    return total
