"""The SecAgg client engine: an honest client's state machine, one request per phase, in order.

Honest-client rules (each refusal raises and sends nothing):

- Every request is checked by the phase machine (``protocols.base``) against
  the next phase, session, round, recipient and sender (``InvalidMessage``
  or a subclass; the client's state is unchanged).
- It continues only while at least ``threshold`` members of its neighbourhood
  (itself included) remain (``ProtocolAbort``), and unmasks only a survivor
  set of at least ``min_clients`` clients (``ProtocolViolation``; in
  semi-honest SecAgg+ the client sees its neighbourhood only and checks
  min(min_clients, neighbourhood size) there).
- It never reveals both kinds of share for one peer: an unmask request whose
  survivor and dropped sets overlap, that leaves out or adds a neighbour
  relative to the keys the client actually received, or (malicious-server
  mode) whose survivors differ from the set it signed, raises
  ``ProtocolViolation``.
- It answers one request per phase and at most one unmask request per
  session; once it has answered the unmask request (DONE), or refused any
  request after its header checked out (ABORTED), it wipes its secrets and
  raises ``AlreadyFinalized`` on anything more.
- Ciphertexts that fail authentication and bad signatures raise
  ``InvalidMessage`` (and stop the client, as above).
- Exact noise (``Parameters.noise``, ``noise.py``): it adds its whole noise
  share e_u ~ Sk(V/t), expanded from its noise seed s_u (the one its DP
  stage handed over with the input, else 32 bytes from the OS CSPRNG), and
  shares s_u with its self-mask seed. In unmasking it computes
  D(U), the m - t survivors whose shares go, from the survivor set it
  checked (the whole set is required on every graph; in malicious-server
  mode the set it signed) and reveals its share of s_v beside the
  self-mask share only for surviving members v of its neighbourhood in
  D(U): never for a survivor outside D(U), never for a dropped client. A
  survivor set of fewer than t or more than n clients raises
  ``ProtocolViolation``.
- Malicious-server SecAgg+ (the graph drawn from coins): it commits to a
  fresh coin before it sees anyone else's, refuses a commitment list without
  its own commitment at its index (``ProtocolViolation``), signs the list's
  digest with its keys, and draws the graph only from the reveals of every
  listed client, each matching its commitment (a missing one:
  ``ProtocolAbort``; a wrong one: ``InvalidMessage``). It then needs the
  signed keys of every listed neighbour (``ProtocolViolation`` otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from securefl import ring
from securefl.crypto import aead, shamir
from securefl.crypto.keys import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, SigningKey
from securefl.errors import ConfigurationError, InvalidMessage, LocalProtocolError, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import SERVER_ONLY, ClientEngine, Header, RunParameters, Step, received
from securefl.protocols.secagg.config import Parameters
from securefl.protocols.secagg.graph import Graph, coin_graph
from securefl.protocols.secagg.labels import (
    SHARE_CHANNEL_LABEL,
    advertise_statement,
    coin_commitment,
    coin_list_digest,
    consistency_statement,
    self_mask_commitment,
    shares_associated_data_from,
    shares_associated_data_to,
)
from securefl.protocols.secagg.masking import mask_input
from securefl.protocols.secagg.messages import (
    ADVERTISE_KEYS,
    COIN_BYTES,
    COMMIT_COINS,
    COMMITMENT_BYTES,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    REQUESTS,
    SHARE_BYTES,
    SHARE_KEYS,
    UNMASKING,
    AdvertiseRequest,
    CoinCommitment,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    MaskedInputRequest,
    ShareKeysRequest,
    UnmaskRequest,
    UnmaskShares,
)
from securefl.protocols.secagg.noise import InputWithNoiseSeed, noise_anchor, noise_share
from securefl.protocols.secagg.primitives import AgreementKey, agree_many, sign, verify
from securefl.protocols.state import StateDict, StateReader, keyed
from securefl.protocols.wire import SERVER, Message, client_id

__all__ = ["SecAggClient", "check_share", "check_client_list", "check_coins"]

SECRET_BYTES = 32


@lru_cache(maxsize=4096)
def _share_header(x: int) -> bytes:
    """The first 4 bytes of ``Share.to_bytes`` for a share at ``x`` of a 32-byte secret."""
    return x.to_bytes(2, "big") + SECRET_BYTES.to_bytes(2, "big")


_PRIME_BYTES = shamir.PRIME.to_bytes(shamir.ELEMENT_BYTES, "big")
"""The field prime as a share value's bytes: for values of that width, byte order is numeric order."""


