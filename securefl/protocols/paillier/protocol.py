"""The ``Paillier`` protocol configuration: keys, slot layout, obfuscators, engines."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from securefl import validation
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
from securefl.protocols.paillier.engines import PaillierRun, _Client, _Decryptor, _Server
from securefl.protocols.paillier.keys import MIN_KEY_BITS, KeyHolder, key_id
from securefl.protocols.paillier.messages import DECRYPT, DECRYPTOR, UPLOAD
from securefl.protocols.paillier.obfuscators import SHORT_EXPONENT, FixedBase, Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout
from securefl.protocols.paillier.parallel import resolve_workers
from securefl.protocols.wire import SERVER

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = ["Paillier", "DEFAULT_KEY_BITS"]

DEFAULT_KEY_BITS = 2048


@dataclass(frozen=True)
class Paillier(Protocol):
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

    name = "paillier"
    secure = True
    modular_sum = False  # packed slots hold bounded integers, not ring elements
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

        object.__setattr__(self, "min_clients", check_min_clients(self.min_clients, self.encoding))
        object.__setattr__(self, "obfuscation", Obfuscation.parse(self.obfuscation))
        validation.boolean(self.precompute, "precompute")
        resolve_workers(self.workers, 1)  # validates
        encoding = self.encoding
        bound = encoding.max_weight * ((1 << (encoding.value_bits - 1)) - 1)
        layout = SlotLayout.for_key(bound=bound, max_terms=encoding.max_clients, key_bits=self._key_bits)
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

    @property
    def keys(self) -> KeyHolder:
        """The key holder: ``key_holder`` if given, else a ``key_bits`` key made once, on first use."""
        if self.key_holder is not None:
            return self.key_holder
        holder: KeyHolder | None = self._cache.get("keys")
        if holder is None:
            holder = self._cache["keys"] = KeyHolder.generate(self._key_bits)
        return holder

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

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> PaillierRun:
        """The public parameters of one run: the public key (the key holder's, made on first use) and layout."""
        base = super().run_parameters(clients=clients, vector_length=vector_length, session=session, round=round,
                                      verification_keys=verification_keys)
        keys = self.keys
        return PaillierRun(
            **vars(base), public_key=keys.public_key, key_id=key_id(keys.public_key), layout=self.layout,
            ciphertexts=self.ciphertexts_per_client(base.length), max_clients=self.encoding.max_clients,
            workers=self.workers, obfuscation=self._scheme,
        )

    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
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

    def _own_run(self, run: RunParameters) -> PaillierRun:
        if not isinstance(run, PaillierRun) or run.key_id != self.keys.key_id:
            raise ConfigurationError("Paillier engines need the run_parameters of this protocol (the same key)")
        return run

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone, its obfuscators made now when ``precompute`` (before its update)."""
        index, checked = self._client_run(index, run, signing_key, PaillierRun)
        checked = self._own_run(checked)
        pool = ObfuscatorPool(checked.public_key, self.obfuscation, base=self._fixed_base())
        if self.precompute:
            pool.fill(checked.ciphertexts, workers=self.workers)
        return _Client(index, checked, pool)

    def helper_parties(self) -> tuple[str, ...]:
        """The decryptor, the one party holding the private key."""
        return (DECRYPTOR,)

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        """The decryptor's engine, around this protocol's key holder."""
        if party != DECRYPTOR:
            raise ConfigurationError(f"paillier has no helper party {party!r}; its helper is {DECRYPTOR!r}")
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
        layout = self.layout
        return (
            f"paillier ({self.key_bits}-bit key, {layout.slots} slots x {layout.slot_bits} bits per ciphertext, "
            f"{self._scheme.describe(self._key_bits)}; the key holder decrypts only sums of >= "
            f"{self.min_clients} clients)"
        )
