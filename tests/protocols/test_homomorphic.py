"""The rules every homomorphic-summation protocol shares (Paillier, BFV), tested once over both.

Every dropout pattern of up to 5 clients gives the exact sum of the uploads that arrived.

The server adds only uploads of the run and refuses duplicates and late
ones; the key holder decrypts only an aggregate of distinct clients of the
run, at least ``min_clients`` and at most ``max_clients``, once per
(session, round) -- claimed before decrypting -- and releases nothing whose
contribution counter does not equal the count it was told.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from securefl.errors import AlreadyFinalized, InvalidMessage, ProtocolAbort, ProtocolViolation, UnexpectedMessage
from securefl.protocols.base import EngineState
from securefl.protocols.homomorphic.messages import DECRYPTOR
from securefl.protocols.wire import SERVER
from securefl.simulation import run_protocol
from tests.protocols.helpers import bounded_inputs, finish_decryption, hand_uploads, ring_sum

LENGTH = 8


@dataclass(frozen=True)
class Scheme:
    """What the shared tests need of one scheme."""

    inputs: str  # what the key holder's refusal says a plaintext must be a sum of
    make: Callable[..., Any]  # make(keys, **options) -> the protocol under ``keys``
    capped: Callable[[Any, int], Any]  # capped(keys, max_clients) -> a protocol whose slots hold max_clients
    sum_of: Callable[[Any, list[Any]], Any]  # the homomorphic sum of the uploads' ciphertexts, in wire form
    foreign: Callable[[Any, Any], Any]  # ciphertexts under other_keys the server cannot tell from its own
    keys: Any
    other_keys: Any
    several: int  # a vector length that fills more than one ciphertext


def _paillier() -> Scheme:
    from securefl.protocols import Paillier
    from securefl.protocols.paillier import KeyHolder, ciphertexts_from_bytes, ciphertexts_to_bytes

    keys = KeyHolder.generate(512)
    while True:  # all of its ciphertexts below keys' n^2, so only decryption can tell
        other = KeyHolder.generate(512)
        if other.public_key.n < keys.public_key.n:
            break

    def sum_of(keys: Any, uploads: list[Any]) -> bytes:
        loaded = [ciphertexts_from_bytes(u.ciphertexts, keys.public_key, count=1, what="test") for u in uploads]
        nsquare = keys.public_key.nsquare
        total = [1]
        for ciphertexts in loaded:
            total = [a * c % nsquare for a, c in zip(total, ciphertexts)]
        return ciphertexts_to_bytes(total, keys.public_key)

    def foreign(keys: Any, other: Any) -> bytes:
        forged = other.public_key.raw_encrypt(12345)
        assert forged < keys.public_key.nsquare
        return ciphertexts_to_bytes([forged], keys.public_key)

    return Scheme(
        inputs="packed inputs",
        make=lambda keys, **options: Paillier(key_holder=keys, **options),
        capped=lambda keys, cap: Paillier(key_holder=keys, max_clients=cap),
        sum_of=sum_of, foreign=foreign, keys=keys, other_keys=other,
        several=40,  # 41 values: 3 ciphertexts of 17 slots
    )


def _bfv() -> Scheme:
    from securefl.encoding import Encoding
    from securefl.protocols import BFV
    from securefl.protocols.lattice import BFVParameters, LatticeKeyHolder, load_ciphertexts

    small = Encoding(value_bits=6, max_clients=8, max_weight=2)
    keys = LatticeKeyHolder.generate(BFVParameters.for_encoding(small))
    other = LatticeKeyHolder.generate(BFVParameters.for_encoding(small))

    def sum_of(keys: Any, uploads: list[Any]) -> tuple[bytes, ...]:
        vectors = [load_ciphertexts(u.ciphertexts, keys.public_context, keys.parameters, length=LENGTH + 1,
                                    what="test") for u in uploads]
        return tuple(v.serialize() for v in (sum(column[1:], column[0]) for column in zip(*vectors)))

    def foreign(keys: Any, other: Any) -> tuple[bytes, ...]:
        _, _, _, uploads = hand_uploads(BFV(key_holder=other, encoding=small), length=LENGTH)
        return uploads[0].ciphertexts

    def capped(keys: Any, cap: int) -> Any:
        encoding = dataclasses.replace(small, max_clients=cap)
        return BFV(key_holder=LatticeKeyHolder.generate(BFVParameters.for_encoding(encoding)), encoding=encoding)

    return Scheme(
        inputs="bounded inputs",
        make=lambda keys, **options: BFV(key_holder=keys, encoding=small, **options),
        capped=capped, sum_of=sum_of, foreign=foreign, keys=keys, other_keys=other,
        several=2050,  # 2051 values: 2 ciphertexts of N = 2048
    )


_SCHEMES = {"paillier": _paillier, "bfv": _bfv}


@pytest.fixture(scope="module", params=sorted(_SCHEMES))
def scheme(request: pytest.FixtureRequest) -> Scheme:
    if request.param == "bfv" and importlib.util.find_spec("tenseal") is None:
        pytest.skip("the lattice extra (TenSEAL) is not installed")
    return _SCHEMES[request.param]()


def _uploads(scheme: Scheme, clients: int = 3, **options: Any):
    protocol = scheme.make(scheme.keys, **options)
    return (protocol, *hand_uploads(protocol, clients, LENGTH))


def _request(scheme: Scheme, parties: Any, bound_session: bytes, ciphertexts: Any, included: tuple[int, ...],
             **changes: Any):
    kind = type(parties.helpers[0]).MESSAGES.decrypt_request
    fields = dict(session=bound_session, round=5, phase="decrypt", sender=SERVER, recipient=DECRYPTOR,
                  key_id=scheme.keys.key_id, included=included, length=LENGTH, ciphertexts=ciphertexts)
    fields.update(changes)
    return kind(**fields)


def _fresh_decryptor(parties: Any, run: Any, keys: Any) -> Any:
    """Another decryptor engine for ``run`` on the same key holder."""
    return type(parties.helpers[0])(run, keys)


@pytest.mark.parametrize("clients", range(1, 6))
def test_exact_sum_under_every_dropout_pattern(scheme, clients):
    protocol = scheme.make(scheme.keys, min_clients=1)
    bits = protocol.encoding.ring_bits
    inputs = bounded_inputs(protocol, clients, scheme.several, seed=clients)
    for pattern in itertools.product((None, *protocol.phases), repeat=clients):
        dropouts = {i: phase for i, phase in enumerate(pattern) if phase is not None}
        delivered = [i for i in range(clients) if dropouts.get(i) != "upload"]
        if not delivered:
            with pytest.raises(ProtocolAbort, match="phase 'upload': 0 of"):
                run_protocol(protocol, inputs, dropouts=dropouts)
            continue
        aggregate, _, _ = run_protocol(protocol, inputs, dropouts=dropouts)
        assert aggregate.included == tuple(delivered)
        np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, delivered, bits))


def test_hand_driven_run_is_exact(scheme):
    _, _, parties, inputs, uploads = _uploads(scheme)
    for upload in uploads:
        assert parties.server.handle(upload) == []
    np.testing.assert_array_equal(finish_decryption(parties).total, ring_sum(inputs, range(3), 32))


def test_server_refuses_duplicate_and_late_uploads(scheme):
    _, _, parties, _, uploads = _uploads(scheme)
    parties.server.handle(uploads[0])
    with pytest.raises(UnexpectedMessage, match="duplicate EncryptedUpload from client/0"):
        parties.server.handle(uploads[0])
    parties.server.handle(uploads[1])
    parties.server.end_phase("upload")
    parties.server.begin_phase("decrypt")
    with pytest.raises(UnexpectedMessage, match="not a reply of phase 'decrypt'"):
        parties.server.handle(uploads[2])


@pytest.mark.parametrize("mutate, match", [
    (lambda u: dataclasses.replace(u, key_id=bytes(16)), "under another key"),
    (lambda u: dataclasses.replace(u, length=9), "for 9 coordinates; expected 8"),
    (lambda u: dataclasses.replace(u, sender="client/7"), "not asked"),
    (lambda u: dataclasses.replace(u, session=bytes(16)), "another session"),
    (lambda u: dataclasses.replace(u, round=4), "round 4"),
])
def test_server_refuses_misbound_uploads_and_stays_as_it_was(scheme, mutate, match):
    _, _, parties, inputs, uploads = _uploads(scheme)
    with pytest.raises(InvalidMessage, match=match):
        parties.server.handle(mutate(uploads[0]))
    for upload in uploads:  # the genuine uploads still make the exact sum
        parties.server.handle(upload)
    np.testing.assert_array_equal(finish_decryption(parties).total, ring_sum(inputs, range(3), 32))


def test_ciphertexts_under_another_key_never_give_a_wrong_sum(scheme):
    # The server cannot tell them apart; the key holder's counter check refuses the sum.
    _, _, parties, _, uploads = _uploads(scheme)
    forged = scheme.foreign(scheme.keys, scheme.other_keys)
    parties.server.handle(dataclasses.replace(uploads[0], ciphertexts=forged))
    for upload in uploads[1:]:
        parties.server.handle(upload)
    with pytest.raises(ProtocolViolation, match=f"does not decrypt to a sum of 3 {scheme.inputs}"):
        finish_decryption(parties)


def test_a_forged_count_is_caught_in_the_plaintext(scheme):
    # An honest-looking request that claims 3 clients but carries one client's ciphertexts.
    _, session, parties, _, uploads = _uploads(scheme)
    with pytest.raises(ProtocolViolation, match="does not decrypt to a sum of 3"):
        parties.helpers[0].handle(_request(scheme, parties, session, uploads[0].ciphertexts, (0, 1, 2)))


def test_key_holder_refuses_small_repeated_and_oversized_aggregates(scheme):
    keys = scheme.keys
    _, session, parties, inputs, uploads = _uploads(scheme, clients=4, min_clients=2)
    run = parties.helpers[0]._run
    for included, match in [((0,), "aggregate of 1 client.*min_clients=2"), ((0, 0), "twice"),
                            ((0, 9), r"outside \[0, 4\)")]:
        decryptor = _fresh_decryptor(parties, run, keys)
        with pytest.raises(ProtocolViolation, match=match):
            decryptor.handle(_request(scheme, parties, session, uploads[0].ciphertexts, included))
        assert decryptor.state is EngineState.ABORTED
    # setup never makes more clients than the slots hold; a decryptor built past it still refuses.
    small = scheme.capped(keys, 3)
    oversized = dataclasses.replace(small.setup(clients=3, vector_length=LENGTH, session=session,
                                                round=5).server._run, clients=4)
    request = _request(scheme, parties, session, uploads[0].ciphertexts, (0, 1, 2, 3), key_id=small.keys.key_id)
    with pytest.raises(ProtocolViolation, match="max_clients=3"):
        _fresh_decryptor(parties, oversized, small.keys).handle(request)
    # A genuine aggregate of clients 0 and 1 is decrypted once, and only once, whichever engine asks.
    aggregate = scheme.sum_of(keys, uploads[:2])
    decryptor = _fresh_decryptor(parties, run, keys)
    (answer,) = decryptor.handle(_request(scheme, parties, session, aggregate, (0, 1)))
    assert answer.KIND.endswith("decrypted-sum") and decryptor.state is EngineState.DONE
    np.testing.assert_array_equal(answer.vector, ring_sum(inputs, (0, 1), 32))
    with pytest.raises(AlreadyFinalized):
        decryptor.handle(_request(scheme, parties, session, aggregate, (0, 1)))
    with pytest.raises(ProtocolViolation, match="already decrypted"):
        _fresh_decryptor(parties, run, keys).handle(_request(scheme, parties, session, aggregate, (0, 1)))


@pytest.mark.parametrize("changes, match", [
    (dict(session=bytes(16)), "another session"),
    (dict(round=6), "round 6"),
    (dict(sender="client/0"), "may not send it"),
    (dict(recipient=SERVER), "addressed to"),
    (dict(phase="upload"), "phase"),
    (dict(key_id=bytes(16)), "under another key"),
    (dict(length=7), "for 7 coordinates"),
])
def test_key_holder_refuses_misbound_requests(scheme, changes, match):
    _, session, parties, _, uploads = _uploads(scheme)
    aggregate = scheme.sum_of(scheme.keys, uploads)
    with pytest.raises(InvalidMessage, match=match):
        parties.helpers[0].handle(_request(scheme, parties, session, aggregate, (0, 1, 2), **changes))


def test_a_failed_check_uses_up_the_decryption(scheme):
    _, session, parties, _, uploads = _uploads(scheme)
    decryptor = parties.helpers[0]
    with pytest.raises(ProtocolViolation, match="does not decrypt"):
        decryptor.handle(_request(scheme, parties, session, uploads[0].ciphertexts, (0, 1, 2)))
    with pytest.raises(AlreadyFinalized):
        decryptor.handle(_request(scheme, parties, session, uploads[0].ciphertexts, (0, 1, 2)))
    aggregate = scheme.sum_of(scheme.keys, uploads)
    with pytest.raises(ProtocolViolation, match="already decrypted"):  # nor through another engine
        _fresh_decryptor(parties, decryptor._run, scheme.keys).handle(
            _request(scheme, parties, session, aggregate, (0, 1, 2)))
