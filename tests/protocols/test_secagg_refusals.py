"""SecAgg engines driven by hand (sans-I/O): honest-client refusals, a curious server, validation."""

import dataclasses
import os

import numpy as np
import pytest

from securefl.crypto import shamir
from securefl.crypto.keys import SigningKey
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolAbort,
    ProtocolViolation,
    UnexpectedMessage,
    UnexpectedSender,
)
from securefl.protocols import SecAgg
from securefl.protocols.base import EngineState
from securefl.protocols.secagg import (
    AdvertiseRequest,
    ConsistencyRequest,
    EncryptedShares,
    MaskedInput,
    MaskedInputRequest,
    ShareKeysRequest,
    UnmaskRequest,
)
from securefl.protocols.secagg.masking import remove_dropped_masks, remove_self_mask
from securefl.protocols.secagg.primitives import AgreementKey, MaskAccumulator
from securefl.protocols.wire import SERVER, client_id, client_index, decode_message
from tests.protocols.helpers import random_inputs, ring_sum


class Round:
    """One round driven by hand: the test is the network, and the server when it wants to misbehave."""

    def __init__(self, clients=5, *, length=6, round=3, **options):
        self.protocol = SecAgg(**options)
        self.session = os.urandom(16)
        self.round = round
        parties = self.protocol.setup(clients=clients, vector_length=length, session=self.session, round=round)
        self.server, self.clients = parties.server, parties.clients
        self.engines = parties.by_id()
        self.inputs = random_inputs(clients, length, self.protocol.encoding.ring_bits, seed=clients)
        for engine, vector in zip(self.clients, self.inputs):
            engine.provide_input(vector)
        self.requests, self.replies = {}, {}

    def send(self, message, *, to=None):
        """Deliver one message through its wire encoding (to its recipient, or to ``to``); return the replies."""
        return self.engines[to or message.recipient].handle(decode_message(message.to_bytes()))

    def phase(self, name, *, silent=()):
        """Run one phase honestly; clients in ``silent`` (indices) drop out of it."""
        requests = self.server.begin_phase(name)
        replies = [r for q in requests if int(q.recipient.split("/")[1]) not in silent for r in self.send(q)]
        for reply in replies:
            self.send(reply)
        self.requests[name], self.replies[name] = requests, replies
        self.server.end_phase(name)
        return replies

    def until(self, name, **silent_by_phase):
        """Run every phase before ``name``."""
        for phase in self.protocol.phases:
            if phase == name:
                return
            self.phase(phase, silent=silent_by_phase.get(phase.replace("-", "_"), ()))

    def header(self, phase, recipient, sender=SERVER):
        return dict(session=self.session, round=self.round, phase=phase, sender=sender, recipient=client_id(recipient))

    def request_for(self, phase, recipient):
        return next(q for q in self.requests[phase] if q.recipient == client_id(recipient))

    def reply_from(self, phase, sender):
        return next(r for r in self.replies[phase] if r.sender == client_id(sender))

    def unmask(self, recipient, *, survivors, dropped, signatures=None):
        return UnmaskRequest(**self.header("unmasking", recipient), survivors=tuple(survivors),
                             dropped=tuple(dropped), signatures=signatures or {})


def _shares_of(replies, owner, kind):
    return [shamir.Share.from_bytes(getattr(r, kind)[owner]) for r in replies if owner in getattr(r, kind)]


# --- a curious server ------------------------------------------------------------------------------


def test_curious_server_asking_for_both_shares_of_one_client_gets_neither():
    game = Round(clients=5)
    game.until("unmasking")
    victim, everyone = 2, range(5)
    for holder in everyone:
        request = game.unmask(holder, survivors=everyone, dropped=[victim])
        with pytest.raises(ProtocolViolation, match="client/2 as both survivor and dropped"):
            game.send(request)
    # Nobody answered, and nobody answers again: the honest server's own request now gets nothing.
    requests = game.server.begin_phase("unmasking")
    for request in requests:
        with pytest.raises(AlreadyFinalized):
            game.send(request)
    with pytest.raises(ProtocolAbort, match="phase 'unmasking': 0 of 5 clients answered"):
        game.server.end_phase("unmasking")


