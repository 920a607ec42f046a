"""BFV (lattice) summation: parameters, exact sums, every dropout pattern, the key holder's refusals, the wire."""

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tenseal")

from securefl import ring  # noqa: E402
from securefl.encoding import Encoding  # noqa: E402
from securefl.errors import (  # noqa: E402
    ConfigurationError,
    InvalidMessage,
    ProtocolAbort,
)
from securefl.protocols import BFV  # noqa: E402
from securefl.protocols.base import EngineState  # noqa: E402
from securefl.protocols.catalog import make_protocol  # noqa: E402
from securefl.protocols.lattice import (  # noqa: E402
    DECRYPTOR,
    MAX_MODULUS_BITS,
    BFVParameters,
    LatticeKeyHolder,
    load_public_context,
)
from securefl.protocols.lattice.parameters import batching_prime, fresh_noise_bound, is_prime  # noqa: E402
from securefl.protocols.wire import decode_message  # noqa: E402
from securefl.simulation import run_protocol, secure_sum, server_saw_individual_updates  # noqa: E402
from tests.protocols.helpers import bounded_inputs, finish_decryption, hand_uploads, ring_sum  # noqa: E402

SMALL = Encoding(value_bits=6, max_clients=8, max_weight=2)
"""N = 2048: small, fast keys and ciphertexts for most tests (still 128-bit parameters)."""


@pytest.fixture(scope="module")
def keys():
    return LatticeKeyHolder.generate(BFVParameters.for_encoding(SMALL))


@pytest.fixture(scope="module")
def other_keys():
    return LatticeKeyHolder.generate(BFVParameters.for_encoding(SMALL))


# --- parameters ----------------------------------------------------------------------------


def test_default_parameters_hold_the_sum_at_128_bit_security():
    protocol = BFV()
    parameters = protocol.parameters
    encoding = protocol.encoding
    bound = encoding.max_weight * ((1 << (encoding.value_bits - 1)) - 1)
    t = parameters.plain_modulus
    assert parameters.poly_modulus_degree == 4096 and parameters.coeff_mod_bit_sizes == (60, 49)
    assert is_prime(t) and t % (2 * 4096) == 1 and t > 2 * encoding.max_clients * bound
    assert t == batching_prime(2 * encoding.max_clients * bound + 1, 4096)  # the smallest such prime
    assert sum(parameters.coeff_mod_bit_sizes) <= MAX_MODULUS_BITS[4096] == 109
    q = protocol.keys.public_context.seal_context().data.first_context_data().total_coeff_modulus()
    assert q >= parameters.required_modulus(encoding.max_clients)  # SEAL's 60-bit prime holds 1024 fresh sums


def test_parameters_follow_the_headroom():
    small = BFVParameters.for_encoding(SMALL)
    assert small.poly_modulus_degree == 2048 and small.plain_modulus == 12289
    wide = BFVParameters.for_encoding(Encoding(value_bits=16, max_weight=1024, ring_bits=48, max_clients=4096))
    assert wide.plain_modulus.bit_length() == 38 and len(wide.coeff_mod_bit_sizes) == 3  # q needs two primes
    assert sum(wide.coeff_mod_bit_sizes) <= MAX_MODULUS_BITS[wide.poly_modulus_degree]
    assert BFVParameters.for_encoding(SMALL, poly_modulus_degree=8192).poly_modulus_degree == 8192


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BFVParameters.for_encoding(Encoding(value_bits=30, max_weight=1 << 20, ring_bits=64,
                                                     max_clients=1 << 11)),
         "plain modulus of 61 bits; BFV's is at most 60"),
        (lambda: BFVParameters(poly_modulus_degree=4096, plain_modulus=40961, coeff_mod_bit_sizes=(60, 60)),
         "below 128-bit security"),
        (lambda: BFVParameters(poly_modulus_degree=4096, plain_modulus=12289, coeff_mod_bit_sizes=(60, 40)),
         r"prime = 1 \(mod 8192\)"),
        (lambda: BFVParameters(poly_modulus_degree=3000, plain_modulus=12289, coeff_mod_bit_sizes=(40, 20)),
         "poly_modulus_degree must be one of"),
        (lambda: BFV(poly_modulus_degree=1024), "no BFV parameters"),
        (lambda: BFV(min_clients=9, encoding=SMALL), "exceeds max_clients"),
    ],
)
def test_configuration_refused(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_noise_bound_and_primes():
    assert fresh_noise_bound(4096) == (2 * 4096 + 1) * 20
    assert [n for n in range(2, 40) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]
    assert is_prime(2**61 - 1) and not is_prime(2**61 + 1) and not is_prime(3215031751)  # a strong pseudoprime


def test_key_holder_must_match_the_encoding(keys):
    with pytest.raises(ConfigurationError, match="not this encoding's"):
        BFV(key_holder=keys)  # SMALL's key, default encoding


# --- exact sums ----------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    clients=st.integers(2, 9),
    value_bits=st.integers(2, 16),
    max_weight=st.sampled_from([1, 3, 256]),
    ring_bits=st.sampled_from([32, 48, 64]),
    length=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_exact_sum_random_configurations(clients, value_bits, max_weight, ring_bits, length, seed):
    encoding = Encoding(value_bits=value_bits, max_weight=max_weight, ring_bits=ring_bits, max_clients=16)
    protocol = BFV(encoding=encoding)
    inputs = bounded_inputs(protocol, clients, length, seed)
    aggregate, _, _ = run_protocol(protocol, inputs)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(clients), ring_bits))


