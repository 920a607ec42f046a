"""Packed Paillier summation: exact sums, dropouts, the key holder's refusals, validation."""

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl import ring
from securefl.encoding import Encoding
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolAbort,
    ProtocolViolation,
    UnexpectedSender,
)
from securefl.protocols import Paillier
from securefl.protocols.base import EngineState
from securefl.protocols.catalog import make_protocol
from securefl.protocols.paillier import (
    DECRYPTOR,
    DecryptRequest,
    EncryptedUpload,
    KeyHolder,
    UploadRequest,
)
from securefl.protocols.wire import SERVER, decode_message
from securefl.simulation import run_protocol, secure_sum, server_saw_individual_updates
from tests.protocols.helpers import bounded_inputs, hand_uploads, ring_sum


@pytest.fixture(scope="module")
def keys():
    return KeyHolder.generate(512)


# --- exact sums --------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    clients=st.integers(2, 12),
    value_bits=st.integers(2, 16),
    max_weight=st.sampled_from([1, 3, 256]),
    ring_bits=st.sampled_from([32, 48, 64]),
    length=st.integers(1, 70),
    obfuscation=st.sampled_from(["standard", "short-exponent"]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_exact_sum_random_configurations(
    keys, clients, value_bits, max_weight, ring_bits, length, obfuscation, seed, data
):
    encoding = Encoding(value_bits=value_bits, max_weight=max_weight, ring_bits=ring_bits, max_clients=64)
    protocol = Paillier(key_holder=keys, encoding=encoding, min_clients=1, obfuscation=obfuscation)
    inputs = bounded_inputs(protocol, clients, length, seed)
    dropped = data.draw(st.sets(st.integers(0, clients - 1), max_size=clients - 1))
    aggregate, _, _ = run_protocol(protocol, inputs, dropouts={i: "upload" for i in dropped}, round=seed)
    survivors = [i for i in range(clients) if i not in dropped]
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, survivors, ring_bits))


@pytest.mark.parametrize("extreme", ["max", "min", "alternate"])
def test_max_clients_at_the_extremes_of_the_range(keys, extreme):
    # B = 127, 64 clients: slots of bitlength(2 x 127 x 64 = 16256) = 14 bits, filled to the top.
    encoding = Encoding(value_bits=8, max_weight=1, ring_bits=16, max_clients=64)
    protocol = Paillier(key_holder=keys, encoding=encoding)
    assert (protocol.layout.bound, protocol.layout.slot_bits) == (127, 14)
    inputs = bounded_inputs(protocol, 64, 50, seed=0, extreme=extreme)
    aggregate, _, _ = run_protocol(protocol, inputs)
    assert aggregate.included == tuple(range(64))
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(64), 16))
    signed = ring.to_signed(aggregate.total, 16)
    if extreme != "alternate":
        assert set(signed.tolist()) == {(127 if extreme == "max" else -127) * 64}


def test_float_sum_and_weights_travel_inside(keys):
    rng = np.random.default_rng(3)
    updates = [rng.normal(scale=0.2, size=500) for _ in range(6)]
    weights = [3, 1, 4, 1, 5, 9]
    result = secure_sum(Paillier(key_holder=keys), updates, weights=weights, seed=0, dropouts={2: "decrypt"})
    expected = sum(w * u for w, u in zip(weights, updates))
    assert result.weight_total == sum(weights)
    assert np.max(np.abs(result.total - expected)) <= Encoding().step * 6
    assert not server_saw_individual_updates(result, updates)


def test_server_receives_only_ciphertexts_and_the_decrypted_sum(keys):
    rng = np.random.default_rng(4)
    updates = [np.clip(rng.normal(scale=0.3, size=300), -1, 1) for _ in range(4)]  # within the clip
    result = secure_sum(Paillier(key_holder=keys), updates, seed=0)
    kinds = {(entry.sender, decode_message(entry.payload).KIND) for entry in result.transcript}
    uploads = {(f"client/{i}", "paillier/encrypted-upload") for i in range(4)}
    assert kinds == uploads | {(DECRYPTOR, "paillier/decrypted-sum")}


def test_the_default_key_size_end_to_end():
    protocol = Paillier()  # 2048-bit key made on first use, then kept
    assert protocol.key_bits == 2048 and protocol.keys.key_bits == 2048
    assert protocol.keys is protocol.keys
    rng = np.random.default_rng(5)
    updates = [rng.normal(scale=0.1, size=150) for _ in range(3)]
    result = secure_sum(protocol, updates, seed=0)
    assert result.included == (0, 1, 2)
    assert np.max(np.abs(result.total - sum(updates))) <= Encoding().step * 3
    # 151 values in 68-slot plaintexts: 3 ciphertexts of 512 bytes, plus a small header.
    assert protocol.layout.slots == 68
    assert 3 * 512 < result.metrics["bytes_up_per_client"] < 3 * 512 + 100
    sixteen_bit = Paillier(key_holder=protocol.keys, value_bits=16, max_weight=1, max_clients=1024)
    assert (sixteen_bit.layout.slot_bits, sixteen_bit.layout.slots) == (26, 78)