def test_split_views_give_a_curious_server_at_most_one_of_the_two_secrets_of_one_client():
    """Semi-honest mode: telling some clients 'client/2 survived' and others 'it dropped' (each view
    consistent on its own) yields b_2 shares from one group and key shares from the other; with
    threshold > m/2 at most one group reaches the threshold for client/2's own two secrets. (That
    is not enough against a server that lies: see the next test.)"""
    game = Round(clients=5)  # threshold 3 of 5
    game.until("unmasking")
    victim, threshold = 2, game.server._parameters.threshold
    told_survived, told_dropped = [0, 1, 2], [3, 4]
    replies = [r for u in told_survived for r in game.send(game.unmask(u, survivors=range(5), dropped=[]))]
    replies += [r for u in told_dropped for r in game.send(game.unmask(u, survivors=[0, 1, 3, 4], dropped=[2]))]
    seed_shares = _shares_of(replies, victim, "self_mask_shares")
    key_shares = _shares_of(replies, victim, "mask_key_shares")
    assert len(seed_shares) >= threshold > len(key_shares) == 2
    with pytest.raises(ProtocolAbort, match="need 3 shares"):
        shamir.reconstruct(key_shares, threshold=threshold)


def _lying_views(clients, victim, threshold):
    """Survivor views (survivors, dropped) by holder that each pass the checks of the client shown them, while
    every peer the victim masked with is 'dropped' in the view of threshold holders and the victim survives
    in the view of threshold holders."""
    peers = [u for u in range(clients) if u != victim][: threshold - 1]  # whom the victim is told shared keys
    views = {victim: ([*sorted((*peers, victim))], [])}
    covered = dict.fromkeys(peers, 0)
    for holder in (u for u in range(clients) if u != victim):
        candidates = sorted((p for p in peers if p != holder), key=lambda p: (covered[p], p))
        dropped = sorted(candidates[: clients - threshold])
        for p in dropped:
            covered[p] += 1
        views[holder] = ([u for u in range(clients) if u not in dropped], dropped)
    assert min(covered.values()) >= threshold
    return peers, views


@pytest.mark.parametrize("clients", [5, 10, 15])
def test_a_semi_honest_mode_server_that_lies_recovers_an_input_with_no_colluder(clients):
    """Why semi-honest mode assumes the server follows the protocol: with no colluding client, a server that
    tells the victim only threshold - 1 peers shared keys, then gives each client a survivor view of its own,
    collects b_victim and those peers' mask keys, which remove every mask from y_victim. (Malicious-server
    mode's signed survivor set is what refuses such split views.)"""
    game = Round(clients=clients)
    threshold = game.server._parameters.threshold
    game.until("masked-input")
    victim = 2
    peers, views = _lying_views(clients, victim, threshold)
    replies = []
    for request in game.server.begin_phase("masked-input"):
        if request.recipient == client_id(victim):  # "only these peers shared keys": y_victim masks with them alone
            request = dataclasses.replace(request, ciphertexts={v: request.ciphertexts[v] for v in peers})
        replies += game.send(request)
    for reply in replies:
        game.send(reply)
    game.server.end_phase("masked-input")
    masked = next(r for r in replies if r.sender == client_id(victim)).vector
    shares = [r for u, (survivors, dropped) in views.items()
              for r in game.send(game.unmask(u, survivors=survivors, dropped=dropped))]

    def reconstruct(owner, kind):
        found = _shares_of(shares, owner, kind)
        assert len(found) >= threshold
        return shamir.reconstruct(found[:threshold], threshold=threshold)

    accumulator = MaskAccumulator.starting_from(np.asarray(masked), 32)
    remove_self_mask(accumulator, client=victim, seed=reconstruct(victim, "self_mask_shares"),
                     session=game.session, round=game.round)
    advertised = {client_index(r.sender): r.mask_public for r in game.replies["advertise-keys"]}
    for peer in peers:
        key = AgreementKey(reconstruct(peer, "mask_key_shares"))
        assert key.public_bytes == advertised[peer]
        remove_dropped_masks(accumulator, dropped=peer, mask_key=key, survivor_publics={victim: advertised[victim]},
                             session=game.session, round=game.round)
    np.testing.assert_array_equal(accumulator.finish(), game.inputs[victim])  # the victim's input, in the clear


def test_split_views_are_refused_in_malicious_server_mode():
    game = Round(clients=5, malicious_server=True)  # threshold 4 of 5
    game.until("unmasking")
    signatures = {int(r.sender.split("/")[1]): r.signature for r in game.replies["consistency-check"]}
    for holder in (3, 4):  # they signed the survivor set {0..4}; a request claiming client/2 dropped is refused
        request = game.unmask(holder, survivors=[0, 1, 3, 4], dropped=[2], signatures=signatures)
        with pytest.raises(ProtocolViolation, match=f"differ from the set client/{holder} signed"):
            game.send(request)


