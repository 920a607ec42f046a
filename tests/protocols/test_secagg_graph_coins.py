"""The SecAgg+ graph against a malicious server: drawn from coins every client commits to, then reveals.

The server picks the session and who gets which index. If the graph were a
public function of those, it could grind sessions offline until its
colluders surround a target. Here the graph comes from coins the clients
commit to before any is revealed, so a fixed session and assignment give a
fresh graph every run; every party derives the same graph from the same
reveals; and a server that substitutes a commitment, shows clients different
commitment lists, or withholds or alters a reveal makes the honest clients
stop before any share leaves them.

The tests drive the honest engines by hand and play the malicious server
themselves where it must misbehave (forging what it forwards, never
consulting the honest server engine's checks).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from securefl.errors import InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.protocols import SecAgg
from securefl.protocols.base import EngineState
from securefl.protocols.secagg import (
    COMMIT_COINS,
    AdvertiseRequest,
    CoinCommitment,
    KeyAdvertisement,
    ShareKeysRequest,
)
from securefl.protocols.secagg.graph import coin_graph, round_graph
from securefl.protocols.secagg.labels import coin_commitment
from securefl.protocols.secagg.messages import AdvertisedKeys
from securefl.protocols.wire import SERVER, client_id, client_index, decode_message
from securefl.simulation import run_protocol
from tests.protocols.helpers import random_inputs, ring_sum

CLIENTS = 12
NEIGHBORS = 4  # neighbourhoods of 5, threshold 4 against a malicious server


class Game:
    """One malicious-server SecAgg+ round driven by hand: the test is the network (and the server when it lies)."""

    def __init__(self, *, clients=CLIENTS, neighbors=NEIGHBORS, session=None, round=3, seed=0):
        self.protocol = SecAgg(neighbors=neighbors, malicious_server=True)
        self.session = os.urandom(16) if session is None else session
        self.round = round
        self.clients = clients
        parties = self.protocol.setup(clients=clients, vector_length=4, session=self.session, round=round)
        self.server = parties.server
        self.engines = parties.by_id()
        self.inputs = random_inputs(clients, 4, 32, seed=seed)
        for engine, vector in zip(parties.clients, self.inputs, strict=True):
            engine.provide_input(vector)

    def client(self, index):
        return self.engines[client_id(index)]

    def send(self, message):
        """Deliver one message through its canonical bytes; the replies."""
        return self.engines[message.recipient].handle(decode_message(message.to_bytes()))

    def phase(self, name, *, silent=()):
        """One phase run honestly; the clients in ``silent`` do not answer."""
        for request in self.server.begin_phase(name):
            if client_index(request.recipient) in silent:
                continue
            for reply in self.send(request):
                self.send(reply)
        self.server.end_phase(name)

    def advertise(self, shown=None):
        """Advertise-keys, client u shown the commitment list ``shown(u, honest list)`` (the honest one by
        default): the advertisements by sender, as a malicious server holds them (unchecked)."""
        advertisements = {}
        for request in self.server.begin_phase("advertise-keys"):
            u = client_index(request.recipient)
            if shown is not None:
                request = dataclasses.replace(request, coin_commitments=shown(u, request.coin_commitments))
            (reply,) = self.send(request)
            assert isinstance(reply, KeyAdvertisement)
            advertisements[u] = reply
        return advertisements

    def share_keys_request(self, u, advertisements, coins, graph, *, leave_out=()):
        """What a server forwards to u in share-keys: u's neighbours' advertised keys in ``graph``, and ``coins``."""
        keys = {v: AdvertisedKeys(share_public=advertisements[v].share_public,
                                  mask_public=advertisements[v].mask_public,
                                  signature=advertisements[v].signature)
                for v in graph.neighbours(u) if v in advertisements and v not in leave_out}
        return ShareKeysRequest(session=self.session, round=self.round, phase="share-keys", sender=SERVER,
                                recipient=client_id(u), keys=keys, coins=coins)

    def draw(self, coins):
        return coin_graph(self.clients, NEIGHBORS, session=self.session, round=self.round, coins=coins)


def _revealed(advertisements):
    return {u: message.coin for u, message in advertisements.items()}


# --- every party draws the same graph, and only once every coin is revealed --------------------------


def test_every_client_and_the_server_draw_the_same_graph_from_the_reveals():
    game = Game()
    game.phase(COMMIT_COINS)
    assert game.server.graph is None and all(game.client(u).graph is None for u in range(CLIENTS))
    requests = game.server.begin_phase("advertise-keys")
    assert len({tuple(sorted(q.coin_commitments.items())) for q in requests}) == 1  # one list for everybody
    for request in requests:
        for reply in game.send(request):
            game.send(reply)
    assert game.server.graph is None  # not before the phase ends: a reveal may still be missing
    game.server.end_phase("advertise-keys")
    graph = game.server.graph
    assert graph is not None and not graph.complete and graph.degree == NEIGHBORS

    share_requests = game.server.begin_phase("share-keys")
    coins = share_requests[0].coins
    assert all(q.coins == coins for q in share_requests) and set(coins) == set(range(CLIENTS))
    for request in share_requests:
        for reply in game.send(request):
            game.send(reply)
    game.server.end_phase("share-keys")
    assert game.draw(coins).edges() == graph.edges()  # a deterministic function of the reveals
    for u in range(CLIENTS):
        assert game.client(u).graph.edges() == graph.edges()
        assert set(share_requests[u].keys) == set(graph.neighbours(u))  # share-keys routed by that graph

    for phase in game.protocol.phases[game.protocol.phases.index("masked-input"):]:
        game.phase(phase)
    aggregate = game.server.result()
    assert aggregate.included == tuple(range(CLIENTS))
    np.testing.assert_array_equal(aggregate.total, ring_sum(game.inputs, range(CLIENTS), 32))


def test_a_fixed_session_and_index_assignment_give_a_fresh_graph_every_run():
    # What the server chooses (session, round, who is client u) is the same in every run; the graph is not.
    session = bytes(range(16))
    graphs = []
    for _ in range(3):
        game = Game(session=session, round=7)
        game.phase(COMMIT_COINS)
        game.phase("advertise-keys")
        graphs.append(frozenset(game.server.graph.edges()))
    public = frozenset(round_graph(CLIENTS, NEIGHBORS, session=session, round=7).edges())
    assert len(set(graphs)) == 3 and public not in graphs


def test_the_graph_depends_on_every_coin():
    game = Game()
    game.phase(COMMIT_COINS)
    advertisements = game.advertise()
    coins = _revealed(advertisements)
    graph = game.draw(coins)
    assert game.draw(dict(coins)).edges() == graph.edges()
    for u in (0, 5, CLIENTS - 1):  # any one client's coin, changed, redraws the graph
        assert game.draw({**coins, u: os.urandom(32)}).edges() != graph.edges()
    assert game.draw({v: c for v, c in coins.items() if v != 5}).edges() != graph.edges()


def test_a_client_commits_before_it_sees_any_commitment_and_reveals_only_after():
    game = Game(clients=6)
    commitments = {}
    for request in game.server.begin_phase(COMMIT_COINS):
        (reply,) = game.send(request)
        assert isinstance(reply, CoinCommitment) and len(reply.commitment) == 32
        commitments[client_index(reply.sender)] = reply.commitment
        game.send(reply)
    game.server.end_phase(COMMIT_COINS)
    shown = []
    advertisements = game.advertise(lambda u, honest: shown.append(honest) or honest)
    assert len(shown) == 6 and all(honest == commitments for honest in shown)
    for u, message in advertisements.items():  # each reveal opens the commitment made before any was seen
        assert coin_commitment(game.session, game.round, u, message.coin) == commitments[u]


# --- a server that lies about the commitments -------------------------------------------------------------


def test_a_client_whose_own_commitment_is_replaced_or_left_out_refuses_to_reveal():
    for forge in ("replaced", "left out"):
        game = Game()
        game.phase(COMMIT_COINS)
        request = game.server.begin_phase("advertise-keys")[2]
        commitments = dict(request.coin_commitments)
        if forge == "replaced":
            commitments[2] = coin_commitment(game.session, game.round, 2, os.urandom(32))
        else:
            del commitments[2]
        with pytest.raises(ProtocolViolation, match="leave out or replace client/2's own"):
            game.send(dataclasses.replace(request, coin_commitments=commitments))
        assert game.client(2).state is EngineState.ABORTED  # and it revealed nothing


@pytest.mark.parametrize("then", ["forward the split client's keys", "hide the split client from its neighbours"])
def test_different_commitment_lists_for_different_clients_stop_the_round(then):
    """The server shows client/0 a list in which client/5's commitment is one it can open itself (so client/0
    draws a graph of the server's making from client/0's point of view); everybody else gets the true list.

    client/0's neighbours signed the true list's digest, so client/0 refuses their keys; they refuse
    client/0's, signed over the other digest; and hiding client/0 from them is refused too."""
    game = Game()
    game.phase(COMMIT_COINS)
    fake_coin = os.urandom(32)
    fake = coin_commitment(game.session, game.round, 5, fake_coin)
    advertisements = game.advertise(lambda u, honest: {**honest, 5: fake} if u == 0 else honest)
    with pytest.raises(InvalidMessage, match="signature verification failed"):
        game.server.handle(advertisements[0])  # the honest server engine would notice too

    coins = _revealed(advertisements)
    split_coins = {**coins, 5: fake_coin}
    graph, split_graph = game.draw(coins), game.draw(split_coins)
    with pytest.raises(InvalidMessage, match="signature verification failed"):
        game.send(game.share_keys_request(0, advertisements, split_coins, split_graph))
    neighbours = graph.neighbours(0)
    for u in neighbours:
        if then == "forward the split client's keys":
            with pytest.raises(InvalidMessage, match="signature verification failed"):
                game.send(game.share_keys_request(u, advertisements, coins, graph))
        else:
            with pytest.raises(ProtocolViolation, match="leaves out client/0"):
                game.send(game.share_keys_request(u, advertisements, coins, graph, leave_out=(0,)))
    for u in (0, *neighbours):  # none of them sent a share to anybody
        assert game.client(u).state is EngineState.ABORTED