@pytest.mark.parametrize("extreme", ["max", "min", "alternate"])
def test_max_clients_at_the_extremes_of_the_range(keys, extreme):
    protocol = BFV(key_holder=keys, encoding=SMALL)
    inputs = bounded_inputs(protocol, SMALL.max_clients, 40, seed=3, extreme=extreme)
    aggregate, _, _ = run_protocol(protocol, inputs)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(SMALL.max_clients), 32))


def test_production_parameters_at_max_clients_and_the_extremes():
    # The default encoding: N = 4096, a 30-bit t and one 60-bit prime; 1024 clients at +B (t/2 - 1 > 1024 B).
    protocol = BFV()
    high = bounded_inputs(protocol, 1024, 6, seed=0, extreme="max")
    aggregate, _, _ = run_protocol(protocol, high)
    assert (ring.to_signed(aggregate.total, 32) == 1024 * protocol.bound).all()
    low = bounded_inputs(protocol, 1024, 6, seed=0, extreme="min")
    aggregate, _, _ = run_protocol(protocol, low)
    assert (ring.to_signed(aggregate.total, 32) == -1024 * protocol.bound).all()


def test_float_sum_and_weights_travel_inside(keys):
    protocol = BFV(key_holder=keys, encoding=SMALL)
    rng = np.random.default_rng(3)
    updates = [rng.normal(scale=0.2, size=500) for _ in range(6)]
    weights = [1, 2, 2, 1, 2, 1]
    result = secure_sum(protocol, updates, weights=weights, seed=0, dropouts={2: "decrypt"})
    expected = sum(w * u for w, u in zip(weights, updates))
    assert result.weight_total == sum(weights)
    assert np.max(np.abs(result.total - expected)) <= SMALL.step * 6
    assert not server_saw_individual_updates(result, updates)


def test_server_receives_only_ciphertexts_and_the_decrypted_sum(keys):
    protocol = BFV(key_holder=keys, encoding=SMALL)
    rng = np.random.default_rng(4)
    updates = [np.clip(rng.normal(scale=0.3, size=300), -1, 1) for _ in range(4)]
    result = secure_sum(protocol, updates, seed=0)
    kinds = {(entry.sender, decode_message(entry.payload).KIND) for entry in result.transcript}
    assert kinds == {(f"client/{i}", "bfv/encrypted-upload") for i in range(4)} | {(DECRYPTOR, "bfv/decrypted-sum")}


def test_key_is_made_once_and_reused_across_rounds():
    protocol = BFV(encoding=SMALL)
    first = protocol.run_parameters(clients=3, vector_length=4, session=os.urandom(16), round=0)
    second = protocol.run_parameters(clients=3, vector_length=4, session=os.urandom(16), round=1)
    assert first.key_id == second.key_id == protocol.keys.key_id
    assert BFV(encoding=SMALL).keys.key_id != protocol.keys.key_id


# --- hand-driven runs: the server's and the key holder's refusals ----------------------------


def _uploads(keys, clients=3, length=8, **options):
    protocol = BFV(key_holder=keys, encoding=SMALL, **options)
    return (protocol, *hand_uploads(protocol, clients, length))

def _other_parameters_ciphertext():
    other = LatticeKeyHolder.generate(BFVParameters.for_encoding(SMALL, poly_modulus_degree=4096))
    from securefl.protocols.lattice.keys import encrypt_vector

    return encrypt_vector(other.public_context, np.arange(9, dtype=np.int64), 4096)[0]


def _flipped(blob, offset):
    return blob[:offset] + bytes([blob[offset] ^ 0x01]) + blob[offset + 1 :]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda u, k: dataclasses.replace(u, key_id=bytes(16)), "under another key"),
        (lambda u, k: dataclasses.replace(u, length=9), "for 9 coordinates; expected 8"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=()), "carries 0 ciphertexts; expected 1"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=u.ciphertexts * 2), "carries 2 ciphertexts; expected 1"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(b"",)), "has 0 bytes"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(u.ciphertexts[0][:-7],)), "not a BFV ciphertext"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(os.urandom(5000),)), "not a BFV ciphertext"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(_flipped(u.ciphertexts[0], 40),)), "not a BFV ciphertext"),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(u.ciphertexts[0] + bytes(70000),)), "bytes; expected 1.."),
        (lambda u, k: dataclasses.replace(u, ciphertexts=(_other_parameters_ciphertext(),)), "ciphertext 0 has"),
        (lambda u, k: dataclasses.replace(u, sender="client/7"), "not asked"),
        (lambda u, k: dataclasses.replace(u, session=bytes(16)), "another session"),
    ],
)
def test_server_refuses_bad_uploads_and_stays_as_it_was(keys, mutate, match):
    _, _, parties, inputs, uploads = _uploads(keys)
    with pytest.raises(InvalidMessage, match=match):
        parties.server.handle(mutate(uploads[0], keys))
    for upload in uploads:  # the genuine uploads still make the exact sum
        parties.server.handle(upload)
    np.testing.assert_array_equal(finish_decryption(parties).total, ring_sum(inputs, range(3), 32))