def test_server_cannot_replace_keys_in_malicious_server_mode():
    game = Round(clients=4, malicious_server=True)
    game.phase("advertise-keys")
    request = game.server.begin_phase("share-keys")[0]
    entry = request.keys[1]
    forged = dict(request.keys)
    # the server's own keys under client/1's signature
    forged[1] = dataclasses.replace(entry, share_public=os.urandom(32), mask_public=os.urandom(32))
    with pytest.raises(InvalidMessage, match="signature verification failed"):
        game.send(dataclasses.replace(request, keys=forged))


# --- the unmask request must match what the client saw ------------------------------------------------


@pytest.mark.parametrize(
    "survivors, dropped, error, match",
    [
        ([0, 1, 2, 3], [4], ProtocolViolation, "client/4 as dropped, but it never shared keys"),
        ([0, 1, 2, 3, 4], [], ProtocolViolation, "client/4 as a survivor, but it never shared keys"),
        ([0, 1, 2], [], ProtocolViolation, "does not say whether client/3 survived"),
        ([1, 2, 3], [0], ProtocolViolation, "leaves out client/0"),
        ([0, 2, 1, 3], [], InvalidMessage, "increasing order"),
        ([0, 1, 2, 3, 3], [], InvalidMessage, "increasing order"),
        ([0, 1, 2, 3, 7], [], InvalidMessage, r"in \[0, 5\)"),
    ],
)
def test_unmask_request_that_disagrees_with_the_clients_view_is_refused(survivors, dropped, error, match):
    game = Round(clients=5)
    game.until("unmasking", share_keys=(4,))  # client/4 advertised keys but never shared
    client = game.engines["client/0"]
    with pytest.raises(error, match=match):
        game.send(game.unmask(0, survivors=survivors, dropped=dropped))
    assert client.state is EngineState.ABORTED and client.phase is None
    with pytest.raises(AlreadyFinalized, match="refused UnmaskRequest in phase 'unmasking'"):
        game.send(game.unmask(0, survivors=[0, 1, 2, 3], dropped=[]))


def test_client_answers_exactly_one_unmask_request():
    game = Round(clients=4)
    game.until("unmasking", masked_input=(3,))
    request = game.unmask(0, survivors=[0, 1, 2], dropped=[3])
    (reply,) = game.send(request)
    assert set(reply.self_mask_shares) == {0, 1, 2} and set(reply.mask_key_shares) == {3}
    for again in (request, game.unmask(0, survivors=[0, 1, 2, 3], dropped=[])):
        with pytest.raises(AlreadyFinalized, match="finished this aggregation"):
            game.send(again)
    assert game.engines["client/0"].state is EngineState.DONE


def test_client_never_sends_both_shares_of_one_peer_in_an_honest_round():
    game = Round(clients=6)
    game.until("unmasking", masked_input=(1, 4))
    game.phase("unmasking")
    for reply in game.replies["unmasking"]:
        assert not set(reply.self_mask_shares) & set(reply.mask_key_shares)
        assert set(reply.mask_key_shares) == {1, 4}


# --- fewer than threshold peers -----------------------------------------------------------------------


def test_client_refuses_to_share_keys_with_too_few_neighbours():
    game = Round(clients=5)  # threshold 3
    game.phase("advertise-keys")
    request = game.server.begin_phase("share-keys")[0]
    few = dataclasses.replace(request, keys={1: request.keys[1]})
    with pytest.raises(ProtocolAbort, match="2 of its neighbourhood of 5 advertised keys; the threshold is 3"):
        game.send(few)


def test_client_refuses_to_mask_with_too_few_peers():
    game = Round(clients=5)
    game.until("masked-input")
    request = game.server.begin_phase("masked-input")[0]
    few = dataclasses.replace(request, ciphertexts={1: request.ciphertexts[1]})
    with pytest.raises(ProtocolAbort, match="2 of its neighbourhood of 5 shared their keys"):
        game.send(few)


def test_client_refuses_to_unmask_with_too_few_survivors():
    game = Round(clients=5)
    game.until("unmasking")
    with pytest.raises(ProtocolAbort, match="2 of its neighbourhood of 5 survived"):
        game.send(game.unmask(0, survivors=[0, 1], dropped=[2, 3, 4]))


