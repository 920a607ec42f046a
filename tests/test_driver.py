"""The driver core: one Round over any Transport, and what it guarantees.

The Round is run over the in-process transport and over transport doubles
that record, fail, tamper or seal, so that the guarantees are checked on
something other than the simulator: the transcript is exactly the server
engine's input, every byte is counted once, dropouts and losses are applied
as the simulator always did, relayed messages go back through the Round,
and opaque envelopes cross it unopened.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from securefl import ring
from securefl.driver import (
    Delivery,
    InProcessTransport,
    Parcel,
    PhaseEnd,
    Round,
    Transport,
    payload_size,
)
from securefl.encoding import Encoding
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolAbort,
)
from securefl.protocols import Paillier, Plaintext, SecretSharing
from securefl.protocols.base import Engine, Parties, Protocol
from securefl.protocols.secagg import SecAgg
from securefl.protocols.wire import SERVER, Message, client_id, decode_message
from securefl.simulation import run_protocol

CLIENTS = 5
LENGTH = 24

PROTOCOLS = {
    "plaintext": Plaintext(),
    "secret-sharing": SecretSharing(aggregators=3),
    "secagg": SecAgg(),
    "secagg+": SecAgg(neighbors=2),
    "secagg-malicious-server": SecAgg(malicious_server=True),
    "paillier": Paillier(key_bits=512, encoding=Encoding(max_clients=8)),
}


def inputs_for(protocol: Protocol, clients: int = CLIENTS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bits = protocol.encoding.ring_bits
    return [ring.from_signed(rng.integers(-500, 501, size=LENGTH), bits) for _ in range(clients)]


def ring_sum(protocol: Protocol, inputs: Sequence[np.ndarray], included: Sequence[int]) -> np.ndarray:
    bits = protocol.encoding.ring_bits
    total = np.zeros(LENGTH, dtype=ring.ring_dtype(bits))
    for index in included:
        ring.add(total, inputs[index], bits)
    return total


def parties_for(protocol: Protocol, inputs: Sequence[np.ndarray], *, round: int = 0) -> Parties:
    parties = protocol.setup(clients=len(inputs), vector_length=LENGTH, session=os.urandom(16), round=round)
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    return parties


def in_process(protocol: Protocol, parties: Parties, dropouts: Mapping[str, str] | None = None) -> InProcessTransport:
    return InProcessTransport([*parties.clients, *parties.helpers], phases=protocol.phases, dropouts=dropouts)


class Recorder:
    """Wraps every engine's ``handle`` (and the server's ``begin_phase``) to record what went in and out."""

    def __init__(self, parties: Parties) -> None:
        self.handled: dict[str, list[bytes]] = {}
        self.made: dict[str, list[bytes]] = {}
        self.server_inputs: list[tuple[str, str, bytes]] = []
        for engine in [parties.server, *parties.clients, *parties.helpers]:
            self._tap(engine)
        begin = parties.server.begin_phase

        def recording_begin(phase: str) -> list[Message]:
            requests = begin(phase)
            self.made.setdefault(SERVER, []).extend(message.to_bytes() for message in requests)
            return requests

        parties.server.begin_phase = recording_begin  # type: ignore[method-assign]

    def _tap(self, engine: Engine) -> None:
        handle = engine.handle
        party = engine.party

        def recording(message: Message) -> list[Message]:
            self.handled.setdefault(party, []).append(message.to_bytes())
            if party == SERVER:
                self.server_inputs.append((message.sender, message.phase, message.to_bytes()))
            replies = handle(message)
            self.made.setdefault(party, []).extend(reply.to_bytes() for reply in replies)
            return replies

        engine.handle = recording  # type: ignore[method-assign]


class Spy(Transport):
    """A transport that forwards to another and records every exchange (phase, outbox, delivery)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, dict[str, list[Parcel]], Delivery]] = []

    @property
    def parties(self):
        return self.inner.parties

    def exchange(self, outbox, *, phase):
        delivery = self.inner.exchange(outbox, phase=phase)
        self.exchanges.append((phase, {party: list(parcels) for party, parcels in outbox.items()}, delivery))
        return delivery


# -- the transcript and the ledger -----------------------------------------------------------------


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_transcript_is_exactly_what_the_server_engine_received(name):
    protocol = PROTOCOLS[name]
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    recorder = Recorder(parties)

    outcome = Round(parties.server, phases=protocol.phases, transport=in_process(protocol, parties)).run()

    assert [(entry.sender, entry.phase, entry.payload) for entry in outcome.transcript] == recorder.server_inputs
    assert recorder.server_inputs
    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, range(CLIENTS)))
    assert outcome.dropped == {} and outcome.errors == {}


