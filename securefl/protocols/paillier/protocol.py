"""The ``Paillier`` protocol configuration: keys, slot layout, obfuscators, engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from securefl import validation
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import DEFAULT_MIN_CLIENTS, ClientEngine, Parties, RunParameters
from securefl.protocols.homomorphic.summation import HomomorphicSummation
from securefl.protocols.paillier.engines import PaillierRun, _Client, _Decryptor, _Server
from securefl.protocols.paillier.keys import MIN_KEY_BITS, KeyHolder
from securefl.protocols.paillier.obfuscators import SHORT_EXPONENT, FixedBase, Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout
from securefl.protocols.paillier.parallel import resolve_workers

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = ["Paillier", "DEFAULT_KEY_BITS"]

DEFAULT_KEY_BITS = 2048


@dataclass(frozen=True)
class Paillier(HomomorphicSummation):
    """Packed Paillier summation: clients encrypt, the server multiplies, a key holder decrypts the sum.

    Each client packs its encoded vector (and a 1 counting its contribution)
    into ceil((D + 1) / slots) plaintexts of ``layout`` and sends their
    encryptions E(m) = (1 + n m) r^n mod n^2 under the key holder's public
    key; the server multiplies them position by position, prod_i E(m_i) =
    E(sum_i m_i), without learning anything (DCR); the decryptor, holding the
    private key, decrypts only that aggregate, only if it sums at least
    ``min_clients`` clients, once per (session, round).

    Threat model: the server and the key holder do not collude (together they
    read every update). Both may be curious; the key holder never receives an
    individual ciphertext. The count of contributions is checked inside the
    plaintext but is not proof against a malicious server, which can encrypt
    under the public key itself (see protocols/paillier.md).

    ``value_bits``, ``max_clients`` and ``max_weight`` are shortcuts that
    replace those fields of ``encoding``. ``key_bits`` sizes a key made on
    first use (once, then reused every round) unless ``key_holder`` is given.
    ``obfuscation`` is ``"standard"`` (r^n, DCR) or the opt-in
    ``"short-exponent"`` (see ``obfuscators``). With ``precompute`` each
    client's obfuscators are made in ``setup``, before it has its update, on
    ``workers`` threads (None: one per core when worthwhile).
    """

    key_bits: int | None = None
    value_bits: int | None = None
    max_clients: int | None = None
    max_weight: int | None = None
    min_clients: int = DEFAULT_MIN_CLIENTS
    encoding: Encoding = field(default_factory=Encoding)
    obfuscation: Obfuscation | str = "standard"
    precompute: bool = True
    workers: int | None = None
    key_holder: KeyHolder | None = field(default=None, compare=False, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    name = "paillier"  # packed slots hold bounded integers
    RUN = PaillierRun
    SERVER_ENGINE = _Server
    CLIENT_ENGINE = _Client
    DECRYPTOR_ENGINE = _Decryptor

    def __post_init__(self) -> None:
        self._resolve_encoding()
        holder = self.key_holder
        if holder is not None and not isinstance(holder, KeyHolder):
            raise ConfigurationError(f"key_holder must be a KeyHolder; found {type(holder).__name__}")
        key_bits = self.key_bits
        if key_bits is None:
            key_bits = holder.key_bits if holder is not None else DEFAULT_KEY_BITS
        if not validation.is_integer(key_bits) or key_bits < MIN_KEY_BITS or key_bits % 2:
            raise ConfigurationError(f"key_bits must be an even integer >= {MIN_KEY_BITS}; found {key_bits!r}")
        if holder is not None and holder.key_bits != key_bits:
            raise ConfigurationError(f"key_bits={key_bits} but the key holder's key has {holder.key_bits} bits")
        object.__setattr__(self, "key_bits", int(key_bits))

        object.__setattr__(self, "obfuscation", Obfuscation.parse(self.obfuscation))
        validation.boolean(self.precompute, "precompute")
        resolve_workers(self.workers, 1)  # validates
        layout = SlotLayout.for_key(bound=self.bound, max_terms=self.encoding.max_clients, key_bits=self._key_bits)
        self._cache["layout"] = layout

    # -- derived parameters ------------------------------------------------

    @property
    def layout(self) -> SlotLayout:
        """Slots of bitlength(2 B max_clients) bits, B = max_weight (2^(value_bits-1) - 1)."""
        layout: SlotLayout = self._cache["layout"]
        return layout

    @property
    def _key_bits(self) -> int:
        if self.key_bits is None:  # resolved in __post_init__
            raise ConfigurationError("key_bits is unresolved")
        return self.key_bits

    @property
    def _scheme(self) -> Obfuscation:
        if not isinstance(self.obfuscation, Obfuscation):  # parsed in __post_init__
            raise ConfigurationError(f"obfuscation {self.obfuscation!r} is unparsed")
        return self.obfuscation

    def _generate_keys(self) -> KeyHolder:
        return KeyHolder.generate(self._key_bits)

    @property
    def public_key(self) -> Any:  # phe.PaillierPublicKey
        return self.keys.public_key

    def ciphertexts_per_client(self, vector_length: int) -> int:
        """ceil((vector_length + 1) / slots): the +1 is the contribution counter."""
        return self.layout.plaintexts(vector_length + 1)

    def _fixed_base(self) -> FixedBase | None:
        if self._scheme.kind != SHORT_EXPONENT:
            return None
        keys = self.keys
        cached: FixedBase | None = self._cache.get("base")
        if cached is None or cached.public_key != keys.public_key:
            bits = self._scheme.exponent_bits_for(self._key_bits)
            cached = self._cache["base"] = FixedBase(keys.public_key, exponent_bits=bits)
        return cached

    # -- Protocol ------------------------------------------------------------

    def _scheme_run_fields(self) -> dict[str, Any]:
        return {"public_key": self.keys.public_key, "layout": self.layout, "workers": self.workers,
                "obfuscation": self._scheme}

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run: PaillierRun = self._own_run(self.run_parameters(clients=clients, vector_length=vector_length,
                                                      session=session, round=round))
        keys = self.keys
        base = self._fixed_base()
        pools = [ObfuscatorPool(keys.public_key, self.obfuscation, base=base) for _ in range(run.clients)]
        if self.precompute:
            ObfuscatorPool.fill_all(pools, run.ciphertexts, workers=self.workers)
        return Parties(
            server=_Server(run),
            clients=[_Client(i, run, pool) for i, pool in enumerate(pools)],
            helpers=[_Decryptor(run, keys)],
        )

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone, its obfuscators made now when ``precompute`` (before its update)."""
        index, checked = self._client_run(index, run, signing_key, PaillierRun)
        checked = self._own_run(checked)
        pool = ObfuscatorPool(checked.public_key, self.obfuscation, base=self._fixed_base())
        if self.precompute:
            pool.fill(checked.ciphertexts, workers=self.workers)
        return _Client(index, checked, pool)

    def describe(self) -> str:
        layout = self.layout
        return (
            f"paillier ({self.key_bits}-bit key, {layout.slots} slots x {layout.slot_bits} bits per ciphertext, "
            f"{self._scheme.describe(self._key_bits)}; the key holder decrypts only sums of >= "
            f"{self.min_clients} clients)"
        )
