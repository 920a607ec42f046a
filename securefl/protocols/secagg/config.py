"""``SecAgg``: the protocol configuration, its threshold rules, and the public parameters of one round."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from securefl.crypto.keys import PUBLIC_KEY_BYTES, SigningKey
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import SESSION_BYTES, Parties, Protocol, RunParameters
from securefl.protocols.secagg.graph import Graph, effective_degree, round_graph
from securefl.protocols.secagg.messages import (
    ADVERTISE_KEYS,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    SHARE_KEYS,
    UNMASKING,
)

__all__ = ["SecAgg", "Parameters", "resolve_threshold"]

SEMI_HONEST_PHASES = (ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, UNMASKING)
MALICIOUS_PHASES = (ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASKING)
_SEMI_HONEST_BOUND = Fraction(1, 2)
_MALICIOUS_BOUND = Fraction(2, 3)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _bound(malicious_server: bool) -> Fraction:
    return _MALICIOUS_BOUND if malicious_server else _SEMI_HONEST_BOUND


def resolve_threshold(threshold: int | float | None, group_size: int, *, malicious_server: bool) -> int:
    """The share threshold t for neighbourhoods of ``group_size`` = m clients (each client included).

    ``None``: the smallest t the mode allows, floor(m/2) + 1 (semi-honest) or
    floor(2m/3) + 1 (malicious server), which tolerates the most dropouts.
    A float f in (bound, 1]: t = ceil(f m). An int: t itself. Either way
    t must satisfy bound * m < t <= m, bound = 1/2 or 2/3, else ``ConfigurationError``.
    """
    bound = _bound(malicious_server)
    if threshold is None:
        t = math.floor(bound * group_size) + 1
    elif _is_int(threshold):
        t = int(threshold)
    else:
        t = math.ceil(Fraction(threshold).limit_denominator(10**9) * group_size)
    if not bound * group_size < t <= group_size:
        mode = "malicious-server" if malicious_server else "semi-honest"
        raise ConfigurationError(
            f"threshold {t} does not fit a neighbourhood of {group_size} clients (each client counted in its "
            f"own): {mode} mode needs {bound} * {group_size} < threshold <= {group_size}"
            + (f" (from threshold={threshold!r})" if threshold is not None and not _is_int(threshold) else "")
        )
    return t


@dataclass(frozen=True, kw_only=True)
class SecAgg(Protocol):
    """Pairwise-mask secure aggregation with dropout recovery (Bonawitz et al., CCS 2017).

    ``neighbors=None``: every client masks with every other (SecAgg).
    ``neighbors=k``: each client masks with k others on a random k-regular
    Harary graph (SecAgg+, Bell et al., CCS 2020): O(k) instead of O(n) work.

    Each client splits its mask private key and a fresh self-mask seed into
    Shamir shares among its neighbourhood (itself included, m = k + 1 or n
    shares), any ``threshold`` of which recover them: a float is a fraction
    of m, an int a count, ``None`` the smallest value the mode allows.

    Threat model (``protocols/secagg.md``): the server learns sum_{i in S} x_i
    over the survivors S and nothing else about any x_i, if it is semi-honest
    and colludes with fewer than ``threshold`` clients of any neighbourhood
    (threshold > m/2). With ``malicious_server=True`` the same holds when the
    server lies about who dropped: clients sign the survivor set
    (ConsistencyCheck) and the threshold must exceed 2m/3. Ring bits come from
    ``encoding`` (or ``ring_bits=``, which builds ``Encoding(ring_bits=...)``);
    a sum that could wrap the ring is refused when the protocol is configured.
    """

    threshold: int | float | None = None
    ring_bits: int | None = None
    neighbors: int | None = None
    malicious_server: bool = False
    encoding: Encoding | None = field(default=None)  # type: ignore[assignment]

    secure = True

    def __post_init__(self) -> None:
        if not isinstance(self.malicious_server, bool):
            raise ConfigurationError(f"malicious_server must be True or False; found {self.malicious_server!r}")
        if self.neighbors is not None and (not _is_int(self.neighbors) or self.neighbors < 1):
            raise ConfigurationError(f"neighbors must be a positive integer or None; found {self.neighbors!r}")
        encoding = self.encoding
        if encoding is not None and not isinstance(encoding, Encoding):
            raise ConfigurationError(f"encoding must be an Encoding; found {type(encoding).__name__}")
        if self.ring_bits is not None:
            if not _is_int(self.ring_bits):
                raise ConfigurationError(f"ring_bits must be an integer; found {self.ring_bits!r}")
            if encoding is None:
                encoding = Encoding(ring_bits=int(self.ring_bits))
            elif encoding.ring_bits != self.ring_bits:
                raise ConfigurationError(
                    f"ring_bits={self.ring_bits} disagrees with encoding.ring_bits={encoding.ring_bits}; give one"
                )
        encoding = encoding or Encoding()
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "ring_bits", encoding.ring_bits)
        self._check_threshold_shape()

    def _check_threshold_shape(self) -> None:
        threshold = self.threshold
        bound = _bound(self.malicious_server)
        if threshold is None:
            return
        if _is_int(threshold):
            if threshold < 1:
                raise ConfigurationError(f"threshold must be a positive count or a fraction; found {threshold!r}")
            if self.neighbors is not None:
                # The neighbourhood has k + 1 members (k + 2 when k and n are odd; n when n <= k, checked
                # at setup): the count must fit the largest and exceed the bound of the usual one.
                largest = self.neighbors + 1 + self.neighbors % 2
                resolve_threshold(int(threshold), largest if threshold == largest else self.neighbors + 1,
                                  malicious_server=self.malicious_server)
            return
        if not isinstance(threshold, float) or not math.isfinite(threshold) or not bound < threshold <= 1:
            mode = "malicious-server" if self.malicious_server else "semi-honest"
            raise ConfigurationError(
                f"threshold must be an integer count or a fraction in ({bound}, 1] in {mode} mode; found {threshold!r}"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return "secagg" if self.neighbors is None else "secagg+"

    @property
    def phases(self) -> tuple[str, ...]:  # type: ignore[override]
        return MALICIOUS_PHASES if self.malicious_server else SEMI_HONEST_PHASES

    def group_size(self, clients: int) -> int:
        """m, the neighbourhood size (each client included) for ``clients`` clients."""
        if self.neighbors is None:
            return clients
        return effective_degree(clients, int(self.neighbors)) + 1

    def threshold_for(self, clients: int) -> int:
        """The share threshold t used with ``clients`` clients (``ConfigurationError`` if none fits)."""
        return resolve_threshold(self.threshold, self.group_size(clients), malicious_server=self.malicious_server)

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        """Every engine of one round; in malicious-server mode setup deals every client's signing key."""
        clients = self._check_run(clients, vector_length, session, round)
        signing_keys = [SigningKey.generate() for _ in range(clients)] if self.malicious_server else []
        return self._parties(
            clients=clients, vector_length=vector_length, session=session, round=round,
            verification_keys=tuple(key.public_bytes for key in signing_keys),
            signing_keys=dict(enumerate(signing_keys)),
        )

    def setup_registered(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes],
        signing_keys: Mapping[int, SigningKey],
    ) -> Parties:
        """Malicious-server mode around keys registered elsewhere: no key is dealt here.

        ``verification_keys[i]`` is client i's Ed25519 public key (exactly one
        32-byte key per client, all distinct); ``signing_keys`` holds the
        signing keys of the clients whose engines this process runs (a
        node: its own; the server: none), each matching its registered key.
        ``parties.clients`` holds only those engines. Threat model: the
        malicious-server guarantee holds only if every party got the same,
        authentic ``verification_keys`` (pinned out of band when a server
        relays them).
        """
        if not self.malicious_server:
            raise ConfigurationError("setup_registered is for malicious_server=True; use setup")
        clients = self._check_run(clients, vector_length, session, round)
        if isinstance(verification_keys, (bytes, str)) or not isinstance(verification_keys, Sequence):
            raise ConfigurationError(f"verification_keys must be a sequence of keys; found {type(verification_keys).__name__}")
        if len(verification_keys) != clients:
            raise ConfigurationError(
                f"verification_keys must hold one key per client: {clients} clients; found {len(verification_keys)} keys"
            )
        for index, key in enumerate(verification_keys):
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
                found = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
                raise ConfigurationError(
                    f"verification key {index} must be {PUBLIC_KEY_BYTES} bytes (Ed25519); found {found}"
                )
        if len(set(verification_keys)) != clients:
            raise ConfigurationError("verification_keys must be distinct: one client, one key")
        if not isinstance(signing_keys, Mapping):
            raise ConfigurationError(f"signing_keys must map client indices to keys; found {type(signing_keys).__name__}")
        for index, key in signing_keys.items():
            if not _is_int(index) or not 0 <= index < clients:
                raise ConfigurationError(f"signing_keys names client {index!r}; clients are 0..{clients - 1}")
            if not isinstance(key, SigningKey):
                raise ConfigurationError(f"signing key of client {index} must be a SigningKey; found {type(key).__name__}")
            if key.public_bytes != verification_keys[index]:
                raise ConfigurationError(f"the signing key of client {index} does not match its registered verification key")
        return self._parties(
            clients=clients, vector_length=vector_length, session=session, round=round,
            verification_keys=tuple(bytes(key) for key in verification_keys),
            signing_keys={int(index): key for index, key in signing_keys.items()},
        )

    def _check_run(self, clients: int, vector_length: int, session: bytes, round: int) -> int:
        self.check_clients(clients)
        if not _is_int(vector_length) or vector_length < 1:
            raise ConfigurationError(f"vector_length must be a positive integer; found {vector_length!r}")
        if not isinstance(session, bytes) or len(session) != SESSION_BYTES:
            raise ConfigurationError(f"session must be {SESSION_BYTES} bytes")
        if not _is_int(round) or not 0 <= round < 2**64:
            raise ConfigurationError(f"round must be an integer in [0, 2^64); found {round!r}")
        return int(clients)

    def _parties(self, *, clients: int, vector_length: int, session: bytes, round: int,
                 verification_keys: tuple[bytes, ...], signing_keys: Mapping[int, SigningKey]) -> Parties:
        from securefl.protocols.secagg.client import SecAggClient
        from securefl.protocols.secagg.server import SecAggServer

        threshold = self.threshold_for(clients)
        graph = round_graph(clients, None if self.neighbors is None else int(self.neighbors), session=session, round=int(round))
        parameters = Parameters(
            protocol=self,
            clients=clients,
            length=int(vector_length),
            session=session,
            round=int(round),
            graph=graph,
            threshold=threshold,
            verification_keys=verification_keys,
        )
        indices = sorted(signing_keys) if self.malicious_server else range(clients)
        engines = [SecAggClient(i, parameters, signing_key=signing_keys.get(i)) for i in indices]
        return Parties(server=SecAggServer(parameters), clients=engines)

    def describe(self) -> str:
        graph = "complete graph" if self.neighbors is None else f"{self.neighbors} neighbours per client"
        if self.threshold is None:
            threshold = "threshold > 2/3" if self.malicious_server else "threshold > 1/2"
            threshold += " of each neighbourhood"
        else:
            threshold = f"threshold {self.threshold}"
        server = "malicious server" if self.malicious_server else "semi-honest server"
        return f"{self.name} ({graph}, {threshold}, {server}, {self.encoding.ring_bits}-bit ring)"


@dataclass(frozen=True)
class Parameters(RunParameters):
    """The public parameters every engine of one aggregation shares.

    ``verification_keys[i]`` is client i's Ed25519 public key, registered at
    setup (malicious-server mode; empty otherwise).
    """

    protocol: SecAgg
    graph: Graph
    threshold: int
    verification_keys: tuple[bytes, ...]

    @property
    def malicious_server(self) -> bool:
        return self.protocol.malicious_server

    @property
    def phases(self) -> tuple[str, ...]:
        return self.protocol.phases
