"""The ``BFV`` protocol configuration: parameters from the encoding, the key holder, engines."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
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
from securefl.protocols.lattice.engines import BFVRun, _Client, _Decryptor, _Server
from securefl.protocols.lattice.keys import LatticeKeyHolder
from securefl.protocols.lattice.messages import DECRYPT, DECRYPTOR, UPLOAD
from securefl.protocols.lattice.parameters import BFVParameters
from securefl.protocols.wire import SERVER

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = ["BFV"]


@dataclass(frozen=True)
class BFV(Protocol):
    """Lattice homomorphic summation (BFV, TenSEAL): clients encrypt, the server adds, a key holder decrypts the sum.

    Each client puts its encoded vector (signed, |x| <= B) and a 1 counting
    its contribution into ceil((D + 1) / N) batched BFV plaintexts modulo
    the prime t and sends their encryptions under the key holder's public
    key; the server adds them slot by slot, sum_i Enc(m_i) = Enc(sum_i m_i
    mod t), without learning anything (RLWE, 128-bit parameters); the key
    holder decrypts only that aggregate, only for at least ``min_clients``
    clients, once per (session, round) -- Paillier's rules, from
    ``securefl.protocols.keyholder``. t > 2 max_clients B, so the slot sums
    are the exact integer sums, returned in Z_2^k.

    Threat model: the server and the key holder do not collude (together they
    read every update). Both may be curious; the key holder never receives an
    individual ciphertext. The contribution counter is checked inside the
    plaintext but binds no malicious server, which can encrypt under the
    public key itself (see protocols/lattice.md).

    ``value_bits``, ``max_clients`` and ``max_weight`` are shortcuts that
    replace those fields of ``encoding``; ``poly_modulus_degree`` fixes N
    (None: the smallest that holds the sum at 128-bit security). A key pair
    is made on first use (once, then reused every round) unless
    ``key_holder`` is given.
    """

    value_bits: int | None = None
    max_clients: int | None = None
    max_weight: int | None = None
    min_clients: int = DEFAULT_MIN_CLIENTS
    poly_modulus_degree: int | None = None
    encoding: Encoding = field(default_factory=Encoding)
    key_holder: LatticeKeyHolder | None = field(default=None, compare=False, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    name = "bfv"
    secure = True
    modular_sum = False  # slots hold bounded integers modulo the prime t, not ring elements
    phases = (UPLOAD, DECRYPT)

    def __post_init__(self) -> None:
        if not isinstance(self.encoding, Encoding):
            raise ConfigurationError(
                f"encoding must be a securefl.encoding.Encoding; found {type(self.encoding).__name__}"
            )
        shortcuts = {name: getattr(self, name) for name in ("value_bits", "max_clients", "max_weight")}
        given = {name: value for name, value in shortcuts.items() if value is not None}
        if given:
            object.__setattr__(self, "encoding", dataclasses.replace(self.encoding, **given))
        for name in shortcuts:
            object.__setattr__(self, name, getattr(self.encoding, name))
        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))
        holder = self.key_holder
        if holder is not None and not isinstance(holder, LatticeKeyHolder):
            raise ConfigurationError(f"key_holder must be a LatticeKeyHolder; found {type(holder).__name__}")
        parameters = BFVParameters.for_encoding(self.encoding, poly_modulus_degree=self.poly_modulus_degree)
        if holder is not None and holder.parameters != parameters:
            raise ConfigurationError(
                f"the key holder's parameters ({holder.parameters.describe()}) are not this encoding's "
                f"({parameters.describe()})"
            )
        self._cache["parameters"] = parameters

    # -- derived parameters ------------------------------------------------

    @property
    def parameters(self) -> BFVParameters:
        """N, t and the coefficient primes, from the encoding's headroom (see ``parameters``)."""
        parameters: BFVParameters = self._cache["parameters"]
        return parameters

    @property
    def bound(self) -> int:
        """B = max_weight (2^(value_bits-1) - 1): the largest |x| of one encoded coordinate."""
        return self.encoding.max_weight * ((1 << (self.encoding.value_bits - 1)) - 1)

    @property
    def keys(self) -> LatticeKeyHolder:
        """The key holder: ``key_holder`` if given, else a key pair made once, on first use."""
        if self.key_holder is not None:
            return self.key_holder
        holder: LatticeKeyHolder | None = self._cache.get("keys")
        if holder is None:
            holder = self._cache["keys"] = LatticeKeyHolder.generate(self.parameters)
        return holder

    def ciphertexts_per_client(self, vector_length: int) -> int:
        """ceil((vector_length + 1) / N): the +1 is the contribution counter."""
        return self.parameters.ciphertexts(vector_length + 1)

    # -- Protocol ------------------------------------------------------------

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> BFVRun:
        """The public parameters of one run: the key holder's public context (made on first use) and N, t, q."""
        base = super().run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                      verification_keys=verification_keys)
        keys = self.keys
        return BFVRun(
            **vars(base), parameters=self.parameters, key_id=keys.key_id,
            ciphertexts=self.ciphertexts_per_client(base.length), max_clients=self.encoding.max_clients,
            bound=self.bound, public_context=keys.public_context,
        )

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
        return Parties(
            server=_Server(run),
            clients=[_Client(i, run) for i in range(run.clients)],
            helpers=[_Decryptor(run, self.keys)],
        )

    def _own_run(self, run: RunParameters) -> BFVRun:
        if not isinstance(run, BFVRun) or run.key_id != self.keys.key_id:
            raise ConfigurationError("BFV engines need the run_parameters of this protocol (the same key)")
        return run

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone (it holds the public context only)."""
        index, checked = self._client_run(index, run, signing_key, BFVRun)
        return _Client(index, self._own_run(checked))

    def helper_parties(self) -> tuple[str, ...]:
        """The decryptor, the one party holding the secret key."""
        return (DECRYPTOR,)

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        """The decryptor's engine, around this protocol's key holder."""
        if party != DECRYPTOR:
            raise ConfigurationError(f"bfv has no helper party {party!r}; its helper is {DECRYPTOR!r}")
        return _Decryptor(self._own_run(run), self.keys)

    def restore_engine(self, run: RunParameters, state: Mapping[str, object]) -> Engine:
        """As ``Protocol.restore_engine``; a decryptor is restored around this protocol's key holder."""
        if isinstance(state, Mapping) and state.get("party") == DECRYPTOR:
            return _Decryptor.from_state_dict(run, state, keys=self.keys)
        return super().restore_engine(run, state)

    def server_engine(self, run: RunParameters) -> ServerEngine:
        return _Server(self._own_run(run))

    def _engine_class(self, party: str) -> type[Engine]:
        if party == SERVER:
            return _Server
        return _Decryptor if party == DECRYPTOR else _Client

    def describe(self) -> str:
        parameters = self.parameters
        return (
            f"bfv (N={parameters.poly_modulus_degree} slots per ciphertext, {parameters.plain_modulus.bit_length()}"
            f"-bit plain modulus, {parameters.data_bits}-bit ciphertext modulus, 128-bit security; the key holder "
            f"decrypts only sums of >= {self.min_clients} clients)"
        )
