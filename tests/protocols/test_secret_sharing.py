import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.encoding import Encoding
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    ProtocolAbort,
    ProtocolViolation,
    UnexpectedMessage,
    UnexpectedSender,
)
from securefl.protocols import SecretSharing
from securefl.protocols.base import EngineState
from securefl.protocols.secret_sharing import (
    AggregateRequest,
    ReportRequest,
    SeedShare,
    UploadRequest,
    VectorShare,
    aggregator_id,
)
from securefl.protocols.wire import SERVER, decode_message
from securefl.simulation import run_protocol, secure_sum, server_saw_individual_updates
from tests.protocols.helpers import random_inputs, ring_sum

PHASES = (None,) + SecretSharing.phases


@pytest.mark.parametrize("clients", range(1, 7))
def test_exact_sum_under_every_dropout_pattern(clients):
    protocol = SecretSharing(min_clients=1) if clients == 1 else SecretSharing()
    bits = protocol.encoding.ring_bits
    inputs = random_inputs(clients, 17, bits, seed=clients)
    # Clients act only in 'upload'; a drop at a later phase is the same as none,
    # so every pattern is a subset dropping at 'upload' plus the later phases.
    choices = PHASES if clients <= 4 else (None, "upload", "aggregate")
    patterns = itertools.product(choices, repeat=clients)
    for pattern in patterns:
        dropouts = {i: phase for i, phase in enumerate(pattern) if phase is not None}
        delivered = [i for i in range(clients) if dropouts.get(i) != "upload"]
        if len(delivered) < protocol.min_clients:
            with pytest.raises(ProtocolAbort, match="report"):
                run_protocol(protocol, inputs, dropouts=dropouts)
            continue
        aggregate, _, _ = run_protocol(protocol, inputs, dropouts=dropouts)
        assert aggregate.included == tuple(delivered)
        np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, delivered, bits))


@settings(max_examples=25, deadline=None)
@given(
    clients=st.integers(2, 30),
    aggregators=st.integers(2, 4),
    ring_bits=st.sampled_from([20, 32, 64]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_exact_sum_random_configurations(clients, aggregators, ring_bits, seed, data):
    encoding = Encoding(ring_bits=ring_bits, value_bits=8, max_clients=64, max_weight=1)
    protocol = SecretSharing(aggregators=aggregators, min_clients=1, encoding=encoding)
    inputs = random_inputs(clients, 33, ring_bits, seed)
    dropped = data.draw(st.sets(st.integers(0, clients - 1), max_size=clients - 1))
    aggregate, _, _ = run_protocol(protocol, inputs, dropouts={i: "upload" for i in dropped})
    survivors = [i for i in range(clients) if i not in dropped]
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, survivors, ring_bits))


def test_client_that_missed_one_aggregator_is_excluded_everywhere():
    protocol = SecretSharing(aggregators=3)
    bits = protocol.encoding.ring_bits
    inputs = random_inputs(5, 12, bits, seed=7)

    def lose(message):  # client 2's share to aggregator 1 is lost; client 4's to aggregator 0
        return (message.sender, message.recipient) in {("client/2", "aggregator/1"), ("client/4", "aggregator/0")}

    aggregate, _, _ = run_protocol(protocol, inputs, lose=lose)
    assert aggregate.included == (0, 1, 3)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, [0, 1, 3], bits))


def test_float_sum_and_weights_travel_inside():
    rng = np.random.default_rng(3)
    updates = [rng.normal(scale=0.2, size=500) for _ in range(6)]
    weights = [3, 1, 4, 1, 5, 9]
    result = secure_sum(SecretSharing(), updates, weights=weights, seed=0)
    expected = sum(w * u for w, u in zip(weights, updates))
    assert result.weight_total == sum(weights)
    assert np.max(np.abs(result.total - expected)) <= Encoding().step * 6
    assert not server_saw_individual_updates(result, updates)


def test_server_receives_only_aggregated_shares():
    rng = np.random.default_rng(4)
    updates = [np.clip(rng.normal(scale=0.3, size=300), -1, 1) for _ in range(4)]  # within the clip
    result = secure_sum(SecretSharing(), updates, seed=0)
    kinds = {decode_message(entry.payload).KIND for entry in result.transcript}
    assert kinds == {"secret-sharing/received", "secret-sharing/aggregate-share"}
    assert {entry.sender for entry in result.transcript} == {"aggregator/0", "aggregator/1"}


def test_default_refuses_a_sum_of_one_client():
    inputs = random_inputs(3, 8, 32, seed=2)
    with pytest.raises(ProtocolAbort, match="min_clients=2"):
        run_protocol(SecretSharing(), inputs, dropouts={0: "upload", 1: "upload"})
    aggregate, _, _ = run_protocol(SecretSharing(min_clients=1), inputs, dropouts={0: "upload", 1: "upload"})
    np.testing.assert_array_equal(aggregate.total, inputs[2])


def test_min_clients_aborts_when_too_few_reach_the_aggregators():
    inputs = random_inputs(4, 8, 32, seed=1)
    with pytest.raises(ProtocolAbort, match="min_clients=3"):
        run_protocol(SecretSharing(min_clients=3), inputs, dropouts={0: "upload", 1: "upload"})


def test_upload_is_about_one_vector():
    length = 10_000
    rng = np.random.default_rng(5)
    result = secure_sum(SecretSharing(), [rng.normal(size=length) * 0.1 for _ in range(3)], seed=0)
    assert result.metrics["bytes_up_per_client"] / (4 * length) < 1.01