def test_malicious_mode_client_needs_threshold_valid_signatures():
    game = Round(clients=5, malicious_server=True)
    game.until("unmasking")
    signatures = {int(r.sender.split("/")[1]): r.signature for r in game.replies["consistency-check"]}
    everyone = range(5)
    few = {u: signatures[u] for u in (0, 1, 2)}
    with pytest.raises(ProtocolAbort, match="3 of its neighbourhood of 5 signed"):
        game.send(game.unmask(0, survivors=everyone, dropped=[], signatures=few))
    bad = dict(signatures)
    bad[3] = SigningKey.generate().sign(b"something else")
    with pytest.raises(InvalidMessage, match="signature verification failed"):
        game.send(game.unmask(1, survivors=everyone, dropped=[], signatures=bad))


# --- misaddressed, stale and forged messages ----------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(session=bytes(16)), "another session"),
        (dict(round=4), "round 4"),
        (dict(sender="client/1"), "may not send it"),
        (dict(recipient="client/1"), "addressed to"),
        (dict(phase="masked-input"), "labelled phase 'masked-input'"),
    ],
)
def test_client_rejects_misbound_requests_and_stays_usable(change, match):
    game = Round(clients=4)
    game.phase("advertise-keys")
    request = game.server.begin_phase("share-keys")[0]
    client = game.engines[request.recipient]
    with pytest.raises(InvalidMessage, match=match):
        game.send(dataclasses.replace(request, **change), to=request.recipient)
    assert client.state is EngineState.ACTIVE and client.phase == "advertise-keys"
    (reply,) = game.send(request)  # the genuine request still works
    assert isinstance(reply, EncryptedShares)


def test_tampered_redirected_or_replayed_ciphertexts_fail_authentication():
    game = Round(clients=4)
    game.until("masked-input")
    requests = {q.recipient: q for q in game.server.begin_phase("masked-input")}
    other = Round(clients=4)
    other.until("masked-input")
    stale = {q.recipient: q for q in other.server.begin_phase("masked-input")}

    def to(u):
        return requests[client_id(u)]

    original = to(0).ciphertexts[1]
    cases = [
        (0, 1, original[:-1] + bytes([original[-1] ^ 1])),  # one bit flipped
        (1, 2, to(3).ciphertexts[2]),  # client/2's shares for client/3, handed to client/1
        (2, 3, stale[client_id(2)].ciphertexts[3]),  # replayed from another session
        (3, 0, to(3).ciphertexts[1]),  # the right recipient, but claimed to come from another sender
    ]
    for recipient, sender, ciphertext in cases:
        request = to(recipient)
        with pytest.raises(InvalidMessage, match="ciphertext failed authentication"):
            game.send(dataclasses.replace(request, ciphertexts={**request.ciphertexts, sender: ciphertext}))
        assert game.engines[client_id(recipient)].phase is None  # it stopped and sent nothing


def test_stage_transition_matrix():
    """Only the next phase's request is accepted; a refusal leaves the client as it was; after the last, nothing."""
    game = Round(clients=3, malicious_server=True)
    bodies = {
        "advertise-keys": (AdvertiseRequest, dict(coin_commitments={})),
        "share-keys": (ShareKeysRequest, dict(keys={}, coins={})),
        "masked-input": (MaskedInputRequest, dict(ciphertexts={})),
        "consistency-check": (ConsistencyRequest, dict(survivors=())),
        "unmasking": (UnmaskRequest, dict(survivors=(), dropped=(), signatures={})),
    }
    client = game.engines["client/0"]
    previous = None
    for current in game.protocol.phases:
        assert client.phase == previous and client.state is EngineState.ACTIVE
        for phase, (kind, body) in bodies.items():
            if phase == current:
                continue
            with pytest.raises(UnexpectedMessage):
                game.send(kind(**game.header(phase, 0), **body))
            with pytest.raises(UnexpectedMessage, match="labelled phase"):  # the right kind with the wrong phase
                game.send(bodies[current][0](**game.header(phase, 0), **bodies[current][1]))
            assert client.phase == previous and client.state is EngineState.ACTIVE
        game.phase(current)
        previous = current
    assert client.state is EngineState.DONE and client.phase is None
    for phase, (kind, body) in bodies.items():
        with pytest.raises(AlreadyFinalized):
            game.send(kind(**game.header(phase, 0), **body))


def test_input_is_checked_and_given_once():
    parties = SecAgg().setup(clients=3, vector_length=6, session=os.urandom(16), round=0)
    with pytest.raises(ConfigurationError, match="coordinates"):
        parties.clients[0].provide_input(np.zeros(5, np.uint32))
    game = Round(clients=3)  # inputs given at setup
    with pytest.raises(LocalProtocolError, match="already has its input"):
        game.clients[0].provide_input(game.inputs[0])
    game.until("unmasking")
    with pytest.raises(LocalProtocolError, match="already has its input"):
        game.clients[0].provide_input(game.inputs[0])


