"""SecAgg's threshold rules, phase lists and the public parameters of one round (plain data)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from securefl import validation
from securefl.errors import ConfigurationError
from securefl.protocols.base import RunParameters
from securefl.protocols.secagg.graph import Graph, effective_degree
from securefl.protocols.secagg.messages import (
    ADVERTISE_KEYS,
    COMMIT_COINS,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    SHARE_KEYS,
    UNMASKING,
)
from securefl.protocols.secagg.noise import ExactNoise

__all__ = ["Parameters", "resolve_threshold", "threshold_bound", "phases_of", "SEMI_HONEST_PHASES",
           "MALICIOUS_PHASES", "MALICIOUS_SPARSE_PHASES"]

SEMI_HONEST_PHASES = (ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, UNMASKING)
MALICIOUS_PHASES = (ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASKING)
MALICIOUS_SPARSE_PHASES = (COMMIT_COINS, *MALICIOUS_PHASES)
"""Malicious-server SecAgg+: the graph is drawn from coins the clients commit to first."""


def phases_of(*, malicious_server: bool, neighbors: int | None) -> tuple[str, ...]:
    """The phases of a SecAgg configuration (the same for every cohort size)."""
    if not malicious_server:
        return SEMI_HONEST_PHASES
    return MALICIOUS_PHASES if neighbors is None else MALICIOUS_SPARSE_PHASES
_SEMI_HONEST_BOUND = Fraction(1, 2)
_MALICIOUS_BOUND = Fraction(2, 3)


def threshold_bound(malicious_server: bool) -> Fraction:
    """The fraction of a neighbourhood the threshold must exceed: 1/2, or 2/3 against a malicious server."""
    return _MALICIOUS_BOUND if malicious_server else _SEMI_HONEST_BOUND


def resolve_threshold(threshold: int | float | None, group_size: int, *, malicious_server: bool) -> int:
    """The share threshold t for neighbourhoods of ``group_size`` = m clients (each client included).

    ``None``: the smallest t the mode allows, floor(m/2) + 1 (semi-honest) or
    floor(2m/3) + 1 (malicious server), which tolerates the most dropouts.
    A float f in (bound, 1]: t = ceil(f m). An int: t itself. Either way
    t must satisfy bound * m < t <= m, bound = 1/2 or 2/3, else ``ConfigurationError``.
    """
    bound = threshold_bound(malicious_server)
    if threshold is None:
        t = math.floor(bound * group_size) + 1
    elif validation.is_integer(threshold):
        t = int(threshold)
    else:
        t = math.ceil(Fraction(threshold).limit_denominator(10**9) * group_size)
    if not bound * group_size < t <= group_size:
        mode = "malicious-server" if malicious_server else "semi-honest"
        raise ConfigurationError(
            f"threshold {t} does not fit a neighbourhood of {group_size} clients (each client counted in its "
            f"own): {mode} mode needs {bound} * {group_size} < threshold <= {group_size}"
            + (f" (from threshold={threshold!r})" if isinstance(threshold, float) else "")
        )
    return t


@dataclass(frozen=True)
class Parameters(RunParameters):
    """The public parameters every engine of one SecAgg round shares.

    ``graph`` says who masks with whom, or is None when the clients' coins
    draw it during the round (malicious-server SecAgg+, ``coin_graph``):
    then ``neighbors`` is its k. ``threshold`` is the Shamir threshold t of
    every neighbourhood; ``verification_keys[i]`` is client i's Ed25519
    public key, registered at setup (malicious-server mode; empty otherwise).
    ``noise`` is the schedule of exact distributed noise (``noise.ExactNoise``:
    each client adds a whole Sk(V/t) share from a seed it Shamir-shares, the
    server removes m - t of them), or None when the inputs carry none.
    """

    graph: Graph | None
    threshold: int
    malicious_server: bool
    verification_keys: tuple[bytes, ...]
    neighbors: int | None = None
    noise: ExactNoise | None = None

    def __post_init__(self) -> None:
        drawn = COMMIT_COINS in self.phases
        if (self.graph is None) != drawn or (drawn and (self.neighbors is None or not self.malicious_server)):
            raise ConfigurationError("a SecAgg graph is drawn from coins exactly in malicious-server SecAgg+, "
                                     "whose phases begin with commit-coins")
        noise = self.noise
        if noise is not None and (not isinstance(noise, ExactNoise) or noise.clients != self.clients
                                  or noise.kept < self.threshold):
            raise ConfigurationError(f"exact noise must be an ExactNoise over the round's {self.clients} clients "
                                     f"keeping at least the threshold {self.threshold} shares; found {noise!r}")

    @property
    def shares_noise_seed(self) -> bool:
        """Whether each client shares a noise seed (exact noise): one more Shamir share per neighbour."""
        return self.noise is not None

    @property
    def coin_graph(self) -> bool:
        """Whether the graph is drawn from the clients' committed coins (malicious-server SecAgg+)."""
        return self.graph is None

    @property
    def group_size(self) -> int:
        """m = |G(u)|, known before the graph is drawn (it depends on n and k only)."""
        if self.graph is not None:
            return self.graph.group_size
        return effective_degree(self.clients, self.neighbors or 0) + 1

    def _identity(self) -> tuple[bytes | str | int, ...]:
        graph = self.graph
        if graph is None:
            shape: tuple[bytes | str | int, ...] = ("coins", self.neighbors or 0)
        else:
            adjacency = b"" if graph.complete else np.array(
                [graph.closed(client) for client in range(self.clients)], dtype=">u4").tobytes()
            shape = (int(graph.complete), graph.degree, adjacency)
        noise = () if self.noise is None else self.noise.identity()
        return (*super()._identity(), *shape, self.threshold,
                int(self.malicious_server), len(self.verification_keys), *self.verification_keys, *noise)