def check_share(share: bytes, *, x: int, what: str) -> None:
    """A share must be ``SHARE_BYTES`` long, at point ``x``, of a 32-byte secret, its value below the
    field prime (``InvalidMessage``): what ``Share.from_bytes`` would refuse is refused on arrival."""
    if len(share) != SHARE_BYTES or share[:4] != _share_header(x) or share[4:] >= _PRIME_BYTES:
        raise InvalidMessage(f"{what} is not a {SHARE_BYTES}-byte share of a {SECRET_BYTES}-byte secret at x={x}")


def _check_share_pair(plaintext: bytes, *, x: int, sender: int) -> None:
    """``check_share`` of both shares a neighbour sealed (mask-key share, then self-mask share), in one test."""
    header = _share_header(x)
    if (len(plaintext) != 2 * SHARE_BYTES or plaintext[:4] != header or plaintext[4:SHARE_BYTES] >= _PRIME_BYTES
            or plaintext[SHARE_BYTES : SHARE_BYTES + 4] != header or plaintext[SHARE_BYTES + 4 :] >= _PRIME_BYTES):
        check_share(plaintext[:SHARE_BYTES], x=x, what=f"client/{sender}'s mask-key share")
        check_share(plaintext[SHARE_BYTES:], x=x, what=f"client/{sender}'s self-mask share")
        raise InvalidMessage(f"client/{sender} sealed {len(plaintext)} bytes; expected two shares")


def _check_noise_shares(plaintext: bytes, *, x: int, sender: int) -> None:
    """Exact noise: the sealed plaintext must be the share pair and a noise-seed share at ``x`` (``InvalidMessage``)."""
    if len(plaintext) != 3 * SHARE_BYTES:
        raise InvalidMessage(f"client/{sender} sealed {len(plaintext)} bytes; expected three shares "
                             f"(mask key, self-mask seed, noise seed)")
    _check_share_pair(plaintext[: 2 * SHARE_BYTES], x=x, sender=sender)
    check_share(plaintext[2 * SHARE_BYTES :], x=x, what=f"client/{sender}'s noise-seed share")


def check_client_list(clients: tuple[int, ...], count: int, what: str) -> frozenset[int]:
    """Client indices must be strictly increasing and in [0, count) (``InvalidMessage``)."""
    previous = -1
    for client in clients:
        if not previous < client < count:
            raise InvalidMessage(f"{what} must list distinct client indices in [0, {count}) in increasing order")
        previous = client
    return frozenset(clients)


def check_coins(coins: dict[int, bytes], commitments: dict[int, bytes], *, session: bytes, round: int,
                what: str) -> None:
    """The reveals must be exactly those of the committed clients, each opening its commitment.

    A missing reveal raises ``ProtocolAbort`` (the graph cannot be drawn without
    it, and counting only the reveals that came would let whoever withholds the
    last one choose between graphs); a reveal of a client that never committed,
    or one that does not match its commitment, raises ``InvalidMessage``.
    """
    extra = coins.keys() - commitments.keys()
    if extra:
        raise InvalidMessage(f"{what} reveals a graph coin of client/{min(extra)}, which committed to none")
    missing = commitments.keys() - coins.keys()
    if missing:
        raise ProtocolAbort(f"{what} lacks the graph coin of client/{min(missing)} ({len(missing)} of "
                            f"{len(commitments)} committed coins unrevealed): the graph cannot be drawn")
    for client in sorted(coins):
        if coin_commitment(session, round, client, coins[client]) != commitments[client]:
            raise InvalidMessage(f"{what}: client/{client}'s graph coin does not match its commitment")