# --- the aggregator's refusals, driven by hand (sans-I/O) ---------------------------------


def _setup(clients=3, **options):
    protocol = SecretSharing(**options)
    session = os.urandom(16)
    parties = protocol.setup(clients=clients, vector_length=4, session=session, round=5)
    inputs = random_inputs(clients, 4, protocol.encoding.ring_bits, seed=11)
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    engines = parties.by_id()
    for request in parties.server.begin_phase("upload"):
        for share in engines[request.recipient].handle(request):
            engines[share.recipient].handle(decode_message(share.to_bytes()))
    return protocol, session, parties, engines


def _reported(clients=3, aggregator=0, **options):
    """An aggregator that holds every client's share and has answered the report request."""
    _, session, _, engines = _setup(clients=clients, **options)
    engine = engines[aggregator_id(aggregator)]
    (report,) = engine.handle(ReportRequest(session, 5, "report", SERVER, aggregator_id(aggregator)))
    assert report.clients == tuple(range(clients))
    return session, engine


def _sum_request(session, aggregator, included):
    return AggregateRequest(session, 5, "aggregate", SERVER, aggregator_id(aggregator), included=included)


def test_aggregator_refuses_small_sums_and_stops():
    session, aggregator = _reported(clients=3, min_clients=2)
    with pytest.raises(ProtocolViolation, match="min_clients=2"):
        aggregator.handle(_sum_request(session, 0, (1,)))
    assert aggregator.state is EngineState.ABORTED
    with pytest.raises(AlreadyFinalized):  # no second try at a different subset
        aggregator.handle(_sum_request(session, 0, (0, 1)))


def test_aggregator_answers_one_request():
    session, aggregator = _reported(clients=3, min_clients=2)
    assert len(aggregator.handle(_sum_request(session, 0, (0, 1)))) == 1
    assert aggregator.state is EngineState.DONE
    with pytest.raises(AlreadyFinalized):
        aggregator.handle(_sum_request(session, 0, (0, 1, 2)))


@pytest.mark.parametrize("included, match", [((0, 7), "no share"), ((0, 0), "twice")])
def test_aggregator_refuses_unknown_or_repeated_clients(included, match):
    session, aggregator = _reported(clients=3, aggregator=1)
    with pytest.raises(ProtocolViolation, match=match):
        aggregator.handle(_sum_request(session, 1, included))


def test_aggregator_needs_the_report_before_the_sum():
    _, session, _, engines = _setup(clients=3)
    with pytest.raises(UnexpectedMessage, match="expects phase 'report' first"):
        engines[aggregator_id(0)].handle(_sum_request(session, 0, (0, 1, 2)))
    assert engines[aggregator_id(0)].state is EngineState.ACTIVE


@pytest.mark.parametrize(
    "mutate, match",
    [
        (dict(session=bytes(16)), "another session"),
        (dict(round=6), "round 6"),
        (dict(sender="client/9"), "may not send it"),
        (dict(sender="server"), "may not send it"),
        (dict(recipient="aggregator/0"), "addressed to"),
        (dict(phase="report"), "labelled phase 'report'"),
    ],
)
def test_aggregator_rejects_misbound_shares(mutate, match):
    _, session, _, engines = _setup(clients=3)
    header = dict(session=session, round=5, phase="upload", sender="client/0", recipient=aggregator_id(1))
    header.update(mutate)
    with pytest.raises(InvalidMessage, match=match):
        engines[aggregator_id(1)].handle(SeedShare(**header, seed=os.urandom(32)))


def test_aggregator_rejects_duplicate_and_malformed_shares():
    protocol = SecretSharing()
    session = os.urandom(16)
    parties = protocol.setup(clients=2, vector_length=4, session=session, round=0)
    seed_holder = parties.helpers[1]
    share = SeedShare(session, 0, "upload", "client/0", aggregator_id(1), seed=os.urandom(32))
    seed_holder.handle(share)
    with pytest.raises(InvalidMessage, match="duplicate"):
        seed_holder.handle(share)
    with pytest.raises(InvalidMessage, match="31 bytes"):
        seed_holder.handle(SeedShare(session, 0, "upload", "client/1", aggregator_id(1), seed=os.urandom(31)))
    vector_holder = parties.helpers[0]
    short = VectorShare(session, 0, "upload", "client/1", aggregator_id(0), ring_bits=32, vector=np.zeros(3, np.uint32))
    with pytest.raises(InvalidMessage, match="wrong ring or length"):
        vector_holder.handle(short)
    with pytest.raises(InvalidMessage):
        vector_holder.handle(ReportRequest(session, 0, "upload", SERVER, aggregator_id(0)))


def test_client_shares_once_and_checks_the_request():
    protocol = SecretSharing()
    session = os.urandom(16)
    parties = protocol.setup(clients=2, vector_length=4, session=session, round=0)
    client = parties.clients[0]
    client.provide_input(np.zeros(4, np.uint32))
    request = UploadRequest(session, 0, "upload", SERVER, "client/0")
    with pytest.raises(UnexpectedSender):
        client.handle(UploadRequest(session, 0, "upload", "aggregator/0", "client/0"))
    assert len(client.handle(request)) == 2
    with pytest.raises(AlreadyFinalized):
        client.handle(request)
    with pytest.raises(ConfigurationError):
        parties.clients[1].provide_input(np.zeros(5, np.uint32))


@pytest.mark.parametrize("aggregators", [1, 0, True, 2.0])
def test_configuration_refused(aggregators):
    with pytest.raises(ConfigurationError):
        SecretSharing(aggregators=aggregators)
