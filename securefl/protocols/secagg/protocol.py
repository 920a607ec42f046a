"""``SecAgg``: the protocol configuration; it makes the engines of one round.

With ``malicious_server=True`` and ``neighbors=k`` the run parameters carry no
graph: the clients' committed coins draw it during the round (phase
commit-coins first; ``graph.coin_graph``), so a server that picks the session
and the index assignment cannot choose it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from securefl import validation
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SigningKey
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import (
    DEFAULT_MIN_CLIENTS,
    ClientEngine,
    Engine,
    Parties,
    Protocol,
    RunParameters,
    ServerEngine,
    check_min_clients,
)
from securefl.protocols.secagg.client import SecAggClient
from securefl.protocols.secagg.config import Parameters, phases_of, resolve_threshold, threshold_bound
from securefl.protocols.secagg.graph import effective_degree, round_graph
from securefl.protocols.secagg.noise import ExactNoise
from securefl.protocols.secagg.server import SecAggServer
from securefl.protocols.wire import SERVER

__all__ = ["SecAgg"]


def _check_verification_keys(verification_keys: Sequence[bytes], clients: int) -> tuple[bytes, ...]:
    """One 32-byte Ed25519 key per client, all distinct (``ConfigurationError`` otherwise)."""
    if isinstance(verification_keys, (bytes, str)) or not isinstance(verification_keys, Sequence):
        raise ConfigurationError(
            f"verification_keys must be a sequence of keys; found {type(verification_keys).__name__}"
        )
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
    return tuple(bytes(key) for key in verification_keys)


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
    over the survivors S, |S| >= max(threshold, ``min_clients``), and nothing else about any x_i, if it is semi-honest
    and colludes with fewer than ``threshold`` clients of any neighbourhood
    (threshold > m/2). With ``malicious_server=True`` the same holds when the
    server lies about who dropped: clients sign the survivor set
    (ConsistencyCheck) and the threshold must exceed 2m/3. Ring bits come from
    ``encoding`` (or ``ring_bits=``, which builds ``Encoding(ring_bits=...)``);
    a sum that could wrap the ring is refused when the protocol is configured.

    ``noise_variance`` V (ring units; exact distributed noise, ``noise``):
    each client adds a whole noise share Sk(V/t) (t = ``minimum_inputs``)
    expanded from one seed it shares like its self-mask seed; with m
    survivors the server removes the m - t shares of D(U), a public hash
    order of the survivor set U, so the unmasked sum carries exactly Sk(V)
    for every m in [t, n]. Honest clients compute D(U) from the survivor set
    they checked and reveal seed shares for nobody else: against the server
    and c colluding survivors at least (t - c) V / t of honest noise stays.
    """

    threshold: int | float | None = None
    ring_bits: int | None = None
    neighbors: int | None = None
    malicious_server: bool = False
    min_clients: int = DEFAULT_MIN_CLIENTS
    encoding: Encoding = field(default=None)  # type: ignore[assignment]  # None: Encoding(ring_bits=...) or the default
    noise_variance: float | None = None

    secure = True

    def __post_init__(self) -> None:
        validation.boolean(self.malicious_server, "malicious_server")
        if self.neighbors is not None and (not validation.is_integer(self.neighbors) or self.neighbors < 1):
            raise ConfigurationError(f"neighbors must be a positive integer or None; found {self.neighbors!r}")
        encoding = self.encoding
        if encoding is not None and not isinstance(encoding, Encoding):
            raise ConfigurationError(f"encoding must be an Encoding; found {type(encoding).__name__}")
        if self.ring_bits is not None:
            if not validation.is_integer(self.ring_bits):
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
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, encoding))
        self._check_threshold_shape()
        if self.noise_variance is not None:
            ExactNoise(variance=self.noise_variance, kept=1, clients=1)  # a positive finite V, or refused

    def exact_noise(self, clients: int) -> ExactNoise | None:
        """The exact-noise schedule of a round of ``clients`` clients (None without ``noise_variance``)."""
        if self.noise_variance is None:
            return None
        return ExactNoise(variance=float(self.noise_variance), kept=self.minimum_inputs(clients), clients=clients)

    def _check_threshold_shape(self) -> None:
        threshold = self.threshold
        bound = threshold_bound(self.malicious_server)
        if threshold is None:
            return
        if validation.is_integer(threshold):
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
        return phases_of(malicious_server=self.malicious_server, neighbors=self.neighbors)

    def group_size(self, clients: int) -> int:
        """m, the neighbourhood size (each client included) for ``clients`` clients."""
        if self.neighbors is None:
            return clients
        return effective_degree(clients, int(self.neighbors)) + 1

    def threshold_for(self, clients: int) -> int:
        """The share threshold t used with ``clients`` clients (``ConfigurationError`` if none fits)."""
        return resolve_threshold(self.threshold, self.group_size(clients), malicious_server=self.malicious_server)

    @property
    def registers_client_keys(self) -> bool:
        """In malicious-server mode every client's Ed25519 key is registered with every party (``setup_registered``)."""
        return bool(self.malicious_server)

    def minimum_inputs(self, clients: int) -> int:
        """max(min_clients, t): every survivor's self-mask needs t shares, so a round sums at least t inputs."""
        clients = validation.positive_int(clients, "clients")
        return min(clients, max(self.min_clients, self.threshold_for(clients)))

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> Parameters:
        """The public parameters of one round: the graph, the threshold and, in malicious-server mode, the keys.

        ``verification_keys[i]`` is client i's Ed25519 public key (malicious-server
        mode: exactly one 32-byte key per client, all distinct; semi-honest: none).
        """
        base = self._base_run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
        if self.malicious_server:
            keys = _check_verification_keys(verification_keys, base.clients)
        elif len(verification_keys):
            raise ConfigurationError(
                "verification_keys are for malicious_server=True; semi-honest SecAgg signs nothing"
            )
        else:
            keys = ()
        neighbors = None if self.neighbors is None else int(self.neighbors)
        # Malicious-server SecAgg+: no graph yet; the clients' coins draw it during the round.
        graph = None if self.malicious_server and neighbors is not None else round_graph(
            base.clients, neighbors, session=base.session, round=base.round)
        return Parameters(
            **vars(base),
            graph=graph,
            threshold=self.threshold_for(base.clients),
            malicious_server=self.malicious_server,
            verification_keys=keys,
            neighbors=neighbors,
            noise=self.exact_noise(base.clients),
        )

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        """Every engine of one round; in malicious-server mode setup deals every client's signing key."""
        clients = self._base_run_parameters(
            clients=clients, vector_length=vector_length, session=session, round=round
        ).clients
        signing_keys = [SigningKey.generate() for _ in range(clients)] if self.malicious_server else []
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                  verification_keys=[key.public_bytes for key in signing_keys])
        engines = [SecAggClient(i, run, signing_key=signing_keys[i] if signing_keys else None)
                   for i in range(run.clients)]
        return Parties(server=SecAggServer(run), clients=list(engines))

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
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                  verification_keys=verification_keys)
        if not isinstance(signing_keys, Mapping):
            raise ConfigurationError(
                f"signing_keys must map client indices to keys; found {type(signing_keys).__name__}"
            )
        for index in signing_keys:
            if not validation.is_integer(index) or not 0 <= index < run.clients:
                raise ConfigurationError(f"signing_keys names client {index!r}; clients are 0..{run.clients - 1}")
        engines = [self.client_engine(int(index), run, signing_key=signing_keys[index])
                   for index in sorted(signing_keys)]
        return Parties(server=SecAggServer(run), clients=list(engines))

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone; in malicious-server mode with its own registered ``signing_key``."""
        index, parameters = self._client_run(index, run, signing_key, Parameters)
        if self.malicious_server:
            if not isinstance(signing_key, SigningKey):
                raise ConfigurationError(
                    f"signing key of client {index} must be a SigningKey; found {type(signing_key).__name__}"
                )
            if signing_key.public_bytes != parameters.verification_keys[index]:
                raise ConfigurationError(
                    f"the signing key of client {index} does not match its registered verification key"
                )
        return SecAggClient(index, parameters, signing_key=signing_key)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        if not isinstance(run, Parameters):
            raise ConfigurationError(f"{self.name} engines need its run_parameters; found {type(run).__name__}")
        return SecAggServer(run)

    def _engine_class(self, party: str) -> type[Engine]:
        return SecAggServer if party == SERVER else SecAggClient

    def describe(self) -> str:
        graph = "complete graph" if self.neighbors is None else f"{self.neighbors} neighbours per client"
        if self.threshold is None:
            threshold = "threshold > 2/3" if self.malicious_server else "threshold > 1/2"
            threshold += " of each neighbourhood"
        else:
            threshold = f"threshold {self.threshold}"
        server = "malicious server" if self.malicious_server else "semi-honest server"
        noise = "" if self.noise_variance is None else ", exact noise"
        return f"{self.name} ({graph}, {threshold}, {server}, {self.encoding.ring_bits}-bit ring{noise})"