# --- a reveal withheld, altered or added -------------------------------------------------------------------


def test_a_committed_client_that_does_not_reveal_aborts_the_round():
    game = Game()
    game.phase(COMMIT_COINS)
    with pytest.raises(ProtocolAbort, match=r"phase 'advertise-keys': client/7 \(1 of 12 committed clients\) "
                                            r"did not reveal its graph coin"):
        game.phase("advertise-keys", silent=(7,))
    assert game.server.state is EngineState.ABORTED and game.server.graph is None
    restored = game.protocol.restore_engine(game.server.run, game.server.state_dict())
    assert restored.state is EngineState.ABORTED and restored.graph is None


def test_a_client_that_never_committed_is_simply_absent():
    game = Game()
    game.phase(COMMIT_COINS, silent=(7,))
    requests = game.server.begin_phase("advertise-keys")
    assert 7 not in requests[0].coin_commitments and client_id(7) not in {q.recipient for q in requests}
    for request in requests:
        for reply in game.send(request):
            game.send(reply)
    game.server.end_phase("advertise-keys")
    for phase in game.protocol.phases[2:]:
        game.phase(phase)
    included = tuple(u for u in range(CLIENTS) if u != 7)
    aggregate = game.server.result()
    assert aggregate.included == included
    np.testing.assert_array_equal(aggregate.total, ring_sum(game.inputs, included, 32))