@pytest.mark.parametrize("name", PROTOCOLS)
def test_bytes_counted_are_the_canonical_sizes_of_what_each_party_made_and_handled(name):
    protocol = PROTOCOLS[name]
    parties = parties_for(protocol, inputs_for(protocol))
    recorder = Recorder(parties)

    ledger = Round(parties.server, phases=protocol.phases, transport=in_process(protocol, parties)).run().ledger

    parties_seen = set(recorder.made) | set(recorder.handled)
    assert {party for party, count in ledger.bytes_sent.items() if count} == set(recorder.made)
    for party in parties_seen:
        assert ledger.bytes_sent.get(party, 0) == sum(map(len, recorder.made.get(party, [])))
        assert ledger.bytes_received.get(party, 0) == sum(map(len, recorder.handled.get(party, [])))
    assert sum(ledger.bytes_sent.values()) == sum(ledger.bytes_received.values())  # nothing lost, nobody dropped


def test_a_parcel_counts_the_bytes_of_its_frames_and_in_process_vectors_travel_without_a_copy():
    protocol = Plaintext()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    spy = Spy(in_process(protocol, parties))

    Round(parties.server, phases=protocol.phases, transport=spy).run()

    _, _, delivery = spy.exchanges[0]
    upload = delivery.replies["client/0"][0]
    assert upload.size == len(b"".join(upload.payload)) == len(upload.message.to_bytes())
    assert upload.size == payload_size(upload.payload) == payload_size(b"".join(upload.payload))
    vector_frame = upload.payload[1]
    assert isinstance(vector_frame, memoryview)
    assert np.shares_memory(np.frombuffer(vector_frame, dtype=inputs[0].dtype), upload.message.vector)


def test_run_protocol_is_a_round_over_the_in_process_transport():
    protocol = SecretSharing(aggregators=2)
    inputs = inputs_for(protocol)

    aggregate, transcript, ledger = run_protocol(protocol, inputs, dropouts={1: "upload"})

    assert aggregate.included == (0, 2, 3, 4)
    assert np.array_equal(aggregate.total, ring_sum(protocol, inputs, aggregate.included))
    assert {entry.sender for entry in transcript} == {"aggregator/0", "aggregator/1"}
    assert ledger.bytes_received.get("client/1", 0) == 0 and ledger.bytes_sent.get("client/1", 0) == 0
    assert ledger.bytes_received[SERVER] == sum(len(entry.payload) for entry in transcript)
    assert set(ledger.seconds) == {*protocol.phases, "result"}


# -- dropouts and losses ---------------------------------------------------------------------------


def test_a_dropout_is_silent_from_its_phase_and_recorded_with_the_phase():
    protocol = SecAgg()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    recorder = Recorder(parties)
    transport = in_process(protocol, parties, dropouts={"client/2": "masked-input"})
    ends: list[PhaseEnd] = []

    run = Round(parties.server, phases=protocol.phases, transport=transport, on_phase_end=ends.append)
    outcome = run.run()

    assert outcome.aggregate.included == (0, 1, 3, 4)
    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, (0, 1, 3, 4)))
    assert outcome.dropped == {"client/2": "masked-input"} and outcome.errors == {"client/2": "dropped out"}
    handled_phases = [decode_message(data).phase for data in recorder.handled["client/2"]]
    assert handled_phases == ["advertise-keys", "share-keys"]
    # What the server sent it in the phase it dropped out is counted as sent, never as received.
    assert outcome.ledger.bytes_received["client/2"] == sum(map(len, recorder.handled["client/2"]))
    assert [end.phase for end in ends] == list(protocol.phases)
    assert [dict(end.dropped) for end in ends] == [{}, {}, {"client/2": "masked-input"}, {"client/2": "masked-input"}]


