"""``ValidatedSharing``: additive secret sharing whose aggregators verify each update is norm-bounded.

Each client secret-shares its encoded update q = SR(w s x) and its weight
digits, then (after the aggregators' joint randomness) the digits of a
random projection of q and fully linear proofs (:mod:`.statement`,
:mod:`.proof`) that its weight w is in [1, W] and ||q||_2^2 <= w^2 N,
N = floor((B s)^2) (B the public norm bound, s the encoding scale): the
weighted contribution obeys ||x||_2 <= B up to rounding. The aggregators
verify with randomness drawn after each commitment and sum only the clients
whose proof verifies; the others are excluded with a typed :class:`Rejection`.

Threat model: clients may be malicious (any bytes); aggregators and the
server semi-honest, at least one aggregator not colluding with the server
(privacy as for :class:`SecretSharing`; one aggregator's view of an honest
client is simulatable). A malicious aggregator can make any client fail or
pass (robustness needs every aggregator honest) but learns nothing more than
a semi-honest one. A weight is self-reported: a client may claim up to
W = ``encoding.max_weight`` (set it to 1 for unweighted sums).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from securefl import validation
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SigningKey
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.base import (
    DEFAULT_MIN_CLIENTS,
    ClientEngine,
    Engine,
    Parties,
    Protocol,
    RespondingEngine,
    RunParameters,
    ServerEngine,
    check_min_clients,
)
from securefl.protocols.validated.engines import (
    PHASES,
    Aggregator,
    Client,
    Server,
    ValidatedRun,
    aggregator_id,
    aggregator_index,
    checked_run,
    valid_aggregator_keys,
)
from securefl.protocols.validated.statement import Statement
from securefl.protocols.wire import SERVER

__all__ = ["ValidatedSharing", "DEFAULT_NORM_BOUND"]

DEFAULT_NORM_BOUND = 10.0
"""The default L2 bound B on an update, in the update's own units."""