@pytest.mark.parametrize("forge, error, match", [
    ("withhold client/5's reveal", ProtocolAbort, "lacks the graph coin of client/5"),
    ("alter client/5's reveal", InvalidMessage, "client/5's graph coin does not match its commitment"),
    ("reveal a coin for a client that never committed", InvalidMessage, "client/11, which committed to none"),
])
def test_every_client_refuses_to_draw_a_graph_from_forged_reveals(forge, error, match):
    game = Game()
    game.phase(COMMIT_COINS, silent=(11,))
    advertisements = game.advertise()
    coins = _revealed(advertisements)
    if forge.startswith("withhold"):
        forged = {v: c for v, c in coins.items() if v != 5}  # the server keeps a graph it likes, drops the rest
    elif forge.startswith("alter"):
        forged = {**coins, 5: bytes(32)}
    else:
        forged = {**coins, 11: os.urandom(32)}
    graph = game.draw(forged)
    for u in sorted(advertisements):
        with pytest.raises(error, match=match):
            game.send(game.share_keys_request(u, advertisements, forged, graph))
        assert game.client(u).state is EngineState.ABORTED


def test_the_server_engine_refuses_a_reveal_that_does_not_open_its_commitment():
    game = Game()
    game.phase(COMMIT_COINS)
    requests = game.server.begin_phase("advertise-keys")
    (advertisement,) = game.send(requests[0])
    for coin in (bytes(32), b""):
        with pytest.raises(InvalidMessage, match="does not match its commitment"):
            game.server.handle(dataclasses.replace(advertisement, coin=coin))
    game.server.handle(advertisement)  # the genuine one is still taken


# --- other modes are as before --------------------------------------------------------------------------


def test_semi_honest_and_complete_graph_rounds_carry_no_coins():
    for protocol in (SecAgg(neighbors=4), SecAgg(malicious_server=True), SecAgg()):
        assert COMMIT_COINS not in protocol.phases
        inputs = random_inputs(8, 3, 32, seed=1)
        aggregate, transcript, _ = run_protocol(protocol, inputs)
        assert aggregate.included == tuple(range(8))
        advertisements = [decode_message(entry.payload) for entry in transcript
                          if entry.phase == "advertise-keys"]
        assert advertisements and all(message.coin == b"" for message in advertisements)
    for protocol in (SecAgg(neighbors=4), SecAgg()):
        run = protocol.run_parameters(clients=8, vector_length=3, session=bytes(16), round=0)
        assert run.graph is not None  # public from the session: a semi-honest server follows the protocol


