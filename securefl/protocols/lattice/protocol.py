"""The ``BFV`` protocol configuration: parameters from the encoding, the key holder, engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import DEFAULT_MIN_CLIENTS, ClientEngine, Parties, RunParameters
from securefl.protocols.homomorphic.summation import HomomorphicSummation
from securefl.protocols.lattice.engines import BFVRun, _Client, _Decryptor, _Server
from securefl.protocols.lattice.keys import LatticeKeyHolder
from securefl.protocols.lattice.parameters import BFVParameters

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = ["BFV"]


@dataclass(frozen=True)
class BFV(HomomorphicSummation):
    """Lattice homomorphic summation (BFV, TenSEAL): clients encrypt, the server adds, a key holder decrypts the sum.

    Each client puts its encoded vector (signed, |x| <= B) and a 1 counting
    its contribution into ceil((D + 1) / N) batched BFV plaintexts modulo
    the prime t and sends their encryptions under the key holder's public
    key; the server adds them slot by slot, sum_i Enc(m_i) = Enc(sum_i m_i
    mod t), without learning anything (RLWE, 128-bit parameters); the key
    holder decrypts only that aggregate, only for at least ``min_clients``
    clients, once per (session, round) -- Paillier's rules, from
    ``securefl.protocols.homomorphic.keyholder``. t > 2 max_clients B, so the slot sums
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

    name = "bfv"  # slots hold bounded integers modulo the prime t
    RUN = BFVRun
    SERVER_ENGINE = _Server
    CLIENT_ENGINE = _Client
    DECRYPTOR_ENGINE = _Decryptor

    def __post_init__(self) -> None:
        self._resolve_encoding()
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

    def _generate_keys(self) -> LatticeKeyHolder:
        return LatticeKeyHolder.generate(self.parameters)

    def ciphertexts_per_client(self, vector_length: int) -> int:
        """ceil((vector_length + 1) / N): the +1 is the contribution counter."""
        return self.parameters.ciphertexts(vector_length + 1)

    # -- Protocol ------------------------------------------------------------

    def _scheme_run_fields(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "bound": self.bound, "public_context": self.keys.public_context}

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run: BFVRun = self._own_run(self.run_parameters(clients=clients, vector_length=vector_length,
                                                      session=session, round=round))
        return Parties(
            server=_Server(run),
            clients=[_Client(i, run) for i in range(run.clients)],
            helpers=[_Decryptor(run, self.keys)],
        )

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone (it holds the public context only)."""
        index, checked = self._client_run(index, run, signing_key, BFVRun)
        return _Client(index, self._own_run(checked))

    def describe(self) -> str:
        parameters = self.parameters
        return (
            f"bfv (N={parameters.poly_modulus_degree} slots per ciphertext, {parameters.plain_modulus.bit_length()}"
            f"-bit plain modulus, {parameters.data_bits}-bit ciphertext modulus, 128-bit security; the key holder "
            f"decrypts only sums of >= {self.min_clients} clients)"
        )