def test_a_lost_message_is_counted_as_sent_and_never_delivered():
    protocol = SecretSharing(aggregators=3)
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    recorder = Recorder(parties)
    lost: list[Message] = []

    def lose(message: Message) -> bool:
        if (message.sender, message.recipient) in {("client/2", "aggregator/1"), ("client/4", "aggregator/0")}:
            lost.append(message)
            return True
        return False

    outcome = Round(parties.server, phases=protocol.phases, transport=in_process(protocol, parties), lose=lose).run()

    assert outcome.aggregate.included == (0, 1, 3)
    assert len(lost) == 2
    ledger = outcome.ledger
    assert ledger.bytes_sent["client/2"] == sum(map(len, recorder.made["client/2"]))
    lost_bytes = sum(len(message.to_bytes()) for message in lost)
    assert sum(ledger.bytes_sent.values()) - sum(ledger.bytes_received.values()) == lost_bytes
    assert all(decode_message(data).sender != "client/2" for data in recorder.handled["aggregator/1"])


def test_parties_absent_before_the_first_phase_are_sent_nothing():
    protocol = SecAgg()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    spy = Spy(in_process(protocol, parties))

    outcome = Round(parties.server, phases=protocol.phases, transport=spy, absent={"client/3": "no node"}).run()

    assert outcome.aggregate.included == (0, 1, 2, 4)
    assert outcome.dropped == {"client/3": "advertise-keys"} and outcome.errors == {"client/3": "no node"}
    assert all("client/3" not in outbox for _, outbox, _ in spy.exchanges)
    assert outcome.ledger.bytes_received.get("client/3", 0) == 0


# -- relays and sealed envelopes ---------------------------------------------------------------------


def test_a_client_share_for_a_helper_goes_back_through_the_round_to_a_further_exchange():
    protocol = SecretSharing(aggregators=2)
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    spy = Spy(in_process(protocol, parties))

    outcome = Round(parties.server, phases=protocol.phases, transport=spy).run()

    upload = [(outbox, delivery) for phase, outbox, delivery in spy.exchanges if phase == "upload"]
    assert len(upload) == 2  # the server's requests, then the clients' shares relayed by the Round
    (requests, answers), (relayed, _) = upload
    assert set(requests) == {client_id(i) for i in range(CLIENTS)}
    assert set(relayed) == {"aggregator/0", "aggregator/1"}
    shares = [parcel for parcels in answers.replies.values() for parcel in parcels]
    assert {parcel.recipient for parcel in shares} == {"aggregator/0", "aggregator/1"}
    for aggregator in ("aggregator/0", "aggregator/1"):
        expected = [parcel for parcel in shares if parcel.recipient == aggregator]
        assert relayed[aggregator] == expected  # the very parcels, in the order the clients made them
    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, range(CLIENTS)))


class Sealing(Transport):
    """Clients seal what they send to a helper (an opaque envelope); the helper's side opens it.

    The envelope is ``b"sealed:" + canonical bytes``, which ``decode_message`` refuses, so the
    Round can only route it by the names on the parcel.
    """

    PREFIX = b"sealed:"

    def __init__(self, inner: InProcessTransport, helpers: set[str]) -> None:
        self.inner = inner
        self.helpers = helpers
        self.opened: list[bytes] = []

    @property
    def parties(self):
        return self.inner.parties

    def exchange(self, outbox, *, phase):
        opened: dict[str, list[Parcel]] = {}
        for party, parcels in outbox.items():
            opened[party] = []
            for parcel in parcels:
                if parcel.sealed:
                    data = bytes(parcel.payload)
                    if not data.startswith(self.PREFIX):
                        raise AssertionError("an envelope was altered on the way")
                    self.opened.append(data)
                    data = data[len(self.PREFIX):]
                    parcel = Parcel(parcel.sender, parcel.recipient, data)
                opened[party].append(parcel)
        delivery = self.inner.exchange(opened, phase=phase)
        for party, parcels in delivery.replies.items():
            delivery.replies[party] = [
                Parcel(p.sender, p.recipient, self.PREFIX + b"".join(p.payload), sealed=True)
                if p.recipient in self.helpers else p
                for p in parcels
            ]
        return delivery


def test_sealed_envelopes_are_routed_unopened_to_their_helper():
    protocol = SecretSharing(aggregators=2)
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    recorder = Recorder(parties)
    transport = Sealing(in_process(protocol, parties), helpers={"aggregator/0", "aggregator/1"})

    outcome = Round(parties.server, phases=protocol.phases, transport=transport).run()

    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, range(CLIENTS)))
    assert len(transport.opened) == 2 * CLIENTS
    relayed = sorted(recorder.made[client_id(i)][j] for i in range(CLIENTS) for j in range(2))
    assert sorted(envelope[len(Sealing.PREFIX):] for envelope in transport.opened) == relayed
    # the envelopes are counted as the bytes on the wire, once sent and once received
    envelope_bytes = sum(map(len, transport.opened))
    assert sum(outcome.ledger.bytes_sent[client_id(i)] for i in range(CLIENTS)) == envelope_bytes


