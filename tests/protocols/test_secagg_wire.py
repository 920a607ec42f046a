"""SecAgg messages on the wire: structured advertised keys, sizes refused before any engine sees them."""

import dataclasses
import os

import numpy as np
import pytest

from securefl.errors import InvalidMessage
from securefl.protocols import SecAgg
from securefl.protocols.secagg.messages import (
    AdvertisedKeys,
    EncryptedShares,
    KeyAdvertisement,
    ShareKeysRequest,
)
from securefl.protocols.wire import decode_message
from tests.protocols.helpers import random_inputs, ring_sum


def _round(clients=4, **options):
    protocol = SecAgg(**options)
    parties = protocol.setup(clients=clients, vector_length=5, session=os.urandom(16), round=1)
    inputs = random_inputs(clients, 5, protocol.encoding.ring_bits, seed=1)
    for engine, vector in zip(parties.clients, inputs, strict=True):
        engine.provide_input(vector)
    engines = parties.by_id()

    def send(message):
        return engines[message.recipient].handle(decode_message(message.to_bytes()))

    send.expected = ring_sum(inputs, range(clients), protocol.encoding.ring_bits)
    return parties.server, send


def _advertise(server, send):
    for request in server.begin_phase("advertise-keys"):
        for reply in send(request):
            send(reply)
    server.end_phase("advertise-keys")
    return server.begin_phase("share-keys")


@pytest.mark.parametrize("malicious_server", [False, True])
def test_the_server_forwards_each_advertisement_as_one_record(malicious_server):
    server, send = _round(malicious_server=malicious_server)
    request = _advertise(server, send)[0]
    assert isinstance(request, ShareKeysRequest)
    assert all(type(entry) is AdvertisedKeys for entry in request.keys.values())
    assert {len(entry.signature) for entry in request.keys.values()} == ({64} if malicious_server else {0})
    assert decode_message(request.to_bytes()) == dataclasses.replace(request)


def test_a_semi_honest_client_refuses_a_signed_entry():
    server, send = _round()
    request = _advertise(server, send)[0]
    signed = {v: dataclasses.replace(entry, signature=os.urandom(64)) for v, entry in request.keys.items()}
    with pytest.raises(InvalidMessage, match="only malicious-server mode"):
        send(dataclasses.replace(request, keys=signed))


def test_a_malicious_mode_client_refuses_an_unsigned_entry():
    server, send = _round(malicious_server=True)
    request = _advertise(server, send)[0]
    unsigned = {v: dataclasses.replace(entry, signature=b"") for v, entry in request.keys.items()}
    with pytest.raises(InvalidMessage, match="signature"):
        send(dataclasses.replace(request, keys=unsigned))


def test_the_client_still_refuses_a_repeated_key():
    server, send = _round()
    request = _advertise(server, send)[0]
    entries = list(request.keys.items())
    (first, entry), (second, _) = entries[0], entries[1]
    repeated = {**request.keys, second: entry}
    assert first != second
    with pytest.raises(InvalidMessage, match="repeats a public key"):
        send(dataclasses.replace(request, keys=repeated))


@pytest.mark.parametrize("size", [31, 33])
def test_advertised_keys_of_another_size_cannot_be_built(size):
    with pytest.raises(InvalidMessage, match="must be 32 bytes"):
        AdvertisedKeys(share_public=os.urandom(size), mask_public=os.urandom(32), signature=b"")
    with pytest.raises(InvalidMessage, match="must be 32 bytes"):
        KeyAdvertisement(os.urandom(16), 0, "advertise-keys", "client/0", "server", share_public=os.urandom(32),
                         mask_public=os.urandom(size), signature=b"", coin=b"")


@pytest.mark.parametrize("size", [1, 63, 65])
def test_a_signature_is_empty_or_64_bytes(size):
    with pytest.raises(InvalidMessage, match="0 or 64 bytes"):
        AdvertisedKeys(share_public=os.urandom(32), mask_public=os.urandom(32), signature=os.urandom(size))


def test_the_old_concatenated_entry_is_refused():
    with pytest.raises(InvalidMessage, match="AdvertisedKeys"):
        ShareKeysRequest(os.urandom(16), 0, "share-keys", "server", "client/0", keys={1: os.urandom(128)}, coins={})


@pytest.mark.parametrize("size", [101, 103, 138, 140, 102 + 37 * 2])
def test_sealed_shares_have_their_exact_size(size):
    # 102 bytes: two shares sealed; exact noise adds one 37-byte share (of the noise seed), so 139.
    with pytest.raises(InvalidMessage, match="must be 102 or 139 bytes"):
        EncryptedShares(os.urandom(16), 0, "share-keys", "client/0", "server", ciphertexts={1: os.urandom(size)},
                        self_mask_commitment=os.urandom(32))


@pytest.mark.parametrize("size", [31, 33, 63, 65])
def test_the_commitment_is_32_bytes_or_64_with_the_noise_anchor(size):
    with pytest.raises(InvalidMessage, match="32 or 64 bytes"):
        EncryptedShares(os.urandom(16), 0, "share-keys", "client/0", "server", ciphertexts={1: os.urandom(102)},
                        self_mask_commitment=os.urandom(size))


def test_a_full_round_still_aggregates():
    server, send = _round(malicious_server=True)
    requests = _advertise(server, send)
    for phase in server._parameters.phases[1:]:
        if phase != "share-keys":
            requests = server.begin_phase(phase)
        for request in requests:
            for reply in send(request):
                send(reply)
        server.end_phase(phase)
    np.testing.assert_array_equal(server.result().total, send.expected)
