"""The communication graph of one round: who masks with whom and who holds whose shares.

SecAgg (Bonawitz et al., CCS 2017) uses the complete graph: every client masks
with every other. SecAgg+ (Bell et al., CCS 2020) uses a sparse k-regular
graph; ours is the Harary graph H(k, n) laid over a permutation drawn from a
32-byte round seed:

    words      = PRG(round_seed, context("securefl/secagg/v1/graph-order"), n, 64 bits)
    order      = client indices sorted by (words[i], i)        (ring position -> client)
    client at position p  ~  clients at positions p +- 1, ..., p +- h   (mod n)

Semi-honest server: the seed is public, from the session and round,

    round_seed = HKDF-SHA256(session, info=context("securefl/secagg/v1/graph", round, n)).

Malicious server: the server picks the session and who gets which index, so a
public seed would let it grind sessions until its colluders surround a target.
The seed then comes from coins r_v that the clients committed to before any
was revealed (``labels.coin_commitment``), over the committed clients V:

    round_seed = SHA-256(context("securefl/secagg/v1/graph-coins", session, round, n,
                                 indices of V (u32 each), r_v for v in V in index order))

so nobody can compute the graph before every coin is fixed, and a coalition
short of every client can bias it only by aborting (``protocols/secagg.md``).

with h = k/2 for even k. For odd k and even n the client at position p is also
joined to position p + n/2, so every degree is exactly k. A k-regular graph on
n vertices does not exist when k and n are both odd; then h = (k+1)/2 and every
degree is k+1. When the degree would reach n-1 the graph is complete.

The *closed neighbourhood* G(u) = {u} union N(u) (sorted) is the group among
which client u splits its secrets: the holder at position j of G(u) (0-based)
receives the Shamir share with x = j + 1. The share count is m = |G(u)|, the
same for every client since the graph is regular.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence

import numpy as np

from securefl import validation
from securefl.crypto import prg
from securefl.crypto.keys import context, hkdf
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.secagg.labels import indexed_concatenation
from securefl.protocols.secagg.messages import COIN_BYTES

__all__ = ["Graph", "complete_graph", "harary_graph", "round_graph", "graph_order", "order_from_seed", "coin_seed",
           "coin_graph", "effective_degree"]

_GRAPH_SEED_INFO = "securefl/secagg/v1/graph"
_GRAPH_ORDER_LABEL = "securefl/secagg/v1/graph-order"
_GRAPH_COINS_LABEL = "securefl/secagg/v1/graph-coins"


class Graph:
    """An undirected regular graph on clients 0..n-1 (sorted adjacency tuples).

    ``neighbours(u)`` is N(u) (without u), ``closed(u)`` is G(u) (with u);
    ``share_point(owner, holder)`` is the Shamir x of ``holder``'s share of
    ``owner``'s secrets.
    """

    __slots__ = ("clients", "complete", "degree", "_closed", "_sets", "_everyone", "_neighbours")

    def __init__(self, clients: int, closed: Sequence[tuple[int, ...]] | None) -> None:
        self.clients = clients
        self.complete = closed is None
        self._everyone = tuple(range(clients))
        if closed is None:
            self._closed: tuple[tuple[int, ...], ...] | None = None
            self._sets: tuple[frozenset[int], ...] | None = None
            self._neighbours: tuple[tuple[int, ...], ...] | None = None
            self.degree = clients - 1
        else:
            self._closed = tuple(closed)
            self._sets = tuple(frozenset(group) for group in self._closed)
            self._neighbours = tuple(tuple(v for v in group if v != u) for u, group in enumerate(self._closed))
            degrees = {len(group) - 1 for group in self._closed}
            if len(degrees) != 1:  # pragma: no cover - the constructions below are regular
                raise AssertionError(f"graph is not regular: degrees {sorted(degrees)}")
            self.degree = degrees.pop()

    @property
    def group_size(self) -> int:
        """m = |G(u)| = degree + 1, the number of Shamir shares of each client's secrets."""
        return self.degree + 1

    def closed(self, client: int) -> tuple[int, ...]:
        """G(u): the client and its neighbours, sorted."""
        if self._closed is None:
            return self._everyone
        return self._closed[client]

    def neighbours(self, client: int) -> tuple[int, ...]:
        """N(u): the neighbours of ``client``, sorted."""
        if self._neighbours is not None:
            return self._neighbours[client]
        return tuple(v for v in self._everyone if v != client)

    def is_neighbour(self, client: int, other: int) -> bool:
        if client == other or not 0 <= other < self.clients:
            return False
        if self._sets is None:
            return True
        return other in self._sets[client]

    def in_group(self, owner: int, holder: int) -> bool:
        """Is ``holder`` in G(owner)?"""
        return holder == owner or self.is_neighbour(owner, holder)

    def share_point(self, owner: int, holder: int) -> int:
        """The x of ``holder``'s share of ``owner``'s secrets: 1 + position of holder in G(owner)."""
        if self._closed is None:
            if not 0 <= holder < self.clients:
                raise InvalidMessage(f"client/{holder} is not a client of this round")
            return holder + 1
        group = self._closed[owner]
        position = bisect_left(group, holder)
        if position == len(group) or group[position] != holder:
            raise InvalidMessage(f"client/{holder} is not in the neighbourhood of client/{owner}")
        return position + 1

    def count_in_group(self, owner: int, members: frozenset[int] | set[int]) -> int:
        """|G(owner) intersected with members|."""
        if self._sets is None:
            return sum(1 for member in members if 0 <= member < self.clients)
        return len(self._sets[owner].intersection(members))

    def edges(self) -> set[tuple[int, int]]:
        """Every edge as (low, high); for tests and the spec."""
        return {(u, v) for u in range(self.clients) for v in self.neighbours(u) if u < v}

    def __repr__(self) -> str:
        kind = "complete" if self.complete else f"{self.degree}-regular"
        return f"Graph({kind}, clients={self.clients})"