def test_key_is_made_once_and_reused_across_rounds():
    protocol = Paillier(key_bits=512, min_clients=1)
    inputs = bounded_inputs(protocol, 3, 10, seed=1)
    first = protocol.setup(clients=3, vector_length=10, session=os.urandom(16), round=0)
    second = protocol.setup(clients=3, vector_length=10, session=os.urandom(16), round=1)
    assert first.helpers[0]._keys is second.helpers[0]._keys is protocol.keys
    for round in range(3):
        aggregate, _, _ = run_protocol(protocol, inputs, round=round)
        np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(3), 32))


def test_upload_is_packed(keys):
    protocol = Paillier(key_holder=keys)
    length = 1000
    rng = np.random.default_rng(6)
    result = secure_sum(protocol, [rng.normal(size=length) * 0.1 for _ in range(2)], seed=0)
    ciphertexts = protocol.ciphertexts_per_client(length + 1)  # + the weight coordinate
    assert ciphertexts == -(-(length + 2) // protocol.layout.slots)
    assert ciphertexts * 128 < result.metrics["bytes_up_per_client"] < ciphertexts * 128 + 100


def test_precomputed_and_inline_obfuscators_agree(keys):
    inputs = None
    for precompute, workers in ((True, 2), (True, None), (False, None)):
        protocol = Paillier(key_holder=keys, precompute=precompute, workers=workers)
        inputs = inputs or bounded_inputs(protocol, 3, 200, seed=7)
        aggregate, _, _ = run_protocol(protocol, inputs)
        np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(3), 32))


def test_precompute_fills_each_client_before_it_has_its_update(keys):
    protocol = Paillier(key_holder=keys)
    parties = protocol.setup(clients=3, vector_length=100, session=os.urandom(16), round=0)
    assert [len(client._pool) for client in parties.clients] == [protocol.ciphertexts_per_client(100)] * 3
    lazy = Paillier(key_holder=keys, precompute=False)
    lazy = lazy.setup(clients=3, vector_length=100, session=os.urandom(16), round=0)
    assert [len(client._pool) for client in lazy.clients] == [0, 0, 0]


# --- aborts -----------------------------------------------------------------------------


def test_too_few_uploads_abort_before_anything_is_decrypted(keys):
    protocol = Paillier(key_holder=keys, min_clients=3)
    inputs = bounded_inputs(protocol, 4, 8, seed=1)
    with pytest.raises(ProtocolAbort, match="2 of 4 client.* min_clients=3"):
        run_protocol(protocol, inputs, dropouts={0: "upload", 1: "upload"})


def test_lost_decryption_request_aborts(keys):
    protocol = Paillier(key_holder=keys)
    inputs = bounded_inputs(protocol, 3, 8, seed=1)
    with pytest.raises(ProtocolAbort, match="decryptor did not answer"):
        run_protocol(protocol, inputs, lose=lambda message: message.recipient == DECRYPTOR)


def test_lost_upload_excludes_that_client(keys):
    protocol = Paillier(key_holder=keys)
    inputs = bounded_inputs(protocol, 4, 8, seed=2)
    aggregate, _, _ = run_protocol(protocol, inputs, lose=lambda message: message.sender == "client/2")
    assert aggregate.included == (0, 1, 3)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, [0, 1, 3], 32))


# --- engines driven by hand (sans-I/O) --------------------------------------------------------


def _uploads(keys, clients=3, length=8, **options):
    protocol = Paillier(key_holder=keys, **options)
    return (protocol, *hand_uploads(protocol, clients, length))

def _replace(upload, **changes):
    return dataclasses.replace(upload, **changes)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda u, k: _replace(u, key_id=bytes(16)), "under another key"),
        (lambda u, k: _replace(u, length=9), "for 9 coordinates; expected 8"),
        (lambda u, k: _replace(u, ciphertexts=u.ciphertexts[:-1]), "127 bytes of ciphertexts; expected 1 x 128"),
        (lambda u, k: _replace(u, ciphertexts=u.ciphertexts + bytes(128)), "256 bytes"),
        (lambda u, k: _replace(u, ciphertexts=bytes(128)), "outside"),
        (lambda u, k: _replace(u, ciphertexts=k.public_key.nsquare.to_bytes(128, "big")), "outside"),
        (lambda u, k: _replace(u, ciphertexts=(k._private_key.p * 3).to_bytes(128, "big")), "not coprime"),
        (lambda u, k: _replace(u, sender="client/7"), "not asked"),
        (lambda u, k: _replace(u, session=bytes(16)), "another session"),
        (lambda u, k: _replace(u, round=4), "round 4"),
    ],
)
def test_server_refuses_bad_uploads(keys, mutate, match):
    _, _, parties, _, uploads = _uploads(keys)
    with pytest.raises(InvalidMessage, match=match):
        parties.server.handle(mutate(uploads[0], keys))