def test_client_without_input_refuses_to_mask():
    protocol = SecAgg()
    session = os.urandom(16)
    parties = protocol.setup(clients=2, vector_length=3, session=session, round=0)
    engines = parties.by_id()
    parties.clients[1].provide_input(np.zeros(3, np.uint32))
    for phase in ("advertise-keys", "share-keys"):
        for request in parties.server.begin_phase(phase):
            for reply in engines[request.recipient].handle(request):
                parties.server.handle(reply)
        parties.server.end_phase(phase)
    request = next(q for q in parties.server.begin_phase("masked-input") if q.recipient == "client/0")
    with pytest.raises(LocalProtocolError, match="no input"):
        engines["client/0"].handle(request)
    assert engines["client/0"].state is EngineState.ABORTED


# --- the server's validation ---------------------------------------------------------------------------


def test_server_runs_phases_in_order_only():
    game = Round(clients=3)
    with pytest.raises(LocalProtocolError, match="'share-keys' cannot begin now; the next phase is 'advertise-keys'"):
        game.server.begin_phase("share-keys")
    game.server.begin_phase("advertise-keys")
    with pytest.raises(LocalProtocolError, match="still open"):
        game.server.begin_phase("advertise-keys")
    with pytest.raises(LocalProtocolError, match="not open"):
        game.server.end_phase("share-keys")
    with pytest.raises(LocalProtocolError, match="not completed"):
        game.server.result()
    assert game.server.state is EngineState.ACTIVE and game.server.phase == "advertise-keys"
    honest = Round(clients=3)
    honest.phase("advertise-keys")
    with pytest.raises(LocalProtocolError, match="'advertise-keys' cannot begin now; the next phase is 'share-keys'"):
        honest.server.begin_phase("advertise-keys")
    assert honest.server.state is EngineState.ACTIVE


def test_server_rejects_duplicates_strangers_and_stale_replies():
    game = Round(clients=4)
    game.phase("advertise-keys", silent=(3,))
    requests = game.server.begin_phase("share-keys")
    replies = [r for q in requests for r in game.send(q)]
    game.send(replies[0])
    with pytest.raises(InvalidMessage, match="duplicate"):
        game.send(replies[0])
    stranger = dataclasses.replace(replies[1], sender="client/3")
    with pytest.raises(UnexpectedSender, match="client/3.*not asked"):
        game.server.handle(stranger)
    with pytest.raises(InvalidMessage, match="another session"):
        game.server.handle(dataclasses.replace(replies[1], session=bytes(16)))
    wrong_kind = MaskedInput(**game.header("share-keys", 0), ring_bits=32, vector=np.zeros(6, np.uint32))
    with pytest.raises(UnexpectedMessage, match="not a reply of phase 'share-keys'"):
        game.server.handle(dataclasses.replace(wrong_kind, sender="client/0", recipient=SERVER))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: dataclasses.replace(m, share_public=m.share_public[:31]), "32 bytes"),
        (lambda m: dataclasses.replace(m, mask_public=m.share_public), "same key"),
        (lambda m: dataclasses.replace(m, signature=os.urandom(64)), "only malicious-server mode"),
    ],
)
def test_server_validates_key_advertisements(mutate, match):
    game = Round(clients=3)
    request = game.server.begin_phase("advertise-keys")[0]
    (advertisement,) = game.send(request)
    with pytest.raises(InvalidMessage, match=match):
        game.server.handle(mutate(advertisement))


def test_server_checks_advertisement_signatures_in_malicious_mode():
    game = Round(clients=4, malicious_server=True)
    (advertisement,) = game.send(game.server.begin_phase("advertise-keys")[0])
    with pytest.raises(InvalidMessage, match="signature verification failed"):
        game.server.handle(dataclasses.replace(advertisement, signature=advertisement.signature[::-1]))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: dataclasses.replace(m, ciphertexts={k: v for k, v in m.ciphertexts.items() if k != 1}),
         "one ciphertext to each neighbour"),
        (lambda m: dataclasses.replace(m, ciphertexts={**m.ciphertexts, 1: m.ciphertexts[1] + b"x"}), "103 bytes"),
        (lambda m: dataclasses.replace(m, self_mask_commitment=b"short"), "commitment"),
    ],
)
def test_server_validates_encrypted_shares(mutate, match):
    game = Round(clients=4)
    game.phase("advertise-keys")
    (shares,) = game.send(game.server.begin_phase("share-keys")[0])
    with pytest.raises(InvalidMessage, match=match):
        game.server.handle(mutate(shares))