def complete_graph(clients: int) -> Graph:
    """K_n: every client is every other client's neighbour (SecAgg)."""
    return Graph(clients, None)


def order_from_seed(clients: int, round_seed: bytes) -> list[int]:
    """The permutation (ring position -> client) drawn from a 32-byte round seed."""
    words = prg.expand(round_seed, context(_GRAPH_ORDER_LABEL), clients, 64)
    # lexsort's last key is the primary one: sort by word, ties (probability ~n^2/2^65) by index.
    return [int(i) for i in np.lexsort((np.arange(clients), words))]


def graph_order(clients: int, *, session: bytes, round: int) -> list[int]:
    """The public permutation (ring position -> client) of one round, from session and round."""
    return order_from_seed(clients, hkdf(bytes(session), info=context(_GRAPH_SEED_INFO, round, clients)))


def coin_seed(clients: int, *, session: bytes, round: int, coins: Mapping[int, bytes]) -> bytes:
    """The round seed from the revealed coins {v: r_v} of the committed clients (module docstring)."""
    if not coins or any(not 0 <= v < clients or len(coin) != COIN_BYTES for v, coin in coins.items()):
        raise ConfigurationError(f"coins must map client indices in [0, {clients}) to {COIN_BYTES}-byte coins")
    indices, joined = indexed_concatenation(coins)
    return hashlib.sha256(context(_GRAPH_COINS_LABEL, bytes(session), round, clients, indices, joined)).digest()


def effective_degree(clients: int, neighbors: int) -> int:
    """The degree the construction gives for ``neighbors`` = k: k, k+1 (k and n odd) or n-1."""
    degree = neighbors + 1 if neighbors % 2 == 1 and clients % 2 == 1 else neighbors
    return min(degree, clients - 1)


def harary_graph(clients: int, neighbors: int, order: Sequence[int]) -> Graph:
    """H(k, n) over ``order`` (ring position -> client); complete when the degree reaches n-1."""
    validation.positive_int(neighbors, "neighbors")
    if sorted(order) != list(range(clients)):
        raise ConfigurationError("order must be a permutation of the client indices")
    if effective_degree(clients, neighbors) >= clients - 1:
        return complete_graph(clients)
    placed = np.asarray(order, dtype=np.int64)
    half = neighbors // 2 if neighbors % 2 == 0 or clients % 2 == 0 else (neighbors + 1) // 2
    steps = [0, *range(1, half + 1), *range(-half, 0)]
    if neighbors % 2 == 1 and clients % 2 == 0:
        steps.append(clients // 2)  # the opposite position
    # Row p: the clients at ring positions p + step (mod n); every row is a neighbourhood without repeats.
    members = placed[(np.arange(clients)[:, None] + np.array(steps)[None, :]) % clients]
    by_client = np.empty_like(members)
    by_client[placed] = members  # row u: the neighbourhood of client u (its own position is step 0)
    closed = [tuple(row) for row in np.sort(by_client, axis=1).tolist()]
    return Graph(clients, closed)


def round_graph(clients: int, neighbors: int | None, *, session: bytes, round: int) -> Graph:
    """The graph of one round: complete for ``neighbors=None``, else H(k, n) over the round's order."""
    if neighbors is None or effective_degree(clients, neighbors) >= clients - 1:
        return complete_graph(clients)
    return harary_graph(clients, neighbors, graph_order(clients, session=session, round=round))


def coin_graph(clients: int, neighbors: int, *, session: bytes, round: int, coins: Mapping[int, bytes]) -> Graph:
    """The graph of a malicious-server SecAgg+ round: H(k, n) over the order drawn from the clients' coins.

    A deterministic function of (session, round, n, k, coins), so every party
    given the same revealed coins derives the same graph.
    """
    seed = coin_seed(clients, session=session, round=round, coins=coins)
    if effective_degree(clients, neighbors) >= clients - 1:
        return complete_graph(clients)
    return harary_graph(clients, neighbors, order_from_seed(clients, seed))