class SecAggClient(ClientEngine):
    """One client of one SecAgg round (see the module docstring for the rules it keeps)."""

    INPUT_PHASE = MASKED_INPUT
    STATE_KIND = "secagg/client"
    _run: Parameters

    def __init__(self, index: int, parameters: Parameters, *, signing_key: SigningKey | None = None) -> None:
        if parameters.malicious_server and not isinstance(signing_key, SigningKey):
            raise ConfigurationError("malicious-server mode needs the client's registered signing key")
        self._index = index
        self._parameters = parameters
        self._signing_key = signing_key
        # Secrets, wiped by _wipe().
        self._share_key: AgreementKey | None = None
        self._mask_key: AgreementKey | None = None
        self._self_mask_seed: bytes | None = None
        self._coin: bytes | None = None
        self._channel_keys: dict[int, bytes] = {}
        self._mask_publics: dict[int, bytes] = {}
        self._own_seed_share: bytes | None = None
        self._held: dict[int, bytes] = {}
        self._noise_seed: bytes | None = None
        self._own_noise_share: bytes | None = None
        # What this client saw (public): the coin commitments it signed, the reveals, the graph they drew.
        self._coin_commitments: dict[int, bytes] = {}
        self._coins: dict[int, bytes] = {}
        self._graph: Graph | None = parameters.graph
        self._masked_with: frozenset[int] = frozenset()
        self._signed_survivors: tuple[int, ...] | None = None
        super().__init__(client_id(index), parameters)

    @property
    def graph(self) -> Graph | None:
        """The round's graph: from the parameters, or (malicious-server SecAgg+) drawn from the coins in
        share-keys; None until then."""
        return self._graph

    def _round_graph(self) -> Graph:
        if self._graph is None:
            raise LocalProtocolError(f"{self.party} has not drawn the graph: share-keys comes first")
        return self._graph

    def _steps(self) -> list[Step]:
        handlers: dict[str, Callable[[Message], list[Message]]] = {
            COMMIT_COINS: self._commit_coin,
            ADVERTISE_KEYS: self._advertise_keys,
            SHARE_KEYS: self._share_keys,
            MASKED_INPUT: self._masked_input,
            CONSISTENCY_CHECK: self._consistency_check,
            UNMASKING: self._unmasking,
        }
        return [Step(phase, (REQUESTS[phase],), handlers[phase], senders=SERVER_ONLY)
                for phase in self._parameters.phases]

    def _wipe(self) -> None:
        super()._wipe()
        self._share_key = self._mask_key = None
        self._self_mask_seed = self._own_seed_share = self._coin = None
        self._coin_commitments = {}
        self._channel_keys = {}
        self._mask_publics = {}
        self._held = {}
        self._noise_seed = self._own_noise_share = None

    def _header(self, phase: str) -> Header:
        return self._parameters.header(phase, self.party, SERVER)

    def provide_input(self, vector: np.ndarray, *, noise_seed: bytes | None = None) -> None:
        """Hand the client its ring vector and, under exact noise, the secret seed of its noise share.

        ``noise_seed`` (32 bytes) defaults to the one an ``InputWithNoiseSeed``
        carries (the DP stage's, drawn from its generator); without either the
        engine draws it from the OS CSPRNG in share-keys. A seed is refused
        without exact noise (``ConfigurationError``): nothing would add its share.
        """
        if noise_seed is None and isinstance(vector, InputWithNoiseSeed):
            noise_seed = vector.noise_seed
        if isinstance(vector, np.ndarray):
            vector = vector.view(np.ndarray)
        if noise_seed is not None:
            if not isinstance(noise_seed, bytes) or len(noise_seed) != SECRET_BYTES:
                length = f"{len(noise_seed)} bytes" if isinstance(noise_seed, (bytes, bytearray)) \
                    else type(noise_seed).__name__
                raise ConfigurationError(f"noise seed must be {SECRET_BYTES} bytes; found {length}")
            if not self._parameters.shares_noise_seed:
                raise ConfigurationError(f"{self.party} was given a noise seed, but this round has no exact noise")
            if self._noise_seed is not None:  # its shares are already out (share-keys): another would break the sum
                raise LocalProtocolError(f"{self.party} already holds the noise seed it shared")
        super().provide_input(vector)
        if noise_seed is not None:
            self._noise_seed = bytes(noise_seed)

    # -- plain-data state ------------------------------------------------------------

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> SecAggClient:
        if not isinstance(run, Parameters):
            raise ConfigurationError(f"SecAgg engines need SecAgg's run_parameters; found {type(run).__name__}")
        index = cls._index_of(party, run)
        private = reader.optional_blob("signing-key", size=PRIVATE_KEY_BYTES)
        reader.require((private is not None) == run.malicious_server,
                       "must hold the client's signing key exactly in malicious-server mode")
        signing_key = SigningKey.from_private_bytes(private) if private is not None else None
        if signing_key is not None:
            reader.require(signing_key.public_bytes == run.verification_keys[index],
                           f"holds a signing key that is not the registered key of {party}")
        return cls(index, run, signing_key=signing_key)

    def _state_fields(self) -> StateDict:
        fields = super()._state_fields()
        channel_peers, channel_keys = keyed(self._channel_keys)
        mask_peers, mask_publics = keyed(self._mask_publics)
        held_peers, held_shares = keyed(self._held)
        coin_committers, coin_commitments = keyed(self._coin_commitments)
        coin_revealers, coins = keyed(self._coins)
        fields.update({
            "signing-key": self._signing_key.private_bytes if self._signing_key is not None else b"",
            "share-key": self._share_key.private_bytes if self._share_key is not None else b"",
            "mask-key": self._mask_key.private_bytes if self._mask_key is not None else b"",
            "self-mask-seed": self._self_mask_seed or b"",
            "own-seed-share": self._own_seed_share or b"",
            "noise-seed": self._noise_seed or b"",
            "own-noise-share": self._own_noise_share or b"",
            "coin": self._coin or b"",
            "coin-committers": coin_committers,
            "coin-commitments": coin_commitments,
            "coin-revealers": coin_revealers,
            "coins": coins,
            "channel-peers": channel_peers,
            "channel-keys": channel_keys,
            "mask-peers": mask_peers,
            "mask-publics": mask_publics,
            "held-peers": held_peers,
            "held-shares": held_shares,
            "masked-with": sorted(self._masked_with),
            "signed-survivors": list(self._signed_survivors or ()),
        })
        return fields

    def _restore_fields(self, reader: StateReader) -> None:
        super()._restore_fields(reader)
        parameters = self._parameters
        index, last = self._index, parameters.clients - 1
        share_key = reader.optional_blob("share-key", size=PRIVATE_KEY_BYTES)
        mask_key = reader.optional_blob("mask-key", size=PRIVATE_KEY_BYTES)
        self_mask_seed = reader.optional_blob("self-mask-seed", size=SECRET_BYTES)
        own_seed_share = reader.optional_blob("own-seed-share", size=SHARE_BYTES)
        exact = parameters.shares_noise_seed
        noise_seed = reader.optional_blob("noise-seed", size=SECRET_BYTES)
        own_noise_share = reader.optional_blob("own-noise-share", size=SHARE_BYTES)
        coin = reader.optional_blob("coin", size=COIN_BYTES)
        coin_commitments = reader.keyed_blobs("coin-committers", "coin-commitments", maximum=last,
                                              size=COMMITMENT_BYTES)
        coins = reader.keyed_blobs("coin-revealers", "coins", maximum=last, size=COIN_BYTES)
        channel_keys = reader.keyed_blobs("channel-peers", "channel-keys", maximum=last, size=aead.KEY_BYTES)
        mask_publics = reader.keyed_blobs("mask-peers", "mask-publics", maximum=last, size=PUBLIC_KEY_BYTES)
        held = reader.keyed_blobs("held-peers", "held-shares", maximum=last, size=(3 if exact else 2) * SHARE_BYTES)
        masked_with = frozenset(reader.integers("masked-with", minimum=0, maximum=last))
        signed = tuple(reader.integers("signed-survivors", minimum=0, maximum=last))

        # What the client holds follows from the phase it has answered (None: none yet, or stopped).
        phase = self.phase if self._active else "stopped"
        drawn = parameters.coin_graph
        for what, present, holding in (
            ("its share-channel key", share_key is not None, (ADVERTISE_KEYS,)),
            ("its mask key", mask_key is not None, (ADVERTISE_KEYS, SHARE_KEYS)),
            ("its self-mask seed", self_mask_seed is not None, (SHARE_KEYS,)),
            ("its own self-mask share", own_seed_share is not None, (SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK)),
            ("its own noise-seed share", own_noise_share is not None,
             (SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK) if exact else ()),
            ("its unrevealed graph coin", coin is not None, (COMMIT_COINS,) if drawn else ()),
            ("the coin commitments it signed", bool(coin_commitments), (ADVERTISE_KEYS,) if drawn else ()),
        ):
            expected = phase in holding
            reader.require(present == expected, f"must {'hold' if expected else 'not hold'} {what} in phase {phase!r}")
        phases = parameters.phases
        # The noise seed: handed over with the input (any phase before share-keys) or drawn in share-keys,
        # held until masked-input adds the share it expands.
        before_share_keys = self._active and self._position < phases.index(SHARE_KEYS)
        reader.require(noise_seed is None or exact, "holds a noise seed without exact noise")
        reader.require(before_share_keys or (noise_seed is not None) == (exact and phase == SHARE_KEYS),
                       f"must {'hold' if exact and phase == SHARE_KEYS else 'not hold'} its noise seed in phase "
                       f"{phase!r}")
        # The reveals (public) are kept from a successful share-keys on, also once the client stops.
        drew = drawn and (self._position > phases.index(SHARE_KEYS)
                                          or (self._position == phases.index(SHARE_KEYS) and self._active))
        reader.require(bool(coins) == drew, f"must {'hold' if drew else 'not hold'} the graph coins at position "
                                            f"{self._position}")
        reader.require(not coin_commitments or index in coin_commitments,
                       "holds a coin commitment list without its own commitment")
        graph = parameters.graph
        if coins:
            reader.require(index in coins, "holds graph coins without its own")
            graph = coin_graph(parameters.clients, parameters.neighbors or 0, session=parameters.session,
                               round=parameters.round, coins=coins)
        reader.require(phase == SHARE_KEYS or not channel_keys and not mask_publics,
                       f"holds channel keys or peer mask keys in phase {phase!r}")
        reader.require(channel_keys.keys() == mask_publics.keys(),
                       "must hold a channel key and a mask key of the same peers")
        reader.require(phase in (MASKED_INPUT, CONSISTENCY_CHECK) or not held,
                       f"holds peers' shares in phase {phase!r}")
        reader.require(not self._active or masked_with == held.keys(),
                       "must hold the shares of exactly the peers it masked with")
        reader.require(self._position >= phases.index(MASKED_INPUT) or not masked_with,
                       "masked with peers before the masked-input phase")
        reader.require(not signed or (parameters.malicious_server and index in signed
                                      and self._position >= phases.index(CONSISTENCY_CHECK)),
                       "holds a signed survivor set it cannot have signed")
        reader.require(not self._active or (phase == CONSISTENCY_CHECK) == bool(signed),
                       f"in phase {phase!r} must hold a signed survivor set exactly after signing one")
        peers = {*channel_keys, *held, *masked_with}
        reader.require(graph is not None or not peers and own_seed_share is None,
                       "holds peers or shares before drawing the graph")
        if graph is not None:
            for peer in peers:
                reader.require(graph.is_neighbour(index, peer), f"names client/{peer}, not a neighbour of {self.party}")
            if own_seed_share is not None:
                check_share(own_seed_share, x=graph.share_point(index, index), what="stored own self-mask share")
            for peer, shares in held.items():
                x = graph.share_point(peer, index)
                check_share(shares[:SHARE_BYTES], x=x, what=f"stored mask-key share of client/{peer}")
                check_share(shares[SHARE_BYTES : 2 * SHARE_BYTES], x=x, what=f"stored self-mask share of client/{peer}")
                for start in range(2 * SHARE_BYTES, len(shares), SHARE_BYTES):
                    check_share(shares[start : start + SHARE_BYTES], x=x, what=f"stored noise-seed share of "
                                                                              f"client/{peer}")

        self._share_key = AgreementKey(share_key) if share_key is not None else None
        self._mask_key = AgreementKey(mask_key) if mask_key is not None else None
        if graph is not None and own_noise_share is not None:
            check_share(own_noise_share, x=graph.share_point(index, index), what="stored own noise-seed share")
        self._noise_seed, self._own_noise_share = noise_seed, own_noise_share
        self._self_mask_seed, self._own_seed_share, self._coin = self_mask_seed, own_seed_share, coin
        self._coin_commitments, self._coins, self._graph = coin_commitments, coins, graph
        self._channel_keys, self._mask_publics, self._held = channel_keys, mask_publics, held
        self._masked_with, self._signed_survivors = masked_with, signed or None

    def _require_peers(self, present: int, what: str) -> None:
        parameters = self._parameters
        if present < parameters.threshold:
            raise ProtocolAbort(
                f"{self.party}: {present} of its neighbourhood of {parameters.group_size} {what}; "
                f"the threshold is {parameters.threshold}"
            )

    # -- CommitCoins (malicious-server SecAgg+) -------------------------------------------

    def _commit_coin(self, message: Message) -> list[Message]:
        parameters = self._parameters
        # r_u is secret until every client's commitment is fixed: it alone keeps the graph unpredictable.
        self._coin = os.urandom(COIN_BYTES)
        commitment = coin_commitment(parameters.session, parameters.round, self._index, self._coin)
        return [CoinCommitment(*self._header(COMMIT_COINS), commitment=commitment)]

    def _check_coin_list(self, commitments: dict[int, bytes]) -> None:
        """The commitment list must name clients of this round and hold this client's own commitment."""
        parameters = self._parameters
        if self._coin is None:
            raise LocalProtocolError(f"{self.party} has no graph coin: commit-coins comes first")
        if any(not 0 <= client < parameters.clients for client in commitments):
            raise InvalidMessage(f"advertise request lists coin commitments of clients outside "
                                 f"[0, {parameters.clients})")
        own = coin_commitment(parameters.session, parameters.round, self._index, self._coin)
        if commitments.get(self._index) != own:
            raise ProtocolViolation(f"advertise request's coin commitments leave out or replace {self.party}'s own")
        if len(commitments) < parameters.threshold:
            raise ProtocolAbort(f"{self.party}: {len(commitments)} clients committed graph coins; "
                                f"the threshold is {parameters.threshold}")

    # -- AdvertiseKeys ----------------------------------------------------------------

    def _advertise_keys(self, message: Message) -> list[Message]:
        message = received(message, AdvertiseRequest)
        parameters = self._parameters
        commitments = message.coin_commitments
        coin, coin_list = b"", b""
        if parameters.coin_graph:
            self._check_coin_list(commitments)
            coin_list = coin_list_digest(parameters.session, parameters.round, parameters.clients, commitments)
            coin = self._coin or b""
        elif commitments:
            raise InvalidMessage("advertise request carries coin commitments, which only malicious-server SecAgg+ uses")
        self._share_key = AgreementKey.generate()
        self._mask_key = AgreementKey.generate()
        share_public, mask_public = self._share_key.public_bytes, self._mask_key.public_bytes
        signature = b""
        if self._signing_key is not None:
            signature = sign(self._signing_key, advertise_statement(
                parameters.session, parameters.round, self._index, share_public, mask_public, coin_list=coin_list))
        # The reveal goes out with the signature over the list it was committed in; the coin is public now.
        self._coin = None
        self._coin_commitments = dict(commitments)
        return [KeyAdvertisement(*self._header(ADVERTISE_KEYS), share_public=share_public, mask_public=mask_public,
                                 signature=signature, coin=coin)]

    # -- ShareKeys --------------------------------------------------------------------

    def _draw_graph(self, message: ShareKeysRequest) -> Graph:
        """The graph from the parameters, or drawn from every committed client's checked reveal."""
        parameters = self._parameters
        if not parameters.coin_graph:
            if message.coins:
                raise InvalidMessage("share-keys request carries graph coins, which only malicious-server SecAgg+ "
                                     "uses")
            return self._round_graph()
        check_coins(message.coins, self._coin_commitments, session=parameters.session, round=parameters.round,
                    what="share-keys request")
        return coin_graph(parameters.clients, parameters.neighbors or 0, session=parameters.session,
                          round=parameters.round, coins=message.coins)

    def _read_advertised_keys(self, message: ShareKeysRequest,
                              graph: Graph) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """(share-channel publics, mask publics) by neighbour, after every check."""
        parameters = self._parameters
        session, round = parameters.session, parameters.round
        share_publics, mask_publics = {}, {}
        if self._share_key is None or self._mask_key is None:
            raise LocalProtocolError(f"{self.party} has no keys: advertise-keys comes first")
        coin_list = b""
        if parameters.coin_graph:
            coin_list = coin_list_digest(session, round, parameters.clients, self._coin_commitments)
            # Every listed client revealed its coin with its keys: a neighbour left out is being hidden.
            revealed = [v for v in graph.neighbours(self._index) if v in self._coin_commitments]
            absent = [v for v in revealed if v not in message.keys]
            if absent:
                raise ProtocolViolation(f"share-keys request leaves out client/{absent[0]}, a neighbour of "
                                        f"{self.party} that revealed its coin with its keys")
        publics = {self._share_key.public_bytes, self._mask_key.public_bytes}
        index, is_neighbour, malicious_server = self._index, graph.is_neighbour, parameters.malicious_server
        for peer, advertised in message.keys.items():  # sizes checked by the schema: keys 32, signature 0 or 64
            if not is_neighbour(index, peer):
                raise InvalidMessage(
                    f"share-keys request lists client/{peer}, which is not a neighbour of {self.party}"
                )
            share_public, mask_public = advertised.share_public, advertised.mask_public
            if share_public in publics or mask_public in publics or share_public == mask_public:
                raise InvalidMessage("share-keys request repeats a public key")
            publics.add(share_public)
            publics.add(mask_public)
            if malicious_server:
                statement = advertise_statement(session, round, peer, share_public, mask_public, coin_list=coin_list)
                verify(parameters.verification_keys[peer], advertised.signature, statement)
            elif advertised.signature:
                raise InvalidMessage(f"share-keys request carries a signature of client/{peer}'s keys, "
                                     f"which only malicious-server mode uses")
            share_publics[peer], mask_publics[peer] = share_public, mask_public
        return share_publics, mask_publics

    def _share_keys(self, message: Message) -> list[Message]:
        message = received(message, ShareKeysRequest)
        parameters = self._parameters
        session, round = parameters.session, parameters.round
        graph = self._draw_graph(message)
        share_publics, mask_publics = self._read_advertised_keys(message, graph)
        peers = sorted(share_publics)
        self._require_peers(len(peers) + 1, "advertised keys")
        if self._share_key is None or self._mask_key is None:
            raise LocalProtocolError(f"{self.party} has no keys: advertise-keys comes first")
        index = self._index
        self._self_mask_seed = os.urandom(SECRET_BYTES)
        noise_secrets, anchor = [], b""
        if parameters.shares_noise_seed:
            if self._noise_seed is None:  # none came with the input: the OS CSPRNG
                self._noise_seed = os.urandom(SECRET_BYTES)
            noise_secrets = [self._noise_seed]
            anchor = noise_anchor(self._noise_seed, session=session, round=round, client=index)
        key_shares, seed_shares, *noise_shares = shamir.split_many_encoded(
            [self._mask_key.private_bytes, self._self_mask_seed, *noise_secrets],
            threshold=parameters.threshold, shares=graph.group_size,
        )
        channel_keys = agree_many(self._share_key, {peer: share_publics[peer] for peer in peers},
                                  own=index, label=SHARE_CHANNEL_LABEL, session=session, round=round)
        ciphertexts = {}
        share_point, seal = graph.share_point, aead.seal
        for peer, associated in zip(peers, shares_associated_data_to(session, round, index, peers), strict=True):
            x = share_point(index, peer)
            plaintext = key_shares[x - 1] + seed_shares[x - 1] + b"".join(shares[x - 1] for shares in noise_shares)
            ciphertexts[peer] = seal(channel_keys[peer], plaintext, associated=associated)
        own = share_point(index, index) - 1
        self._own_seed_share = seed_shares[own]
        self._own_noise_share = noise_shares[0][own] if noise_shares else None
        self._channel_keys = channel_keys
        self._mask_publics = mask_publics
        self._share_key = None  # the channel keys are derived; the private key is no longer needed
        if parameters.coin_graph:
            self._coins, self._coin_commitments, self._graph = dict(message.coins), {}, graph
        commitment = self_mask_commitment(session, round, self._index, self._self_mask_seed) + anchor
        return [EncryptedShares(*self._header(SHARE_KEYS), ciphertexts=ciphertexts, self_mask_commitment=commitment)]

    # -- MaskedInputCollection ----------------------------------------------------------

    def _masked_input(self, message: Message) -> list[Message]:
        parameters = self._parameters
        graph, session, round = self._round_graph(), parameters.session, parameters.round
        message = received(message, MaskedInputRequest)
        vector = self._take_input()
        senders = sorted(message.ciphertexts)
        for sender in senders:
            if sender not in self._channel_keys:
                raise InvalidMessage(f"masked-input request forwards shares from client/{sender}, "
                                     f"whose keys {self.party} never received")
        self._require_peers(len(senders) + 1, "shared their keys")
        index, channel_keys, ciphertexts = self._index, self._channel_keys, message.ciphertexts
        share_point, open_sealed = graph.share_point, aead.open_sealed
        x = {sender: share_point(sender, index) for sender in senders}
        held = {}
        exact = parameters.shares_noise_seed
        for sender, associated in zip(senders, shares_associated_data_from(session, round, senders, index),
                                      strict=True):
            plaintext = open_sealed(channel_keys[sender], ciphertexts[sender], associated=associated)
            if exact:
                _check_noise_shares(plaintext, x=x[sender], sender=sender)
            else:
                _check_share_pair(plaintext, x=x[sender], sender=sender)
            held[sender] = plaintext
        self._held = held
        self._masked_with = frozenset(senders)
        if self._self_mask_seed is None or self._mask_key is None:
            raise LocalProtocolError(f"{self.party} has no mask key or self-mask seed: share-keys comes first")
        if parameters.noise is not None:
            if self._noise_seed is None:
                raise LocalProtocolError(f"{self.party} has no noise seed: share-keys comes first")
            # The whole share e_u ~ Sk(V/t): the DP stage added no noise of its own.
            share = noise_share(self._noise_seed, parameters.noise, length=parameters.length, round=round,
                                client=self._index)
            vector = ring.reduce(np.add(vector, ring.from_signed(share, parameters.ring_bits)),
                                 parameters.ring_bits)
        masked = mask_input(
            vector, client=self._index, self_mask_seed=self._self_mask_seed, mask_key=self._mask_key,
            peer_publics={sender: self._mask_publics[sender] for sender in senders},
            session=session, round=round, ring_bits=parameters.ring_bits,
        )
        # Nothing below needs the keys or the seed again.
        self._mask_key = None
        self._self_mask_seed = None
        self._noise_seed = None
        self._channel_keys = {}
        self._mask_publics = {}
        return [MaskedInput(*self._header(MASKED_INPUT), ring_bits=parameters.ring_bits, vector=masked)]

    # -- ConsistencyCheck (malicious-server mode) ----------------------------------------

    def _check_survivors(self, survivors: frozenset[int], what: str) -> None:
        graph = self._round_graph()
        if self._index not in survivors:
            raise ProtocolViolation(f"{what} leaves out {self.party}, which sent its masked input")
        for peer in sorted(survivors):
            if graph.is_neighbour(self._index, peer) and peer not in self._masked_with:
                raise ProtocolViolation(
                    f"{what} lists client/{peer} as a survivor, but it never shared keys with {self.party}"
                )

    def _require_cohort(self, survivors: frozenset[int], what: str) -> None:
        """Reveal nothing for a sum of fewer than ``min_clients`` clients (a sum of one is that client's input).

        The whole survivor set is shown on the complete graph and in
        malicious-server mode; semi-honest SecAgg+ shows the neighbourhood's
        members only, where min(min_clients, neighbourhood size) is checked.
        """
        parameters = self._parameters
        graph = self._round_graph()
        if graph.complete or parameters.malicious_server or parameters.noise is not None:
            count, needed = len(survivors), parameters.min_clients
        else:
            count, needed = graph.count_in_group(self._index, survivors), min(parameters.min_clients, graph.group_size)
        if count < needed:
            raise ProtocolViolation(
                f"{what} names {count} survivor(s); {self.party} unmasks only sums of min_clients={needed} or more"
            )

    def _consistency_check(self, message: Message) -> list[Message]:
        message = received(message, ConsistencyRequest)
        if self._signing_key is None:
            raise LocalProtocolError(f"{self.party} has no signing key: consistency-check is for malicious-server mode")
        parameters = self._parameters
        survivors = check_client_list(message.survivors, parameters.clients, "consistency request survivors")
        self._check_survivors(survivors, "consistency request")
        self._require_cohort(survivors, "consistency request")
        self._require_peers(self._round_graph().count_in_group(self._index, survivors), "survived")
        self._signed_survivors = tuple(message.survivors)
        signature = sign(self._signing_key, consistency_statement(parameters.session, parameters.round,
                                                                   message.survivors))
        return [ConsistencySignature(*self._header(CONSISTENCY_CHECK), signature=signature)]

    # -- Unmasking --------------------------------------------------------------------

    def _unmasking(self, message: Message) -> list[Message]:
        message = received(message, UnmaskRequest)
        parameters = self._parameters
        graph = self._round_graph()
        survivors = check_client_list(message.survivors, parameters.clients, "unmask request survivors")
        dropped = check_client_list(message.dropped, parameters.clients, "unmask request dropped clients")
        both = survivors & dropped
        if both:
            raise ProtocolViolation(
                f"unmask request lists client/{min(both)} as both survivor and dropped; "
                f"{self.party} never reveals both shares of one client"
            )
        self._check_survivors(survivors, "unmask request")
        self._require_cohort(survivors, "unmask request")
        dropped_neighbours = {peer for peer in dropped if graph.is_neighbour(self._index, peer)}
        unseen = dropped_neighbours - self._masked_with
        if unseen:
            raise ProtocolViolation(
                f"unmask request lists client/{min(unseen)} as dropped, but it never shared keys with {self.party}"
            )
        surviving_neighbours = {peer for peer in survivors if graph.is_neighbour(self._index, peer)}
        unaccounted = self._masked_with - surviving_neighbours - dropped_neighbours
        if unaccounted:
            raise ProtocolViolation(
                f"unmask request does not say whether client/{min(unaccounted)} survived or dropped"
            )
        if parameters.malicious_server:
            self._check_consistency_signatures(message)
        self._require_peers(graph.count_in_group(self._index, survivors), "survived")
        if self._own_seed_share is None:
            raise LocalProtocolError(f"{self.party} holds no share of its self-mask seed: share-keys comes first")
        removed = self._removals(survivors)
        self_mask_shares = {peer: self._held[peer][SHARE_BYTES : 2 * SHARE_BYTES]
                            + (self._held[peer][2 * SHARE_BYTES :] if peer in removed else b"")
                            for peer in surviving_neighbours}
        own_noise_share = self._own_noise_share if self._index in removed else None
        if self._index in removed and own_noise_share is None:
            raise LocalProtocolError(f"{self.party} holds no share of its noise seed: share-keys comes first")
        self_mask_shares[self._index] = self._own_seed_share + (own_noise_share or b"")
        mask_key_shares = {peer: self._held[peer][:SHARE_BYTES] for peer in dropped_neighbours}
        return [UnmaskShares(*self._header(UNMASKING), self_mask_shares=self_mask_shares,
                             mask_key_shares=mask_key_shares)]

    def _removals(self, survivors: frozenset[int]) -> frozenset[int]:
        """D(U): the survivors whose noise shares go, from the survivor set U this client checked (empty: no noise).

        Computed here, never taken from the server; a set of fewer than t or
        more than n survivors removes nothing and is refused.
        """
        noise = self._parameters.noise
        if noise is None:
            return frozenset()
        if not noise.kept <= len(survivors) <= noise.clients:
            raise ProtocolViolation(f"unmask request names {len(survivors)} survivors; exact noise keeps "
                                    f"t={noise.kept} shares, so {self.party} unmasks only t to n survivors")
        return frozenset(noise.removals(survivors, round=self._parameters.round))

    def _check_consistency_signatures(self, message: UnmaskRequest) -> None:
        parameters = self._parameters
        graph = self._round_graph()
        if tuple(message.survivors) != self._signed_survivors:
            raise ProtocolViolation(f"unmask request's survivors differ from the set {self.party} signed")
        statement = consistency_statement(parameters.session, parameters.round, message.survivors)
        for signer, signature in sorted(message.signatures.items()):
            if not graph.in_group(self._index, signer) or signer not in message.survivors:
                raise InvalidMessage(f"unmask request carries a signature of client/{signer}, "
                                     f"not a surviving member of {self.party}'s neighbourhood")
            verify(parameters.verification_keys[signer], signature, statement)
        self._require_peers(len(message.signatures), "signed the survivor set")