def test_a_coin_sent_where_the_mode_has_none_is_refused():
    protocol = SecAgg(neighbors=4)
    parties = protocol.setup(clients=8, vector_length=3, session=os.urandom(16), round=0)
    request = parties.server.begin_phase("advertise-keys")[0]
    client = parties.by_id()[request.recipient]
    with pytest.raises(InvalidMessage, match="only malicious-server SecAgg\\+"):
        client.handle(dataclasses.replace(request, coin_commitments={0: bytes(32)}))
    assert isinstance(request, AdvertiseRequest)


def test_the_coin_graph_phase_list_is_what_the_driver_runs():
    protocol = SecAgg(neighbors=4, malicious_server=True)
    assert protocol.phases == ("commit-coins", "advertise-keys", "share-keys", "masked-input", "consistency-check",
                               "unmasking")
    run = protocol.run_parameters(clients=8, vector_length=3, session=bytes(16), round=0,
                                  verification_keys=[bytes([i]) * 32 for i in range(1, 9)])
    assert run.graph is None and run.coin_graph and run.group_size == 5 and run.phases == protocol.phases


# --- plain-data state: the coins survive a restart, and are checked when they come back ----------------------


def _restored(game, engine, state):
    return game.protocol.restore_engine(engine.run, state)


def test_engines_rebuilt_from_plain_data_between_phases_draw_the_same_graph_and_sum_exactly():
    game = Game(clients=9)
    for phase in game.protocol.phases:
        game.phase(phase)
        for party, engine in list(game.engines.items()):
            rebuilt = _restored(game, engine, engine.state_dict())
            assert rebuilt.state_dict().keys() == engine.state_dict().keys()
            graph, again = engine.graph, rebuilt.graph
            assert (graph is None) == (again is None) and (graph is None or graph.edges() == again.edges())
            game.engines[party] = rebuilt
        game.server = game.engines[SERVER]
    aggregate = game.server.result()
    np.testing.assert_array_equal(aggregate.total, ring_sum(game.inputs, range(9), 32))


def test_stored_coins_are_checked_on_restore():
    game = Game(clients=9)
    client = game.client(4)
    game.phase(COMMIT_COINS)
    committed = client.state_dict()
    assert len(committed["coin"]) == 32 and committed["coins"] == []
    with pytest.raises(InvalidMessage, match="unrevealed graph coin"):
        _restored(game, client, {**committed, "coin": b""})
    game.phase("advertise-keys")
    advertised, server = client.state_dict(), game.server.state_dict()
    assert advertised["coin"] == b"" and len(advertised["coin-commitments"]) == 9
    with pytest.raises(InvalidMessage, match="without its own commitment"):
        _restored(game, client, {**advertised, "coin-committers": advertised["coin-committers"][:4] +
                                 advertised["coin-committers"][5:], "coin-commitments":
                                 advertised["coin-commitments"][:4] + advertised["coin-commitments"][5:]})
    coins = list(server["coins"])
    coins[2] = bytes(32)
    with pytest.raises(InvalidMessage, match="does not open a stored commitment"):
        _restored(game, game.server, {**server, "coins": coins})
    with pytest.raises(InvalidMessage, match="every committed client's coin"):
        _restored(game, game.server, {**server, "coin-revealers": server["coin-revealers"][1:],
                                      "coins": server["coins"][1:], "advertised": server["advertised"][1:],
                                      "share-publics": server["share-publics"][1:],
                                      "mask-publics": server["mask-publics"][1:],
                                      "key-signatures": server["key-signatures"][1:]})
    game.phase("share-keys")
    shared = client.state_dict()
    assert len(shared["coins"]) == 9 and shared["coin-commitments"] == []
    with pytest.raises(InvalidMessage, match="graph coins"):
        _restored(game, client, {**shared, "coin-revealers": [], "coins": []})
    with pytest.raises(InvalidMessage, match="without its own"):
        _restored(game, client, {**shared, "coin-revealers": shared["coin-revealers"][:4] +
                                 shared["coin-revealers"][5:], "coins": shared["coins"][:4] + shared["coins"][5:]})


def test_a_client_stopped_by_forged_reveals_is_restored_stopped():
    game = Game(clients=9)
    game.phase(COMMIT_COINS)
    advertisements = game.advertise()
    coins = {v: c for v, c in _revealed(advertisements).items() if v != 5}
    client = game.client(0)
    with pytest.raises(ProtocolAbort):
        game.send(game.share_keys_request(0, advertisements, coins, game.draw(coins)))
    state = client.state_dict()
    assert state["coin-commitments"] == [] and state["coins"] == []  # nothing drawn, nothing kept
    restored = _restored(game, client, state)
    assert restored.state is EngineState.ABORTED and restored.graph is None