def test_a_ciphertext_with_another_slot_count_is_refused(keys):
    from securefl.protocols.lattice.keys import encrypt_vector

    _, _, parties, _, uploads = _uploads(keys)
    short = encrypt_vector(keys.public_context, np.zeros(5, dtype=np.int64), 2048)  # 5 slots, 9 expected
    with pytest.raises(InvalidMessage, match="holds 5 slots; expected 9"):
        parties.server.handle(dataclasses.replace(uploads[0], ciphertexts=tuple(short)))


def test_client_checks_its_input_against_the_bound(keys):
    protocol = BFV(key_holder=keys, encoding=SMALL)
    parties = protocol.setup(clients=3, vector_length=4, session=os.urandom(16), round=0)
    too_big = ring.from_signed(np.array([0, protocol.bound + 1, 0, 0]), 32)
    with pytest.raises(ConfigurationError, match=f"magnitude {protocol.bound + 1} > {protocol.bound}"):
        parties.clients[0].provide_input(too_big)


def test_too_few_uploads_abort_before_anything_is_decrypted(keys):
    protocol = BFV(key_holder=keys, encoding=SMALL, min_clients=3)
    inputs = bounded_inputs(protocol, 3, 5, seed=0)
    with pytest.raises(ProtocolAbort, match="2 of 3 client"):
        run_protocol(protocol, inputs, dropouts={1: "upload"})


# --- the public context and the key holder's storage --------------------------------------------


def test_public_context_is_checked_before_use(keys, other_keys):
    parameters = keys.parameters
    public = keys.public_context_bytes
    assert LatticeKeyHolder.public_only(public, parameters).key_id == keys.key_id
    assert not LatticeKeyHolder.public_only(public, parameters).can_decrypt
    secret = keys.secret_context.serialize(save_secret_key=True)
    with pytest.raises(InvalidMessage, match="carries a secret key"):
        load_public_context(secret, parameters)
    with pytest.raises(InvalidMessage, match="N=2048.*expected N=4096"):
        load_public_context(public, BFVParameters.for_encoding(SMALL, poly_modulus_degree=4096))
    other_t = BFVParameters(poly_modulus_degree=2048, plain_modulus=batching_prime(12290, 2048),
                            coeff_mod_bit_sizes=parameters.coeff_mod_bit_sizes)
    with pytest.raises(InvalidMessage, match="t=12289"):
        load_public_context(public, other_t)
    other_q = dataclasses.replace(parameters, coeff_mod_bit_sizes=(34, 20))
    with pytest.raises(InvalidMessage, match="another coefficient modulus"):
        load_public_context(public, other_q)
    for bad in (b"", b"\x00" * 100, public[:-5], os.urandom(3000)):
        with pytest.raises(InvalidMessage):
            load_public_context(bad, parameters)
    assert other_keys.key_id != keys.key_id


def test_key_holder_state_round_trips_with_its_record():
    holder = LatticeKeyHolder.generate(BFVParameters.for_encoding(SMALL))
    protocol = BFV(key_holder=holder, encoding=SMALL)
    inputs = bounded_inputs(protocol, 3, 10, seed=5)
    run_protocol(protocol, inputs, round=1)
    restored = LatticeKeyHolder.from_state_dict(holder.state_dict())
    assert restored.key_id == holder.key_id and restored.can_decrypt
    again = BFV(key_holder=restored, encoding=SMALL)
    aggregate, _, _ = run_protocol(again, inputs, round=2)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(3), 32))
    assert restored.claim(b"\x00" * 16, 0) and not restored.claim(b"\x00" * 16, 0)
    tampered = {**holder.state_dict(), "secret-context": b"\x00" * 64}
    with pytest.raises(InvalidMessage, match="BFV key holder"):
        LatticeKeyHolder.from_state_dict(tampered)
    with pytest.raises(InvalidMessage):
        LatticeKeyHolder.from_state_dict({**holder.state_dict(), "extra": 1})


def test_catalog_and_description():
    protocol = make_protocol("bfv", encoding=SMALL)
    assert isinstance(protocol, BFV) and protocol.name == "bfv" and not protocol.modular_sum
    assert "N=2048" in protocol.describe() and "128-bit" in protocol.describe()
    assert protocol.helper_parties() == (DECRYPTOR,)


def test_finished_engines_let_go_of_their_secrets(keys):
    _, _, parties, inputs, uploads = _uploads(keys)
    assert all(client.state is EngineState.DONE and client._values is None for client in parties.clients)
    for upload in uploads:
        parties.server.handle(upload)
    finish_decryption(parties)
    decryptor = parties.helpers[0]
    assert decryptor.state is EngineState.DONE and decryptor._keys is None
    assert keys.can_decrypt  # the key holder itself serves later rounds