def test_server_validates_masked_inputs():
    game = Round(clients=4)
    game.until("masked-input")
    (masked,) = game.send(game.server.begin_phase("masked-input")[0])
    with pytest.raises(InvalidMessage, match="5 coordinates of 32 bits; expected 6 of 32"):
        game.server.handle(dataclasses.replace(masked, vector=masked.vector[:5].copy()))


def test_server_validates_unmask_shares():
    game = Round(clients=4)
    game.until("unmasking", masked_input=(3,))
    (reply,) = game.send(game.server.begin_phase("unmasking")[0])
    both = dataclasses.replace(reply, mask_key_shares={**reply.mask_key_shares, 1: reply.self_mask_shares[1]})
    with pytest.raises(InvalidMessage, match="nothing else"):
        game.server.handle(both)
    wrong_point = dict(reply.self_mask_shares)
    wrong_point[1] = (7).to_bytes(2, "big") + wrong_point[1][2:]
    with pytest.raises(InvalidMessage, match="x=1"):
        game.server.handle(dataclasses.replace(reply, self_mask_shares=wrong_point))


def test_a_corrupted_share_raises_instead_of_giving_a_wrong_sum():
    for kind, owner, match in [("self_mask_shares", 1, "self-mask seed does not match its commitment"),
                               ("mask_key_shares", 3, "mask key does not match its public key")]:
        game = Round(clients=4)  # threshold 3: every survivor's share is used
        game.until("unmasking", masked_input=(3,))
        for request in game.server.begin_phase("unmasking"):
            (reply,) = game.send(request)
            if reply.sender == "client/0":
                shares = dict(getattr(reply, kind))
                value = int.from_bytes(shares[owner][4:], "big")
                shares[owner] = shares[owner][:4] + ((value + 1) % shamir.PRIME).to_bytes(33, "big")
                reply = dataclasses.replace(reply, **{kind: shares})
            game.send(reply)
        with pytest.raises(ProtocolAbort, match=match):
            game.server.end_phase("unmasking")


@pytest.mark.parametrize(
    "clients, options, silent, included",
    [
        (6, {}, dict(masked_input=(2,), unmasking=(4,)), (0, 1, 3, 4, 5)),
        (8, dict(malicious_server=True), dict(masked_input=(2,), consistency_check=(5,)), (0, 1, 3, 4, 5, 6, 7)),
    ],
)
def test_hand_driven_round_gives_the_exact_sum(clients, options, silent, included):
    game = Round(clients=clients, **options)
    game.until("unmasking", **silent)
    game.phase("unmasking", silent=silent.get("unmasking", ()))
    result = game.server.result()
    assert result.included == included
    np.testing.assert_array_equal(result.total, ring_sum(game.inputs, included, 32))


def test_server_stays_aborted():
    game = Round(clients=4)  # threshold 3
    game.phase("advertise-keys")
    with pytest.raises(ProtocolAbort, match="phase 'share-keys': 2 of 4 clients answered; the threshold is 3"):
        game.phase("share-keys", silent=(0, 1))
    assert game.server.state is EngineState.ABORTED
    with pytest.raises(AlreadyFinalized, match="stopped"):
        game.server.begin_phase("masked-input")


def test_a_share_outside_the_field_is_dropped_on_arrival_and_the_round_still_completes():
    game = Round(clients=4)  # threshold 3: the three other replies suffice
    game.until("unmasking")
    replies = [r for q in game.server.begin_phase("unmasking") for r in game.send(q)]
    bad = next(r for r in replies if r.sender == "client/0")
    owner = min(bad.self_mask_shares)
    share = bad.self_mask_shares[owner]
    forged = dataclasses.replace(bad, self_mask_shares={**bad.self_mask_shares, owner: share[:4] + b"\xff" * 33})
    with pytest.raises(InvalidMessage, match="share"):
        game.send(forged)
    assert game.server.state is EngineState.ACTIVE
    for reply in replies:
        if reply is not bad:
            game.send(reply)
    game.server.end_phase("unmasking")
    aggregate = game.server.result()
    assert aggregate.included == (0, 1, 2, 3)
    np.testing.assert_array_equal(aggregate.total, ring_sum(game.inputs, range(4), 32))