@dataclass(frozen=True)
class ValidatedSharing(Protocol):
    """Secret sharing to ``aggregators`` aggregators that drop every update with ||x||_2 > ``norm_bound``.

    ``digit_bits`` s: the weight, projection and slack digits are in base
    2^s (1..4); larger s means fewer digits but a degree-2^s range gadget,
    whose single-slot proof grows with the degree (base 4 is the smallest
    upload at d = 10^5). ``cheating_provers`` (attack
    simulation only, see :meth:`with_cheating_provers`) are the client
    indices whose engines prove any input instead of refusing a false
    statement.
    """

    norm_bound: float = DEFAULT_NORM_BOUND
    aggregators: int = 2
    digit_bits: int = 2
    min_clients: int = DEFAULT_MIN_CLIENTS
    encoding: Encoding = field(default_factory=Encoding)
    cheating_provers: frozenset[int] = frozenset()
    aggregator_keys: tuple[bytes, ...] = ()
    signing_keys: Mapping[str, SigningKey] = field(default_factory=dict, compare=False, repr=False)
    _cache: dict[str, dict[str, SigningKey]] = field(default_factory=dict, init=False, compare=False, repr=False)

    name = "validated-sharing"
    secure = True
    modular_sum = False
    helpers_message_each_other = True
    phases = PHASES

    def __post_init__(self) -> None:
        object.__setattr__(self, "aggregators", validation.integer(self.aggregators, "aggregators", minimum=2))
        object.__setattr__(self, "digit_bits", validation.integer(self.digit_bits, "digit_bits", minimum=1, maximum=4))
        object.__setattr__(self, "norm_bound", validation.positive_float(self.norm_bound, "norm_bound"))
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))
        keys = tuple(self.aggregator_keys)
        if keys and not valid_aggregator_keys(keys, self.aggregators):
            raise ConfigurationError(f"aggregator_keys must be {self.aggregators} distinct 32-byte Ed25519 "
                                     "verification keys, one per aggregator, or empty")
        object.__setattr__(self, "aggregator_keys", keys)
        parties = self.helper_parties()
        for party, key in self.signing_keys.items():
            if party not in parties or not isinstance(key, SigningKey):
                raise ConfigurationError(f"signing_keys maps aggregators {parties} to SigningKeys; found {party!r}")
            if keys and key.public_bytes != keys[parties.index(party)]:
                raise ConfigurationError(f"the signing key given for {party} is not the one aggregator_keys lists")
        cheating = frozenset(self.cheating_provers)
        if not all(validation.is_integer(index) and index >= 0 for index in cheating):
            raise ConfigurationError(f"cheating_provers must be client indices >= 0; found {self.cheating_provers!r}")
        object.__setattr__(self, "cheating_provers", frozenset(int(index) for index in cheating))
        if self.norm_squared < 1:
            raise ConfigurationError(
                f"norm_bound={self.norm_bound} is below one quantisation step {self.encoding.step}"
            )

    @property
    def norm_squared(self) -> int:
        """N = floor((B s)^2): the squared bound in ring units (s = the encoding's scale)."""
        return int(math.floor((self.norm_bound * self.encoding.scale) ** 2))

    def honest_clip_norm(self, dimension: int) -> float:
        """The L2 norm an honest client clips its update of ``dimension`` values to, so that its proof verifies.

        Encoding gives q = SR(w s x) with |q_i - w s x_i| < 1 per coordinate
        (the coordinate clip and the clamp only shrink |q_i|), so
        ||q|| < w s ||x|| + sqrt(d); with ||x|| <= (sqrt(N) - sqrt(d) - 1) / s
        and w >= 1, ||q|| <= w sqrt(N) (the extra ring unit absorbs float
        rounding of w s x). ``ConfigurationError`` when that is not positive:
        B is too small for d values at this encoding.
        """
        dimension = validation.positive_int(dimension, "dimension")
        room = math.sqrt(self.norm_squared) - math.sqrt(dimension) - 1.0
        if room <= 0:
            raise ConfigurationError(
                f"norm_bound={self.norm_bound:g} leaves no room for the rounding of {dimension} values (up to "
                f"sqrt(d)={math.sqrt(dimension):.1f} quantisation steps of {self.encoding.step:g}); raise norm_bound "
                f"or value_bits")
        return room / self.encoding.scale

    def with_cheating_provers(self, clients: Collection[int]) -> ValidatedSharing:
        """This protocol, with the engines of ``clients`` proving any input (a poisoning simulation).

        A malicious client runs its own code, so it does not stop at its own
        check; the aggregators still verify its proof and reject it.
        """
        return dataclasses.replace(self, cheating_provers=frozenset(clients))

    def statement(self, vector_length: int) -> Statement:
        """The statement for encoded vectors of ``vector_length`` (updates of vector_length - 1 values + weight)."""
        if vector_length < 2:
            raise ConfigurationError(f"vector_length must be >= 2 (values and the weight); found {vector_length}")
        return Statement(vector_length - 1, self.digit_bits, self.norm_squared, self.encoding.max_weight)

    def run_parameters(self, *, clients: int, vector_length: int, session: bytes, round: int,
                       verification_keys: Sequence[bytes] = ()) -> ValidatedRun:
        """The run's public parameters; ``aggregator_keys`` must be set (``setup`` deals them in process; over
        Flower each aggregator publishes its own and :meth:`with_aggregator_keys` binds them)."""
        base = super().run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                      verification_keys=verification_keys)
        if base.length > 1:
            self.statement(base.length)  # refuses a length whose squared norm could wrap the field
        self._check_ring_headroom(base.clients)
        return ValidatedRun(**vars(base), aggregators=self.aggregators, digit_bits=self.digit_bits,
                            norm_squared=self.norm_squared, max_weight=self.encoding.max_weight,
                            aggregator_keys=self._public_keys())

    def _private_keys(self) -> Mapping[str, SigningKey]:
        """The aggregators' signing keys this process holds: ``signing_keys``, else (unbound, in process) a key
        pair per aggregator made once, on first use, as a dealer would."""
        if self.signing_keys or self.aggregator_keys:
            return self.signing_keys
        dealt = self._cache.get("keys")
        if dealt is None:
            dealt = self._cache["keys"] = {party: SigningKey.generate() for party in self.helper_parties()}
        return dealt

    def _public_keys(self) -> tuple[bytes, ...]:
        """The aggregators' verification keys: as bound (``aggregator_keys``), else those of the held keys."""
        if self.aggregator_keys:
            return tuple(self.aggregator_keys)
        held = self._private_keys()
        if set(held) != set(self.helper_parties()):
            raise ConfigurationError(f"{self.name} needs every aggregator's verification key: bind the published "
                                     "ones (with_aggregator_keys) or hold every signing key")
        return tuple(held[party].public_bytes for party in self.helper_parties())

    def with_aggregator_keys(self, published: Mapping[str, bytes]) -> ValidatedSharing:
        """This protocol around the verification keys its aggregators published ({"aggregator/j": key})."""
        keys = tuple(published.get(party, b"") for party in self.helper_parties())
        missing = [party for party, key in zip(self.helper_parties(), keys) if len(key) != PUBLIC_KEY_BYTES]
        if missing:
            raise InvalidMessage(f"{', '.join(missing)} published no 32-byte Ed25519 verification key")
        return dataclasses.replace(self, aggregator_keys=keys)

    def with_signing_key(self, party: str, key: SigningKey) -> ValidatedSharing:
        """This protocol holding aggregator ``party``'s own signing key (its node's)."""
        return dataclasses.replace(self, signing_keys={**self.signing_keys, party: key})

    def _check_ring_headroom(self, clients: int) -> None:
        """``ConfigurationError`` unless the accepted sum fits the ring's signed range.

        The statement bounds each accepted coordinate only through the norm,
        q_i^2 <= ||q||^2 <= N w^2 (a dishonest client need not clip
        coordinates), so clients x max(W M, isqrt(N W^2)) must stay below 2^(k-1).
        """
        encoding = self.encoding
        weight = encoding.max_weight
        largest = max(weight * ((1 << (encoding.value_bits - 1)) - 1), math.isqrt(self.norm_squared * weight * weight))
        worst = clients * largest
        limit = (1 << (encoding.ring_bits - 1)) - 1
        if worst > limit:
            raise ConfigurationError(
                f"{clients} accepted updates of weight up to {weight} and a coordinate up to the norm bound "
                f"({largest} ring units at weight {weight}) can sum to {worst}, beyond 2^(ring_bits-1)-1 = {limit}: "
                f"lower norm_bound (now {self.norm_bound:g}, clip {encoding.clip:g}), max_weight or the clients, or "
                "raise ring_bits")

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        """Every engine, the aggregators' with the signing keys this process holds (dealt once when unbound)."""
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
        return Parties(server=Server(run),
                       clients=[Client(i, run, cheating_prover=i in self.cheating_provers) for i in range(run.clients)],
                       helpers=[self.helper_engine(party, run) for party in self.helper_parties()])

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        index, checked = self._client_run(index, run, signing_key, ValidatedRun)
        return Client(index, checked, cheating_prover=index in self.cheating_provers)

    def helper_parties(self) -> tuple[str, ...]:
        return tuple(aggregator_id(j) for j in range(self.aggregators))

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        checked = checked_run(run)
        if party not in {aggregator_id(j) for j in range(checked.aggregators)}:
            raise ConfigurationError(f"validated-sharing with {checked.aggregators} aggregators has no party {party!r}")
        key = self._private_keys().get(party)
        if key is None:
            raise ConfigurationError(f"{party} signs its joint seeds: build its engine from a protocol holding its "
                                     "signing key (with_signing_key; its node makes one at discovery)")
        return Aggregator(aggregator_index(party, checked), checked, key)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        return Server(checked_run(run))

    def _engine_class(self, party: str) -> type[Engine]:
        if party == SERVER:
            return Server
        return Aggregator if party.startswith("aggregator/") else Client

    def describe(self) -> str:
        return (f"validated-sharing ({self.aggregators} aggregators, ||x||_2 <= {self.norm_bound:g}, "
                f"base-{1 << self.digit_bits} digits)")
