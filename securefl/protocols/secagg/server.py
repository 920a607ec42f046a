"""The SecAgg server engine: drives the phases, relays ciphertexts, unmasks the sum.

Per phase the server asks the clients that answered the previous phase (and
whose neighbourhood still has ``threshold`` live members, since the others
would refuse), collects one reply each (every reply validated: sender asked,
no duplicate, exact key sets, lengths, signatures), and ends the phase with
``ProtocolAbort`` naming the phase and the counts when fewer than
``threshold`` clients answered. At the end it

    total = sum_{u in S} y_u
          - sum_{u in S} PRG(b_u)                                  (b_u from t shares)
          - sum_{v dropped} sum_{u in S, u ~ v} sign(u, v) PRG(s_uv)   (s_v from t shares)

and checks every reconstructed secret against what its owner published
(the commitment to b_u, the mask public key of v), so a corrupted share
raises instead of yielding a wrong sum.

With exact noise (``Parameters.noise``) and m = |S| survivors it also
reconstructs the noise seed s_v of each of the m - t survivors in D(S)
(``noise.py``: a public hash order of S), checks it against v's anchor, and
subtracts the whole share e_v it expands, so the total carries exactly the
target noise, Sk(V). Its unmask request then lists the whole survivor set on
every graph (each client computes D(S) itself and reveals seed shares for
nobody else).

Malicious-server SecAgg+ opens with commit-coins: the server collects a
commitment h_u from each client, forwards the whole list {v: h_v} to every
committed client in its advertise request, checks each reveal r_u against
h_u, and ends advertise-keys with ``ProtocolAbort`` unless every committed
client revealed; only then does it draw the graph (``graph.coin_graph``) and
route share-keys by it, as every client does from the same reveals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np

from securefl import ring
from securefl.crypto import shamir
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from securefl.errors import ConfigurationError, InvalidMessage, LocalProtocolError, ProtocolAbort
from securefl.protocols.base import EngineState, Header, RingAggregate, RunParameters, ServerEngine, Step, received
from securefl.protocols.secagg.client import check_share
from securefl.protocols.secagg.config import Parameters
from securefl.protocols.secagg.graph import Graph, coin_graph
from securefl.protocols.secagg.labels import (
    advertise_statement,
    coin_commitment,
    coin_list_digest,
    consistency_statement,
    self_mask_commitment,
)
from securefl.protocols.secagg.masking import remove_dropped_masks, remove_self_mask
from securefl.protocols.secagg.messages import (
    ADVERTISE_KEYS,
    COIN_BYTES,
    COMMIT_COINS,
    COMMITMENT_BYTES,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    SEALED_NOISE_SHARES_BYTES,
    SEALED_SHARES_BYTES,
    SHARE_BYTES,
    SHARE_KEYS,
    UNMASKING,
    AdvertisedKeys,
    AdvertiseRequest,
    CoinCommitment,
    CoinCommitRequest,
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
from securefl.protocols.secagg.noise import noise_anchor, noise_share
from securefl.protocols.secagg.primitives import AgreementKey, MaskAccumulator, verify
from securefl.protocols.state import StateDict, StateReader, keyed, nested
from securefl.protocols.wire import SERVER, Message, client_id, client_index

__all__ = ["SecAggServer"]

_REPLIES: dict[str, type[Message]] = {
    COMMIT_COINS: CoinCommitment,
    ADVERTISE_KEYS: KeyAdvertisement,
    SHARE_KEYS: EncryptedShares,
    MASKED_INPUT: MaskedInput,
    CONSISTENCY_CHECK: ConsistencySignature,
    UNMASKING: UnmaskShares,
}


class SecAggServer(ServerEngine):
    """The server of one SecAgg round (see the module docstring)."""

    _run: Parameters

    def __init__(self, parameters: Parameters) -> None:
        self._parameters = parameters
        # What the clients published.
        self._coin_commitments: dict[int, bytes] = {}
        self._coin_list = b""
        self._coins: dict[int, bytes] = {}
        self._graph: Graph | None = parameters.graph
        self._share_publics: dict[int, bytes] = {}
        self._mask_publics: dict[int, bytes] = {}
        self._key_signatures: dict[int, bytes] = {}
        self._listed: dict[int, frozenset[int]] = {}
        self._ciphertexts: dict[int, dict[int, bytes]] = {}
        self._commitments: dict[int, bytes] = {}
        self._total: np.ndarray | None = None
        self._survivors: tuple[int, ...] = ()
        self._removal_cache: tuple[tuple[int, ...], frozenset[int]] = ((), frozenset())
        self._dropped: tuple[int, ...] = ()
        self._survivor_set: frozenset[int] = frozenset()
        self._dropped_set: frozenset[int] = frozenset()
        self._consistency_signatures: dict[int, bytes] = {}
        self._self_mask_shares: dict[int, dict[int, bytes]] = {}
        self._mask_key_shares: dict[int, dict[int, bytes]] = {}
        self._result: RingAggregate | None = None
        super().__init__(SERVER, parameters)

    def _steps(self) -> list[Step]:
        requests: dict[str, Callable[[], list[Message]]] = {
            COMMIT_COINS: self._request_coin_commitments,
            ADVERTISE_KEYS: self._request_keys,
            SHARE_KEYS: self._request_shares,
            MASKED_INPUT: self._request_masked_inputs,
            CONSISTENCY_CHECK: self._request_signatures,
            UNMASKING: self._request_unmasking,
        }
        receivers: dict[str, Callable[[int, Message], None]] = {
            COMMIT_COINS: self._receive_coin_commitment,
            ADVERTISE_KEYS: self._receive_keys,
            SHARE_KEYS: self._receive_shares,
            MASKED_INPUT: self._receive_masked_input,
            CONSISTENCY_CHECK: self._receive_signature,
            UNMASKING: self._receive_unmask_shares,
        }

        indices = {client_id(u): u for u in range(self._parameters.clients)}  # the parties the server asks

        def step(phase: str) -> Step:
            receive = receivers[phase]

            def handler(message: Message) -> list[Message]:
                sender = indices.get(message.sender)
                receive(client_index(message.sender) if sender is None else sender, message)
                return []

            return Step(phase, (_REPLIES[phase],), handler, begin=requests[phase], end=lambda: self._close(phase))

        return [step(phase) for phase in self._parameters.phases]

    @property
    def graph(self) -> Graph | None:
        """The round's graph: from the parameters, or (malicious-server SecAgg+) drawn from the clients'
        coins when advertise-keys ends; None until then."""
        return self._graph

    def _round_graph(self) -> Graph:
        if self._graph is None:
            raise LocalProtocolError("the graph is drawn when advertise-keys ends")
        return self._graph

    # -- plain-data state ----------------------------------------------------------------

    STATE_KIND = "secagg/server"

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> SecAggServer:
        if not isinstance(run, Parameters):
            raise ConfigurationError(f"SecAgg engines need SecAgg's run_parameters; found {type(run).__name__}")
        return cls(run)

    def _state_fields(self) -> StateDict:
        advertised = sorted(self._share_publics)
        listed = sorted(self._listed)
        listed_peers = [sorted(self._listed[u]) for u in listed]
        shared, counts, recipients, ciphertexts = nested(self._ciphertexts)
        signers, signatures = keyed(self._consistency_signatures)
        unmasked, self_counts, self_owners, self_shares = nested(self._self_mask_shares)
        key_holders, key_counts, key_owners, key_shares = nested(self._mask_key_shares)
        dtype = ring.ring_dtype(self._parameters.ring_bits)
        result = self._result
        coin_committers, coin_commitments = keyed(self._coin_commitments)
        coin_revealers, coins = keyed(self._coins)
        return {
            "coin-committers": coin_committers, "coin-commitments": coin_commitments,
            "coin-revealers": coin_revealers, "coins": coins,
            "advertised": advertised,
            "share-publics": [self._share_publics[u] for u in advertised],
            "mask-publics": [self._mask_publics[u] for u in advertised],
            "key-signatures": [self._key_signatures[u] for u in advertised],
            "listed": listed, "listed-sizes": [len(peers) for peers in listed_peers],
            "listed-peers": [v for peers in listed_peers for v in peers],
            "shared": shared, "ciphertext-counts": counts, "ciphertext-recipients": recipients,
            "ciphertexts": ciphertexts, "commitments": [self._commitments[u] for u in shared],
            "total": self._total if self._total is not None else np.zeros(0, dtype),
            "survivors": list(self._survivors), "dropped": list(self._dropped),
            "signers": signers, "consistency-signatures": signatures,
            "self-share-holders": unmasked, "self-share-counts": self_counts, "self-share-owners": self_owners,
            "self-shares": self_shares,
            "key-share-holders": key_holders, "key-share-counts": key_counts, "key-share-owners": key_owners,
            "key-shares": key_shares,
            "result": result.total if result is not None else np.zeros(0, dtype),
            "result-included": list(result.included) if result is not None else [],
        }

    def _restore_fields(self, reader: StateReader) -> None:
        parameters = self._parameters
        last = parameters.clients - 1
        dtype = ring.ring_dtype(parameters.ring_bits)
        coin_commitments, coins, graph = self._restore_coins(reader, last)
        advertised = reader.integers("advertised", minimum=0, maximum=last)
        share_publics = reader.blobs("share-publics", size=PUBLIC_KEY_BYTES)
        mask_publics = reader.blobs("mask-publics", size=PUBLIC_KEY_BYTES)
        key_signatures = reader.blobs("key-signatures")
        reader.require(len(share_publics) == len(mask_publics) == len(key_signatures) == len(advertised),
                       "must hold both public keys and a signature of each client that advertised")
        signature_size = SIGNATURE_BYTES if parameters.malicious_server else 0
        reader.require(all(len(signature) == signature_size for signature in key_signatures),
                       f"must hold {signature_size}-byte key signatures")
        listed = self._read_listed(reader, last)
        ciphertexts = reader.nested_blobs("shared", "ciphertext-counts", "ciphertext-recipients", "ciphertexts",
                                          maximum=last, size=self._sealed_bytes)
        commitments = reader.blobs("commitments", size=self._commitment_bytes)
        reader.require(len(commitments) == len(ciphertexts), "must hold one commitment of each client that shared")
        total = reader.optional_vector("total", dtype=dtype, length=parameters.length)
        survivors = reader.integers("survivors", minimum=0, maximum=last)
        dropped = reader.integers("dropped", minimum=0, maximum=last)
        signatures = reader.keyed_blobs("signers", "consistency-signatures", maximum=last, size=SIGNATURE_BYTES)
        self_shares = reader.nested_blobs("self-share-holders", "self-share-counts", "self-share-owners",
                                          "self-shares", maximum=last)
        key_shares = reader.nested_blobs("key-share-holders", "key-share-counts", "key-share-owners",
                                         "key-shares", maximum=last, size=SHARE_BYTES)
        result = reader.optional_vector("result", dtype=dtype, length=parameters.length)
        included = reader.integers("result-included", minimum=0, maximum=last)

        known = frozenset(advertised)
        reader.require(not parameters.coin_graph or known == coins.keys(),
                       "must hold a revealed coin of exactly the clients that advertised keys")
        if graph is None:
            reader.require(not (listed or ciphertexts or self_shares or key_shares),
                           "holds key lists, ciphertexts or shares before the graph was drawn")
        else:
            reader.require(set(listed) <= known and all(peers <= known and all(graph.is_neighbour(u, v) for v in peers)
                                                        for u, peers in listed.items()),
                           "lists keys of clients that did not advertise or are not neighbours")
            for by_holder, what in ((self_shares, "self-mask"), (key_shares, "mask-key")):
                for holder, shares in by_holder.items():
                    for owner, share in shares.items():
                        reader.require(graph.in_group(owner, holder),
                                       f"holds a {what} share outside its neighbourhood")
                        for start in range(0, len(share), SHARE_BYTES):
                            check_share(share[start : start + SHARE_BYTES], x=graph.share_point(owner, holder),
                                        what=f"stored {what} share")
        reader.require(all(u in listed and recipients.keys() == listed[u] for u, recipients in ciphertexts.items()),
                       "holds ciphertexts that differ from the keys each client was sent")
        reader.require(not set(survivors) & set(dropped) and set(survivors) | set(dropped) <= set(ciphertexts),
                       "holds survivor and dropped sets that overlap or name clients that never shared")
        noise = parameters.noise
        reader.require(not self_shares or noise is None or noise.kept <= len(survivors) <= noise.clients,
                       "holds revealed shares of a survivor set exact noise cannot unmask")
        removed = frozenset(noise.removals(survivors, round=parameters.round)) \
            if self_shares and noise is not None else frozenset()
        reader.require(all(len(share) == SHARE_BYTES * (2 if owner in removed else 1)
                           for shares in self_shares.values() for owner, share in shares.items()),
                       "holds revealed shares of the wrong length (a noise-seed share exactly for D(U))")
        reader.require(parameters.malicious_server or not signatures,
                       "holds consistency signatures in semi-honest mode")
        reader.require(set(signatures) <= set(survivors), "holds consistency signatures of non-survivors")
        reader.require(self_shares.keys() == key_shares.keys(), "must hold both kinds of shares of each responder")
        reader.require((result is None) == (self._state is not EngineState.DONE) and
                       (result is not None or not included) and (result is None or included == survivors),
                       "holds a result exactly when the aggregation is done, over its survivors")

        self._coin_commitments, self._coins, self._graph = coin_commitments, coins, graph
        advertise = parameters.phases.index(ADVERTISE_KEYS)
        self._coin_list = self._list_digest() if parameters.coin_graph and self._position >= advertise else b""
        self._share_publics = dict(zip(advertised, share_publics))
        self._mask_publics = dict(zip(advertised, mask_publics))
        self._key_signatures = dict(zip(advertised, key_signatures))
        self._listed = listed
        self._ciphertexts = ciphertexts
        self._commitments = dict(zip(sorted(ciphertexts), commitments))
        self._total = total
        self._survivors, self._dropped = tuple(survivors), tuple(dropped)
        self._survivor_set, self._dropped_set = frozenset(survivors), frozenset(dropped)
        self._consistency_signatures = signatures
        self._self_mask_shares, self._mask_key_shares = self_shares, key_shares
        self._result = RingAggregate(total=result, included=tuple(included)) if result is not None else None

    def _restore_coins(self, reader: StateReader,
                       last: int) -> tuple[dict[int, bytes], dict[int, bytes], Graph | None]:
        """(coin commitments, reveals, the graph): the graph from the parameters, or redrawn from the stored
        reveals once advertise-keys has ended (when every committed client must have revealed)."""
        parameters = self._parameters
        commitments = reader.keyed_blobs("coin-committers", "coin-commitments", maximum=last, size=COMMITMENT_BYTES)
        coins = reader.keyed_blobs("coin-revealers", "coins", maximum=last, size=COIN_BYTES)
        if not parameters.coin_graph:
            reader.require(not commitments and not coins, "holds graph coins outside malicious-server SecAgg+")
            return commitments, coins, parameters.graph
        advertise = parameters.phases.index(ADVERTISE_KEYS)
        reader.require(self._position >= advertise or not coins, "holds revealed coins before advertise-keys")
        session, round = parameters.session, parameters.round
        reader.require(coins.keys() <= commitments.keys()
                       and all(coin_commitment(session, round, v, coin) == commitments[v] for v, coin in coins.items()),
                       "holds a revealed coin that does not open a stored commitment")
        drawn = self._position > advertise or (self._position == advertise and not self._open and self._active)
        if not drawn:
            return commitments, coins, None
        reader.require(bool(coins) and coins.keys() == commitments.keys(),
                       "ended advertise-keys without every committed client's coin")
        return commitments, coins, coin_graph(parameters.clients, parameters.neighbors or 0, session=session,
                                              round=round, coins=coins)

    @staticmethod
    def _read_listed(reader: StateReader, last: int) -> dict[int, frozenset[int]]:
        clients = reader.integers("listed", minimum=0, maximum=last)
        sizes = reader.integers("listed-sizes", minimum=0, maximum=last + 1, increasing=False)
        peers = reader.integers("listed-peers", minimum=0, maximum=last, increasing=False)
        reader.require(len(sizes) == len(clients) and sum(sizes) == len(peers), "has key lists of the wrong size")
        listed, start = {}, 0
        for client, size in zip(clients, sizes):
            members = peers[start : start + size]
            reader.require(members == sorted(set(members)), "has a key list naming a client twice or out of order")
            listed[client], start = frozenset(members), start + size
        return listed

    def _close(self, phase: str) -> None:
        threshold = self._parameters.threshold
        answered = frozenset(client_index(party) for party in self.answered)
        if len(answered) < threshold:
            raise ProtocolAbort(
                f"phase {phase!r}: {len(answered)} of {len(self.asked)} clients answered; "
                f"the threshold is {threshold}"
            )
        if phase == ADVERTISE_KEYS and self._parameters.coin_graph:
            self._draw_graph()
        elif phase == MASKED_INPUT:
            minimum = self._parameters.min_clients
            if len(answered) < minimum:
                raise ProtocolAbort(
                    f"phase {phase!r}: {len(answered)} client(s) sent a masked input; min_clients={minimum}"
                )
            self._survivors = tuple(sorted(answered))
            self._dropped = tuple(sorted(set(self._ciphertexts) - answered))
            self._survivor_set, self._dropped_set = frozenset(self._survivors), frozenset(self._dropped)
        elif phase == UNMASKING:
            try:
                self._unmask()
            except InvalidMessage as error:  # shares that do not reconstruct: the round cannot finish
                raise ProtocolAbort(f"phase 'unmasking': {error}") from None

    @property
    def _commitment_bytes(self) -> int:
        """The self-mask commitment, and the noise anchor when the clients share noise seeds."""
        return COMMITMENT_BYTES * (2 if self._parameters.shares_noise_seed else 1)

    @property
    def _sealed_bytes(self) -> int:
        """The sealed shares of one client for one neighbour: two shares, three with a noise seed."""
        return SEALED_NOISE_SHARES_BYTES if self._parameters.shares_noise_seed else SEALED_SHARES_BYTES

    def _removed(self) -> frozenset[int]:
        """D(S): the survivors whose noise shares go (empty without exact noise or outside [t, n] survivors)."""
        noise, survivors = self._parameters.noise, tuple(self._survivors)
        if noise is None or not noise.kept <= len(survivors) <= noise.clients:
            return frozenset()
        if self._removal_cache[0] != survivors:
            self._removal_cache = (survivors, frozenset(noise.removals(survivors, round=self._parameters.round)))
        return self._removal_cache[1]

    def _aggregate(self) -> RingAggregate:
        if self._result is None:
            raise LocalProtocolError("the unmasking phase has not produced the aggregate")
        return self._result

    # -- helpers ------------------------------------------------------------------------

    def _header(self, phase: str, client: int) -> Header:
        return self._parameters.header(phase, SERVER, client_id(client))

    def _viable(self, candidates: Iterable[int], live: Iterable[int]) -> list[int]:
        """Candidates whose neighbourhood has at least threshold live members (the rest would refuse)."""
        graph, threshold = self._round_graph(), self._parameters.threshold
        live = frozenset(live)
        return [u for u in sorted(candidates) if graph.count_in_group(u, live) >= threshold]

    # -- CommitCoins (malicious-server SecAgg+) -------------------------------------------

    def _request_coin_commitments(self) -> list[Message]:
        return [CoinCommitRequest(*self._header(COMMIT_COINS, u)) for u in range(self._parameters.clients)]

    def _receive_coin_commitment(self, sender: int, message: Message) -> None:
        message = received(message, CoinCommitment)
        self._coin_commitments[sender] = message.commitment

    def _list_digest(self) -> bytes:
        parameters = self._parameters
        return coin_list_digest(parameters.session, parameters.round, parameters.clients, self._coin_commitments)

    def _draw_graph(self) -> None:
        """End of advertise-keys: every committed client must have revealed, then the graph is drawn.

        Drawing from the reveals that came would let whoever withholds the
        last one (a colluding client, or the server dropping it) choose
        between two graphs, so a missing reveal aborts the round. Each reveal
        was checked against its commitment when it arrived.
        """
        parameters = self._parameters
        missing = sorted(self._coin_commitments.keys() - self._coins.keys())
        if missing:
            raise ProtocolAbort(f"phase 'advertise-keys': client/{missing[0]} ({len(missing)} of "
                                f"{len(self._coin_commitments)} committed clients) did not reveal its graph coin; "
                                f"the graph needs every committed coin")
        self._graph = coin_graph(parameters.clients, parameters.neighbors or 0, session=parameters.session,
                                 round=parameters.round, coins=self._coins)

    # -- AdvertiseKeys ----------------------------------------------------------------

    def _request_keys(self) -> list[Message]:
        parameters = self._parameters
        if not parameters.coin_graph:
            return [AdvertiseRequest(*self._header(ADVERTISE_KEYS, u), coin_commitments={})
                    for u in range(parameters.clients)]
        # One list for everybody; each client checks its own entry and signs the list's digest.
        self._coin_list = self._list_digest()
        commitments = dict(self._coin_commitments)
        return [AdvertiseRequest(*self._header(ADVERTISE_KEYS, u), coin_commitments=commitments)
                for u in sorted(commitments)]

    def _receive_keys(self, sender: int, message: Message) -> None:
        message = received(message, KeyAdvertisement)
        parameters = self._parameters
        if message.share_public == message.mask_public:
            raise InvalidMessage(f"client/{sender} advertised the same key for shares and masks")
        if parameters.coin_graph:
            if coin_commitment(parameters.session, parameters.round, sender, message.coin) \
                    != self._coin_commitments[sender]:
                raise InvalidMessage(f"client/{sender}'s revealed graph coin does not match its commitment")
        elif message.coin:
            raise InvalidMessage(f"client/{sender} revealed a graph coin, which only malicious-server SecAgg+ uses")
        if parameters.malicious_server:
            statement = advertise_statement(parameters.session, parameters.round, sender, message.share_public,
                                            message.mask_public, coin_list=self._coin_list)
            verify(parameters.verification_keys[sender], message.signature, statement)
        elif message.signature:
            raise InvalidMessage(f"client/{sender} signed its keys, which only malicious-server mode uses")
        if parameters.coin_graph:
            self._coins[sender] = message.coin
        self._share_publics[sender] = message.share_public
        self._mask_publics[sender] = message.mask_public
        self._key_signatures[sender] = message.signature

    # -- ShareKeys --------------------------------------------------------------------

    def _request_shares(self) -> list[Message]:
        advertised = frozenset(self._share_publics)
        entries = {v: AdvertisedKeys(share_public=self._share_publics[v], mask_public=self._mask_publics[v],
                                     signature=self._key_signatures[v]) for v in advertised}
        graph, coins = self._round_graph(), dict(self._coins)
        requests: list[Message] = []
        for u in self._viable(advertised, advertised):
            listed = [v for v in graph.neighbours(u) if v in advertised]
            self._listed[u] = frozenset(listed)
            requests.append(ShareKeysRequest(*self._header(SHARE_KEYS, u), keys={v: entries[v] for v in listed},
                                             coins=coins))
        return requests

    def _receive_shares(self, sender: int, message: Message) -> None:
        message = received(message, EncryptedShares)
        if message.ciphertexts.keys() != self._listed[sender]:
            raise InvalidMessage(f"client/{sender} must send one ciphertext to each neighbour whose keys it received")
        size = self._sealed_bytes
        if any(len(ciphertext) != size for ciphertext in message.ciphertexts.values()) \
                or len(message.self_mask_commitment) != self._commitment_bytes:
            raise InvalidMessage(f"client/{sender} must send {size}-byte ciphertexts and a "
                                 f"{self._commitment_bytes}-byte commitment in this round")
        self._ciphertexts[sender] = message.ciphertexts
        self._commitments[sender] = message.self_mask_commitment

    # -- MaskedInputCollection ----------------------------------------------------------

    def _request_masked_inputs(self) -> list[Message]:
        shared = frozenset(self._ciphertexts)
        inbox: dict[int, dict[int, bytes]] = defaultdict(dict)
        for sender in sorted(shared):
            for recipient, ciphertext in self._ciphertexts[sender].items():
                inbox[recipient][sender] = ciphertext
        return [MaskedInputRequest(*self._header(MASKED_INPUT, u), ciphertexts=inbox.get(u, {}))
                for u in self._viable(shared, shared)]

    def _receive_masked_input(self, sender: int, message: Message) -> None:
        message = received(message, MaskedInput)
        parameters = self._parameters
        if message.ring_bits != parameters.ring_bits or message.vector.size != parameters.length:
            raise InvalidMessage(
                f"client/{sender}'s masked input has {message.vector.size} coordinates of {message.ring_bits} bits; "
                f"expected {parameters.length} of {parameters.ring_bits}"
            )
        if self._total is None:
            self._total = np.array(message.vector, dtype=ring.ring_dtype(parameters.ring_bits), copy=True)
        else:
            # Wraps mod 2^(word size); reduced mod 2^k once at the end.
            np.add(self._total, message.vector, out=self._total)

    # -- ConsistencyCheck -------------------------------------------------------------

    def _request_signatures(self) -> list[Message]:
        survivors = self._survivors
        return [ConsistencyRequest(*self._header(CONSISTENCY_CHECK, u), survivors=survivors)
                for u in self._viable(survivors, survivors)]

    def _receive_signature(self, sender: int, message: Message) -> None:
        message = received(message, ConsistencySignature)
        parameters = self._parameters
        statement = consistency_statement(parameters.session, parameters.round, self._survivors)
        verify(parameters.verification_keys[sender], message.signature, statement)
        self._consistency_signatures[sender] = message.signature

    # -- Unmasking --------------------------------------------------------------------

    def _needs_key(self) -> list[int]:
        """Dropped clients whose pairwise masks some survivor added."""
        graph, survivors = self._round_graph(), self._survivor_set
        return [v for v in self._dropped if any(u in survivors for u in graph.neighbours(v))]

    def _request_unmasking(self) -> list[Message]:
        parameters = self._parameters
        graph, threshold = self._round_graph(), parameters.threshold
        survivors = self._survivors
        if parameters.malicious_server:
            signers = frozenset(self._consistency_signatures)
            responders = [u for u in self._viable(signers, survivors) if graph.count_in_group(u, signers) >= threshold]
        else:
            responders = self._viable(survivors, survivors)
        reachable = frozenset(responders)
        for owner in [*survivors, *self._needs_key()]:
            holders = graph.count_in_group(owner, reachable)
            if holders < threshold:
                raise ProtocolAbort(
                    f"phase 'unmasking': only {holders} clients that can answer hold shares of client/{owner}'s "
                    f"secrets; the threshold is {threshold}"
                )
        requests: list[Message] = []
        for u in responders:
            if parameters.malicious_server:
                signatures = {w: self._consistency_signatures[w] for w in graph.closed(u)
                              if w in self._consistency_signatures}
                request = UnmaskRequest(*self._header(UNMASKING, u), survivors=survivors, dropped=self._dropped,
                                        signatures=signatures)
            elif graph.complete or parameters.noise is not None:
                # Exact noise: every client counts the survivors itself, so it sees the whole set.
                request = UnmaskRequest(*self._header(UNMASKING, u), survivors=survivors, dropped=self._dropped,
                                        signatures={})
            else:
                group = graph.closed(u)
                request = UnmaskRequest(*self._header(UNMASKING, u),
                                        survivors=tuple(v for v in group if v in self._survivor_set),
                                        dropped=tuple(v for v in group if v in self._dropped_set),
                                        signatures={})
            requests.append(request)
        return requests

    def _receive_unmask_shares(self, sender: int, message: Message) -> None:
        message = received(message, UnmaskShares)
        graph = self._round_graph()
        group = graph.closed(sender)
        expected_self = {u for u in group if u in self._survivor_set}
        expected_keys = {v for v in group if v in self._dropped_set}
        if message.self_mask_shares.keys() != expected_self or message.mask_key_shares.keys() != expected_keys:
            raise InvalidMessage(
                f"client/{sender} must send a self-mask share of each surviving and a mask-key share of each "
                f"dropped member of its neighbourhood, nothing else"
            )
        removed = self._removed()
        for owner, share in message.self_mask_shares.items():
            revealed = SHARE_BYTES * (2 if owner in removed else 1)
            if len(share) != revealed:
                raise InvalidMessage(f"client/{sender} must reveal {revealed} bytes of shares of client/{owner} "
                                     f"(a noise-seed share exactly for the survivors whose noise goes); "
                                     f"found {len(share)}")
            x = graph.share_point(owner, sender)
            check_share(share[:SHARE_BYTES], x=x, what=f"self-mask share of client/{owner}")
            if revealed > SHARE_BYTES:
                check_share(share[SHARE_BYTES:], x=x, what=f"noise-seed share of client/{owner}")
        for owner, share in message.mask_key_shares.items():
            check_share(share, x=graph.share_point(owner, sender), what=f"mask-key share of client/{owner}")
        self._self_mask_shares[sender] = message.self_mask_shares
        self._mask_key_shares[sender] = message.mask_key_shares

    def _collect(self, owners: list[int], by_holder: dict[int, dict[int, bytes]], what: str) -> list[bytes]:
        """Reconstruct each owner's secret from the first threshold shares (by holder index)."""
        threshold = self._parameters.threshold
        holders = sorted(by_holder)
        share_lists = []
        for owner in owners:
            chosen = [by_holder[h][owner] for h in holders if owner in by_holder[h]][:threshold]
            if len(chosen) < threshold:
                raise ProtocolAbort(
                    f"phase 'unmasking': {len(chosen)} shares of client/{owner}'s {what} arrived; "
                    f"the threshold is {threshold}"
                )
            share_lists.append([shamir.Share.from_bytes(share) for share in chosen])
        return shamir.reconstruct_many(share_lists, threshold=threshold) if share_lists else []

    def _noise_to_remove(self) -> np.ndarray | None:
        """sum of e_v over v in D(S), each seed checked against v's anchor; None: nothing to remove.

        ``ProtocolAbort`` if a reconstructed seed does not match its owner's
        anchor (a corrupted share): the sum would be wrong.
        """
        parameters = self._parameters
        noise, session, round = parameters.noise, parameters.session, parameters.round
        removed = sorted(self._removed())
        if noise is None or not removed:
            return None
        noise_shares = {holder: {owner: share[SHARE_BYTES:] for owner, share in shares.items() if owner in removed}
                        for holder, shares in self._self_mask_shares.items()}
        seeds = self._collect(removed, noise_shares, "noise seed")
        total = np.zeros(parameters.length, dtype=np.int64)
        for owner, seed in zip(removed, seeds, strict=True):
            if noise_anchor(seed, session=session, round=round, client=owner) != \
                    self._commitments[owner][COMMITMENT_BYTES:]:
                raise ProtocolAbort(f"client/{owner}'s reconstructed noise seed does not match its anchor "
                                    f"(a share was corrupted)")
            total += noise_share(seed, noise, length=parameters.length, round=round, client=owner)
        return total

    def _unmask(self) -> None:
        parameters = self._parameters
        graph, session, round = self._round_graph(), parameters.session, parameters.round
        survivors, needs_key = list(self._survivors), self._needs_key()
        revealed = {holder: {owner: share[:SHARE_BYTES] for owner, share in shares.items()}
                    for holder, shares in self._self_mask_shares.items()}
        seeds = self._collect(survivors, revealed, "self-mask seed")
        noise = self._noise_to_remove()
        secrets = self._collect(needs_key, self._mask_key_shares, "mask key")
        for owner, seed in zip(survivors, seeds):
            if self_mask_commitment(session, round, owner, seed) != self._commitments[owner][:COMMITMENT_BYTES]:
                raise ProtocolAbort(f"client/{owner}'s reconstructed self-mask seed does not match its commitment "
                                    f"(a share was corrupted)")
        keys = {}
        for owner, secret in zip(needs_key, secrets):
            key = AgreementKey(secret)
            if key.public_bytes != self._mask_publics[owner]:
                raise ProtocolAbort(f"client/{owner}'s reconstructed mask key does not match its public key "
                                    f"(a share was corrupted)")
            keys[owner] = key
        if self._total is None:
            raise LocalProtocolError("no masked input arrived")
        accumulator = MaskAccumulator(self._total, parameters.ring_bits)
        for owner, seed in zip(survivors, seeds):
            remove_self_mask(accumulator, client=owner, seed=seed, session=session, round=round)
        for owner, key in keys.items():
            publics = {u: self._mask_publics[u] for u in graph.neighbours(owner) if u in self._survivor_set}
            remove_dropped_masks(accumulator, dropped=owner, mask_key=key, survivor_publics=publics,
                                 session=session, round=round)
        total = accumulator.finish()
        if noise is not None:
            ring.sub(total, ring.from_signed(noise, parameters.ring_bits), parameters.ring_bits)
        self._result = RingAggregate(total=total, included=tuple(survivors))
        self._total = None
        self._self_mask_shares.clear()
        self._mask_key_shares.clear()