class Rewriting(Transport):
    """Forwards to an in-process transport; ``rewrite(party, parcel)`` may replace a reply."""

    def __init__(self, inner: Transport, rewrite) -> None:
        self.inner = inner
        self.rewrite = rewrite

    @property
    def parties(self):
        return self.inner.parties

    def exchange(self, outbox, *, phase):
        delivery = self.inner.exchange(outbox, phase=phase)
        for party, parcels in delivery.replies.items():
            delivery.replies[party] = [self.rewrite(party, parcel) for parcel in parcels]
        return delivery


def test_a_sealed_envelope_for_the_server_drops_its_sender():
    protocol = Plaintext()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)

    def seal(party, parcel):
        if party == "client/1":
            return Parcel(parcel.sender, parcel.recipient, b"opaque", sealed=True)
        return parcel

    transport = Rewriting(in_process(protocol, parties), seal)
    outcome = Round(parties.server, phases=protocol.phases, transport=transport).run()

    assert outcome.aggregate.included == (0, 2, 3, 4)
    assert "sealed envelope" in outcome.errors["client/1"]
    assert all(entry.sender != "client/1" for entry in outcome.transcript)


# -- refusals and failures -------------------------------------------------------------------------


def _as_client_0(party, parcel):
    if party != "client/3":
        return parcel
    forged = dataclasses.replace(parcel.message, sender="client/0")
    return Parcel.of(forged)


def test_a_party_sending_as_another_is_dropped_or_refused():
    protocol = Plaintext()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    transport = Rewriting(in_process(protocol, parties), _as_client_0)

    outcome = Round(parties.server, phases=protocol.phases, transport=transport).run()

    assert outcome.aggregate.included == (0, 1, 2, 4)
    assert outcome.errors == {"client/3": "InvalidMessage: client/3 sent a message as 'client/0'"}
    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, (0, 1, 2, 4)))

    parties = parties_for(protocol, inputs)
    strict = Round(parties.server, phases=protocol.phases, drop_refused=False,
                   transport=Rewriting(in_process(protocol, parties), _as_client_0))
    with pytest.raises(InvalidMessage, match="sent a message as"):
        strict.run()


def test_a_message_the_server_engine_refuses_drops_its_sender():
    protocol = Plaintext()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)

    def stale(party, parcel):  # a well-formed message of another round
        return Parcel.of(dataclasses.replace(parcel.message, round=7)) if party == "client/4" else parcel

    transport = Rewriting(in_process(protocol, parties), stale)
    outcome = Round(parties.server, phases=protocol.phases, transport=transport).run()

    assert outcome.aggregate.included == (0, 1, 2, 3)
    assert outcome.errors["client/4"].startswith("InvalidMessage: message is for round 7")
    # the server engine received it (and refused it): it is in the transcript
    assert [entry.sender for entry in outcome.transcript].count("client/4") == 1


class Failing(Transport):
    """Forwards to another transport, except that ``failing`` parties fail from ``phase`` on."""

    def __init__(self, inner: Transport, failing: set[str], phase: str) -> None:
        self.inner = inner
        self.failing = failing
        self.phase = phase
        self.started = False

    @property
    def parties(self):
        return self.inner.parties

    def exchange(self, outbox, *, phase):
        self.started = self.started or phase == self.phase
        failed = {party for party in outbox if self.started and party in self.failing}
        delivery = self.inner.exchange({p: v for p, v in outbox.items() if p not in failed}, phase=phase)
        delivery.failures.update({party: "no reply within 1 s" for party in failed})
        return delivery


def test_a_transport_failure_drops_the_party_and_the_server_engine_goes_on_without_it():
    protocol = SecAgg()
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)

    outcome = Round(parties.server, phases=protocol.phases,
                    transport=Failing(in_process(protocol, parties), {"client/1"}, "share-keys")).run()

    assert outcome.aggregate.included == (0, 2, 3, 4)
    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, (0, 2, 3, 4)))
    assert outcome.dropped == {"client/1": "share-keys"} and outcome.errors == {"client/1": "no reply within 1 s"}


def test_too_many_transport_failures_abort_as_the_server_engine_decides():
    protocol = SecAgg()
    parties = parties_for(protocol, inputs_for(protocol))
    run = Round(parties.server, phases=protocol.phases,
                transport=Failing(in_process(protocol, parties), {"client/0", "client/1", "client/2"}, "share-keys"))

    with pytest.raises(ProtocolAbort, match="share-keys"):
        run.run()

    assert run.dropped == {client_id(i): "share-keys" for i in range(3)}


