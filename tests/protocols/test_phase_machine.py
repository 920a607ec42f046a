"""The phase machine of protocols/base.py: the cases that once slipped through, each now refused."""

import os

import numpy as np
import pytest

from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    LocalProtocolError,
    ProtocolAbort,
    ProtocolViolation,
    UnexpectedMessage,
)
from securefl.protocols import Paillier, Plaintext, SecAgg, SecretSharing
from securefl.protocols.base import EngineState
from securefl.protocols.secagg import UnmaskRequest
from securefl.protocols.secret_sharing import AggregateRequest, AggregateShare, aggregator_id
from securefl.protocols.wire import SERVER, decode_message
from securefl.simulation import secure_sum

SESSION = bytes(range(16))


def _secret_sharing(clients=3):
    parties = SecretSharing().setup(clients=clients, vector_length=4, session=SESSION, round=0)
    for engine in parties.clients:
        engine.provide_input(np.zeros(4, np.uint32))
    return parties


def test_secret_sharing_server_opens_a_phase_once():
    parties = _secret_sharing()
    parties.server.begin_phase("upload")
    with pytest.raises(LocalProtocolError, match="still open"):
        parties.server.begin_phase("upload")
    parties.server.end_phase("upload")
    with pytest.raises(LocalProtocolError, match="next phase is 'report'"):
        parties.server.begin_phase("upload")
    assert parties.server.state is EngineState.ACTIVE and parties.server.phase == "upload"


def test_secret_sharing_server_refuses_an_aggregate_share_while_upload_is_open():
    parties = _secret_sharing()
    parties.server.begin_phase("upload")
    share = AggregateShare(SESSION, 0, "upload", aggregator_id(0), SERVER, ring_bits=32, vector=np.zeros(4, np.uint32))
    with pytest.raises(UnexpectedMessage, match="not a reply of phase 'upload'"):
        parties.server.handle(share)
    labelled = AggregateShare(SESSION, 0, "aggregate", aggregator_id(0), SERVER, ring_bits=32,
                              vector=np.zeros(4, np.uint32))
    with pytest.raises(UnexpectedMessage):
        parties.server.handle(labelled)


def test_plaintext_server_refuses_an_unknown_phase():
    parties = Plaintext().setup(clients=2, vector_length=4, session=SESSION, round=0)
    with pytest.raises(LocalProtocolError, match="'bogus' cannot begin now; the next phase is 'upload'"):
        parties.server.begin_phase("bogus")


def test_helpers_dispatch_on_their_own_state_not_on_the_message_phase():
    parties = _secret_sharing()
    aggregator = parties.helpers[0]
    # An aggregation request that claims to belong to the upload phase: the aggregator is in
    # 'upload' (collecting shares) but accepts no AggregateRequest there, whatever the label says.
    for phase in ("upload", "aggregate"):
        forged = AggregateRequest(SESSION, 0, phase, SERVER, aggregator_id(0), included=(0, 1, 2))
        with pytest.raises(UnexpectedMessage):
            aggregator.handle(forged)
    assert aggregator.state is EngineState.ACTIVE


@pytest.mark.parametrize("protocol", [Plaintext(), SecretSharing(), SecAgg(), SecAgg(neighbors=2),
                                      SecAgg(malicious_server=True), Paillier(key_bits=512)],
                         ids=["plaintext", "secret-sharing", "secagg", "secagg+", "secagg-malicious", "paillier"])
def test_no_protocol_sums_one_client(protocol):
    with pytest.raises(ConfigurationError, match="min_clients=2"):
        secure_sum(protocol, [np.full(5, 0.25)])


def test_min_clients_is_configurable_upward_and_checked():
    with pytest.raises(ConfigurationError, match="min_clients=3"):
        secure_sum(SecAgg(min_clients=3), [np.zeros(4), np.zeros(4)])
    assert secure_sum(SecAgg(min_clients=3), [np.full(4, 0.5)] * 3, seed=0).included == (0, 1, 2)
    with pytest.raises(ConfigurationError, match="min_clients"):
        SecAgg(min_clients=0)
    with pytest.raises(ConfigurationError, match="exceeds max_clients"):
        SecretSharing(min_clients=2000)


def test_secagg_server_aborts_below_min_clients_survivors():
    # Threshold 3 of 5 (an explicit count) would let three survivors through; min_clients=4 does not.
    protocol = SecAgg(threshold=3, min_clients=4)
    with pytest.raises(ProtocolAbort, match="min_clients=4"):
        secure_sum(protocol, [np.zeros(3)] * 5, dropouts={0: "masked-input", 1: "masked-input"}, seed=0)


def test_secagg_client_refuses_to_unmask_a_small_survivor_set():
    protocol = SecAgg(threshold=2, min_clients=3)
    session = os.urandom(16)
    parties = protocol.setup(clients=3, vector_length=3, session=session, round=0)
    engines = parties.by_id()
    for engine in parties.clients:
        engine.provide_input(np.zeros(3, np.uint32))
    for phase in protocol.phases[:-1]:
        for request in parties.server.begin_phase(phase):
            for reply in engines[request.recipient].handle(decode_message(request.to_bytes())):
                parties.server.handle(decode_message(reply.to_bytes()))
        parties.server.end_phase(phase)
    # A server that claims only clients 0 and 2 survived (client 1 "dropped"): two survivors, under min_clients.
    forged = UnmaskRequest(session, 0, "unmasking", SERVER, "client/0", survivors=(0, 2), dropped=(1,), signatures={})
    with pytest.raises(ProtocolViolation, match="min_clients=3"):
        engines["client/0"].handle(forged)
    assert engines["client/0"].state is EngineState.ABORTED
    with pytest.raises(AlreadyFinalized):
        engines["client/0"].handle(forged)