def test_client_encrypts_once_and_checks_its_input(keys):
    protocol = Paillier(key_holder=keys)
    session = os.urandom(16)
    parties = protocol.setup(clients=3, vector_length=4, session=session, round=0)
    with pytest.raises(LocalProtocolError, match="no input"):
        parties.clients[2].handle(UploadRequest(session, 0, "upload", SERVER, "client/2"))
    assert parties.clients[2].state is EngineState.ABORTED
    client = parties.clients[0]
    request = UploadRequest(session, 0, "upload", SERVER, "client/0")
    bound = protocol.layout.bound
    with pytest.raises(ConfigurationError, match=f"client/0 input coordinate 2 is {bound + 1}, outside"):
        client.provide_input(ring.from_signed(np.array([0, 1, bound + 1, 0]), 32))
    with pytest.raises(ConfigurationError, match="coordinates"):
        client.provide_input(np.zeros(5, np.uint32))
    with pytest.raises(ConfigurationError, match="dtype"):
        client.provide_input(np.zeros(4, np.uint64))
    client.provide_input(ring.from_signed(np.array([-bound, bound, 0, 1]), 32))
    (upload,) = client.handle(request)
    assert isinstance(upload, EncryptedUpload) and upload.recipient == SERVER
    with pytest.raises(AlreadyFinalized):
        client.handle(request)
    with pytest.raises(UnexpectedSender):
        parties.clients[1].handle(UploadRequest(session, 0, "upload", DECRYPTOR, "client/1"))


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(key_bits=511), "even integer >= 256"),
        (dict(key_bits=128), "even integer >= 256"),
        (dict(key_bits=True), "key_bits"),
        (dict(key_bits=1024, key_holder="keys"), "KeyHolder"),
        (dict(min_clients=0), "min_clients"),
        (dict(min_clients=5, max_clients=4), "min_clients=5 exceeds max_clients=4"),
        (dict(obfuscation="fast"), "obfuscation"),
        (dict(workers=0), "workers"),
        (dict(precompute=1), "precompute"),
        (dict(value_bits=16), "a sum can wrap the ring"),  # max_weight 256 x 1024 clients x 2^15 > 2^31
        (dict(encoding="default"), "Encoding"),
    ],
)
def test_configuration_refused(options, match):
    with pytest.raises(ConfigurationError, match=match):
        Paillier(**options)


def test_key_size_must_match_an_injected_key(keys):
    with pytest.raises(ConfigurationError, match="key_bits=1024 but the key holder's key has 512 bits"):
        Paillier(key_bits=1024, key_holder=keys)
    assert Paillier(key_holder=keys).key_bits == 512


def test_client_counts_are_checked_up_front(keys):
    protocol = Paillier(key_holder=keys, max_clients=4)
    with pytest.raises(ConfigurationError, match="exceed max_clients=4"):
        protocol.setup(clients=5, vector_length=3, session=os.urandom(16), round=0)
    with pytest.raises(ConfigurationError, match="can never reach min_clients=2"):
        protocol.check_clients(1)


def test_shortcuts_replace_encoding_fields(keys):
    protocol = Paillier(key_holder=keys, value_bits=16, max_weight=1, max_clients=1024)
    assert protocol.encoding == Encoding(value_bits=16, max_weight=1, max_clients=1024)
    assert (protocol.value_bits, protocol.max_clients, protocol.max_weight) == (16, 1024, 1)


def test_catalog_and_description():
    protocol = make_protocol("paillier")
    assert isinstance(protocol, Paillier) and protocol.secure
    assert protocol.phases == ("upload", "decrypt")
    assert "2048-bit key, 68 slots x 30 bits" in protocol.describe()


def test_finished_engines_let_go_of_their_secrets(keys):
    protocol = Paillier(key_holder=keys)
    session = os.urandom(16)
    parties = protocol.setup(clients=3, vector_length=4, session=session, round=0)
    stopped = parties.clients[2]  # never given an input: it aborts, and forgets its precomputed obfuscators
    assert len(stopped._pool) > 0
    with pytest.raises(LocalProtocolError):
        stopped.handle(UploadRequest(session, 0, "upload", SERVER, "client/2"))
    assert stopped.state is EngineState.ABORTED and len(stopped._pool) == 0
    decryptor = parties.helpers[0]
    with pytest.raises(ProtocolViolation):
        decryptor.handle(DecryptRequest(session, 0, "decrypt", SERVER, DECRYPTOR, key_id=keys.key_id, included=(0,),
                                        length=4, ciphertexts=bytes(keys.public_key.nsquare.bit_length() // 8 + 1)))
    assert decryptor.state is EngineState.ABORTED and decryptor._keys is None