def test_a_failed_helper_aborts_paillier():
    protocol = PROTOCOLS["paillier"]
    parties = parties_for(protocol, inputs_for(protocol))
    run = Round(parties.server, phases=protocol.phases,
                transport=Failing(in_process(protocol, parties), {"decryptor"}, "decrypt"))

    with pytest.raises(ProtocolAbort, match="decryptor"):
        run.run()
    assert run.errors == {"decryptor": "no reply within 1 s"}


class Careless(Transport):
    """A broken transport: it answers for a party it was never sent, or forgets one."""

    def __init__(self, inner: Transport, mode: str) -> None:
        self.inner = inner
        self.mode = mode

    @property
    def parties(self):
        return self.inner.parties

    def exchange(self, outbox, *, phase):
        delivery = self.inner.exchange(outbox, phase=phase)
        first = next(iter(delivery.replies))
        if self.mode == "stray":
            delivery.replies["client/99"] = []
        elif self.mode == "both":
            delivery.failures[first] = "and yet it answered"
        else:
            del delivery.replies[first]
        return delivery


@pytest.mark.parametrize("mode", ["stray", "both"])
def test_a_transport_answering_for_parties_it_was_not_sent_is_a_local_error(mode):
    protocol = Plaintext()
    parties = parties_for(protocol, inputs_for(protocol))
    with pytest.raises(LocalProtocolError):
        Round(parties.server, phases=protocol.phases, transport=Careless(in_process(protocol, parties), mode)).run()


def test_a_party_the_transport_forgot_is_dropped():
    protocol = Plaintext()
    parties = parties_for(protocol, inputs_for(protocol))
    outcome = Round(parties.server, phases=protocol.phases,
                    transport=Careless(in_process(protocol, parties), "forget")).run()
    assert outcome.aggregate.included == (1, 2, 3, 4)
    assert outcome.errors == {"client/0": "the transport brought back nothing for it"}


# -- hosting, configuration, single use -------------------------------------------------------------


def test_helpers_hosted_with_the_server_sum_exactly_and_only_clients_cross_the_transport():
    protocol = SecretSharing(aggregators=2)
    inputs = inputs_for(protocol)
    parties = parties_for(protocol, inputs)
    spy = Spy(InProcessTransport(parties.clients, phases=protocol.phases))

    outcome = Round(parties.server, phases=protocol.phases, transport=spy, hosted=parties.helpers).run()

    assert np.array_equal(outcome.aggregate.total, ring_sum(protocol, inputs, range(CLIENTS)))
    assert {party for _, outbox, _ in spy.exchanges for party in outbox} == {client_id(i) for i in range(CLIENTS)}
    assert "aggregator/0" in outcome.ledger.seconds["aggregate"]


def test_a_round_runs_once():
    protocol = Plaintext()
    parties = parties_for(protocol, inputs_for(protocol))
    run = Round(parties.server, phases=protocol.phases, transport=in_process(protocol, parties))
    run.run()
    with pytest.raises(AlreadyFinalized):
        run.run()


def test_configuration_errors():
    protocol = SecretSharing(aggregators=2)
    parties = parties_for(protocol, inputs_for(protocol))
    transport = in_process(protocol, parties)
    with pytest.raises(ConfigurationError, match="both hosted here"):
        Round(parties.server, phases=protocol.phases, transport=transport, hosted=parties.helpers)
    with pytest.raises(ConfigurationError, match="dropout phase"):
        in_process(protocol, parties, dropouts={"client/0": "no-such-phase"})
    with pytest.raises(ConfigurationError, match="dropout party"):
        in_process(protocol, parties, dropouts={"client/9": "upload"})
    # a server message to a party nobody reaches
    only_clients = InProcessTransport(parties.clients, phases=protocol.phases)
    with pytest.raises(ConfigurationError, match="unknown party 'aggregator/0'"):
        Round(parties.server, phases=protocol.phases, transport=only_clients).run()


def test_the_driver_core_is_the_only_loop_that_opens_phases():
    package = Path(__file__).resolve().parent.parent / "securefl"
    callers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "protocols" not in path.relative_to(package).parts and re.search(r"\.begin_phase\b", path.read_text())
    )
    assert callers == ["driver.py"]
