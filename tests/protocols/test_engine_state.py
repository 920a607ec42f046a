"""Engine state as plain data: every client and helper engine of every protocol round-trips through
``state_dict()`` / ``from_state_dict()`` at every step of an aggregation, and a tampered state is refused.

The aggregations run on the driver core's in-process transport, with every
party wrapped so that after each message it handles (and after its input)
its engine is replaced by the engine rebuilt from its state, serialised
through msgpack on the way: what survives is plain data and nothing else.
Server engines are wrapped the same way (after each phase begun, reply
handled, phase ended and the result).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import msgpack
import numpy as np
import pytest

from securefl.crypto.keys import SigningKey
from securefl.driver import InProcessTransport, Round
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols import catalog
from securefl.protocols.base import STATE_FORMAT, Engine, EngineState, Protocol, RunParameters
from securefl.protocols.paillier import Paillier
from securefl.protocols.plaintext import Plaintext
from securefl.protocols.secagg import SecAgg
from securefl.protocols.secret_sharing import SecretSharing
from securefl.protocols.state import StateReader, check_plain
from securefl.protocols.wire import client_id
from tests.protocols.helpers import random_inputs, ring_sum

KEY_BITS = 512
CLIENTS = 5
LENGTH = 12
CATALOG_OPTIONS: dict[str, dict] = {"secagg+": {"neighbors": 2}}
EXTRA_CASES = {
    "secret-sharing/3": lambda: SecretSharing(aggregators=3),
    "secagg/malicious-server": lambda: SecAgg(malicious_server=True),
    "secagg+/malicious-server": lambda: SecAgg(neighbors=2, malicious_server=True),
    "paillier/short-exponent": lambda: Paillier(key_bits=KEY_BITS, obfuscation="short-exponent"),
}


def _fast(protocol: Protocol) -> Protocol:
    if dataclasses.is_dataclass(protocol) and "key_bits" in {item.name for item in dataclasses.fields(protocol)}:
        return dataclasses.replace(protocol, key_bits=KEY_BITS)
    return protocol


CASES = {
    **{name: (lambda name=name: _fast(catalog.make_protocol(name, **CATALOG_OPTIONS.get(name, {}))))
       for name in catalog.protocol_names()},
    **EXTRA_CASES,
}


@functools.cache
def protocol_of(name: str) -> Protocol:
    return CASES[name]()


def test_every_catalog_protocol_is_a_case():
    assert set(catalog.protocol_names()) <= set(CASES)


# -- plain data, checked twice: a walk of exact types and a trip through msgpack ---------------------


PLAIN_SCALARS = (int, bool, str, bytes)


def walk_plain(state: dict) -> None:
    """Every value is one of the plain types, by exact type: no object, no subclass, no numpy scalar."""
    assert type(state) is dict
    for key, value in state.items():
        assert type(key) is str
        if type(value) in PLAIN_SCALARS:
            continue
        if type(value) is list:
            assert len({type(item) for item in value}) <= 1, key
            assert all(type(item) in (int, str, bytes) for item in value), key
            continue
        assert type(value) is np.ndarray and value.ndim == 1 and not value.dtype.hasobject, key


def _encode(value: object) -> object:
    if type(value) is np.ndarray and value.ndim == 1:
        return msgpack.ExtType(1, value.dtype.str.encode() + b"|" + value.tobytes())
    raise TypeError(f"{type(value).__name__} is not plain data")


def _decode(code: int, data: bytes) -> object:
    dtype, _, body = data.partition(b"|")
    return np.frombuffer(body, dtype=np.dtype(dtype.decode())).copy()


def through_msgpack(state: dict) -> dict:
    blob = msgpack.packb(state, default=_encode, strict_types=True, use_bin_type=True)
    return msgpack.unpackb(blob, ext_hook=_decode, raw=False, strict_map_key=True)


def same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype
                    and np.array_equal(x, y)):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


class Reloading:
    """Stands in for an engine: after each call that may change it, its engine is rebuilt from plain data."""

    def __init__(self, protocol: Protocol, engine: Engine, counts: dict[str, int]) -> None:
        self.protocol, self.engine, self.counts = protocol, engine, counts
        self.party = engine.party
        self.handled = 0
        self.reload()

    def reload(self) -> None:
        state = self.engine.state_dict()
        walk_plain(state)
        check_plain(state)
        stored = through_msgpack(state)
        restored = self.protocol.restore_engine(self.engine.run, stored)
        assert type(restored) is type(self.engine) and restored.party == self.party
        assert restored.state is self.engine.state and restored.phase == self.engine.phase
        assert same_state(restored.state_dict(), state), f"{self.party}'s state changed on the round trip"
        self.engine = restored
        self.counts[self.party] = self.counts.get(self.party, 0) + 1

    def _then_reload(self, call, *args):
        try:
            return call(*args)
        finally:
            self.reload()

    def handle(self, message):
        self.handled += 1
        return self._then_reload(self.engine.handle, message)

    # the server's calls
    def begin_phase(self, phase):
        return self._then_reload(self.engine.begin_phase, phase)

    def end_phase(self, phase):
        return self._then_reload(self.engine.end_phase, phase)

    def result(self):
        return self._then_reload(self.engine.result)


def run_reloading(protocol: Protocol, inputs, *, dropouts=None, session=None):
    """``run_protocol``'s setup, with every party (server, clients, helpers) reloading after each call."""
    session = os.urandom(16) if session is None else session
    parties = protocol.setup(clients=len(inputs), vector_length=int(inputs[0].size), session=session, round=2)
    counts: dict[str, int] = {}
    remote = []
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
        remote.append(Reloading(protocol, engine, counts))
    remote += [Reloading(protocol, helper, counts) for helper in parties.helpers]
    server = Reloading(protocol, parties.server, counts)
    transport = InProcessTransport(remote, phases=protocol.phases,
                                   dropouts={client_id(i): protocol.phases[p] for i, p in (dropouts or {}).items()})
    outcome = Round(server, phases=protocol.phases, transport=transport, drop_refused=False).run()
    return outcome, counts, {wrapper.party: wrapper for wrapper in remote}


@pytest.mark.parametrize("name", list(CASES))
def test_an_aggregation_whose_engines_are_rebuilt_from_plain_data_after_every_message_sums_exactly(name):
    protocol = protocol_of(name)
    ring_bits = protocol.encoding.ring_bits
    inputs = random_inputs(CLIENTS, LENGTH, ring_bits, seed=3)
    if not protocol.modular_sum:  # Paillier's packed slots hold bounded values
        inputs = [np.zeros(LENGTH, dtype=v.dtype) + np.arange(LENGTH, dtype=v.dtype) * (i + 1)
                  for i, v in enumerate(inputs)]

    outcome, counts, wrappers = run_reloading(protocol, inputs)

    assert outcome.aggregate.included == tuple(range(CLIENTS))
    assert np.array_equal(outcome.aggregate.total, ring_sum(inputs, range(CLIENTS), ring_bits))
    # Every client and helper was rebuilt once made and after each message it handled; each ends DONE.
    assert len(wrappers) == CLIENTS + len(protocol.setup(clients=CLIENTS, vector_length=1, session=bytes(16),
                                                         round=0).helpers)
    for party, wrapper in wrappers.items():
        assert wrapper.handled >= 1 and counts[party] == 1 + wrapper.handled
        assert wrapper.engine.state is EngineState.DONE


@pytest.mark.parametrize("name", ["secagg", "secagg+", "secagg/malicious-server"])
@pytest.mark.parametrize("stop", ["share-keys", "masked-input"])
def test_dropout_recovery_works_on_rebuilt_engines(name, stop):
    protocol = protocol_of(name)
    inputs = random_inputs(CLIENTS, LENGTH, protocol.encoding.ring_bits, seed=4)

    outcome, _, _ = run_reloading(protocol, inputs, dropouts={1: protocol.phases.index(stop)})

    survivors = [0, 2, 3, 4]
    assert outcome.aggregate.included == tuple(survivors)
    assert np.array_equal(outcome.aggregate.total, ring_sum(inputs, survivors, protocol.encoding.ring_bits))


# -- states taken at every point of an aggregation, then tampered with ------------------------------


def states_along_a_run(name: str) -> list[tuple[str, Engine, dict]]:
    """(where, engine, state) for every party: clients after their input, everyone after each call."""
    protocol = protocol_of(name)
    inputs = random_inputs(3, 4, protocol.encoding.ring_bits, seed=5)
    if not protocol.modular_sum:
        inputs = [np.ones(4, dtype=v.dtype) for v in inputs]
    taken: list[tuple[str, Engine, dict]] = []

    class Taking(Reloading):
        def reload(self) -> None:
            taken.append((f"{self.party} after {self.counts.get(self.party, 0)} call(s)", self.engine,
                          self.engine.state_dict()))
            super().reload()

    session = os.urandom(16)
    parties = protocol.setup(clients=3, vector_length=4, session=session, round=0)
    counts: dict[str, int] = {}
    remote = []
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
        remote.append(Taking(protocol, engine, counts))
    remote += [Taking(protocol, helper, counts) for helper in parties.helpers]
    Round(Taking(protocol, parties.server, counts), phases=protocol.phases,
          transport=InProcessTransport(remote, phases=protocol.phases), drop_refused=False).run()
    return taken


def assert_refused(protocol: Protocol, engine: Engine, state: dict, what: str) -> None:
    with pytest.raises(InvalidMessage):
        protocol.restore_engine(engine.run, state)
        pytest.fail(f"{what}: restored")


def _other_type(value: object) -> object:
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, list):
        return b""
    return value.astype(np.float64) if value.size else np.zeros(3, np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_a_truncated_extended_or_retyped_state_is_refused_at_every_point_of_a_run(name):
    protocol = protocol_of(name)
    checked = 0
    for where, engine, state in states_along_a_run(name):
        assert state["format"] == STATE_FORMAT
        for field in state:
            truncated = {key: value for key, value in state.items() if key != field}
            assert_refused(protocol, engine, truncated, f"{where} without {field!r}")
            assert_refused(protocol, engine, {**state, field: _other_type(state[field])},
                           f"{where} with {field!r} retyped")
            checked += 2
        assert_refused(protocol, engine, {**state, "extra": 0}, f"{where} with an extra field")
        assert_refused(protocol, engine, {**state, "position": len(protocol.phases)}, f"{where}, unknown phase")
        assert_refused(protocol, engine, {**state, "position": -2}, f"{where}, phase before the first")
        assert_refused(protocol, engine, {**state, "status": "paused"}, f"{where}, unknown status")
        assert_refused(protocol, engine, {**state, "format": "securefl/engine-state/v0"}, f"{where}, old format")
        assert_refused(protocol, engine, {**state, "run": bytes(32)}, f"{where}, another run")
        assert_refused(protocol, engine, {**state, "party": state["party"] + "0"}, f"{where}, another party")
        assert_refused(protocol, engine, {**state, "answered": ["client/9"]}, f"{where}, a stranger answered")
        flipped = "aborted" if state["status"] != "aborted" else "active"
        assert_refused(protocol, engine, {**state, "status": flipped}, f"{where}, status without its reason")
        checked += 10
    assert checked


def test_a_state_is_refused_under_another_run_and_by_another_kind_of_engine():
    protocol = SecAgg()
    first = protocol.setup(clients=3, vector_length=4, session=os.urandom(16), round=0)
    second = protocol.setup(clients=3, vector_length=4, session=os.urandom(16), round=0)
    state = first.clients[0].state_dict()

    with pytest.raises(InvalidMessage, match="another aggregation"):
        protocol.restore_engine(second.clients[0].run, state)
    with pytest.raises(InvalidMessage, match="'engine' must be one of 'plaintext/client'"):
        Plaintext().restore_engine(first.clients[0].run, state)
    with pytest.raises(ConfigurationError):
        type(first.clients[0]).from_state_dict("not a run", state)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="names no party"):
        protocol.restore_engine(first.clients[0].run, {k: v for k, v in state.items() if k != "party"})


def _secagg_state_after(phase: str, **options):
    protocol = SecAgg(**options)
    inputs = random_inputs(3, 4, 32, seed=6)
    taken = {}

    class Taking(Reloading):
        def reload(self) -> None:
            engine = self.engine
            if engine.party == "client/0" and engine.phase is not None:
                taken.setdefault(engine.phase, engine.state_dict())
            super().reload()

    parties = protocol.setup(clients=3, vector_length=4, session=os.urandom(16), round=0)
    counts: dict[str, int] = {}
    remote = []
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
        remote.append(Taking(protocol, engine, counts))
    Round(parties.server, phases=protocol.phases, transport=InProcessTransport(remote, phases=protocol.phases),
          drop_refused=False).run()
    return protocol, parties.clients[0], taken[phase]


@pytest.mark.parametrize("field", ["share-key", "mask-key"])
@pytest.mark.parametrize("size", [31, 33])
def test_a_secagg_private_key_of_the_wrong_length_is_refused(field, size):
    protocol, engine, state = _secagg_state_after("advertise-keys")
    assert len(state[field]) == 32

    with pytest.raises(InvalidMessage, match=f"{field}.*32 bytes; found {size}"):
        protocol.restore_engine(engine.run, {**state, field: os.urandom(size)})


@pytest.mark.parametrize("size", [31, 33])
def test_a_signing_key_of_the_wrong_length_or_not_the_registered_one_is_refused(size):
    protocol, engine, state = _secagg_state_after("advertise-keys", malicious_server=True)
    assert len(state["signing-key"]) == 32

    with pytest.raises(InvalidMessage, match="signing-key"):
        protocol.restore_engine(engine.run, {**state, "signing-key": os.urandom(size)})
    with pytest.raises(InvalidMessage, match="not the registered key"):
        protocol.restore_engine(engine.run, {**state, "signing-key": os.urandom(32)})
    with pytest.raises(InvalidMessage, match="signing key exactly in malicious-server mode"):
        protocol.restore_engine(engine.run, {**state, "signing-key": b""})


def test_stored_shares_are_checked_like_shares_that_arrive():
    protocol, engine, state = _secagg_state_after("masked-input")
    held = state["held-shares"]
    assert held and all(len(shares) == len(held[0]) for shares in held)

    moved = [b"\x00\x09" + held[0][2:], *held[1:]]  # the share of another point x
    with pytest.raises(InvalidMessage, match="share"):
        protocol.restore_engine(engine.run, {**state, "held-shares": moved})
    with pytest.raises(InvalidMessage, match="held-shares"):
        protocol.restore_engine(engine.run, {**state, "held-shares": [held[0][:-1], *held[1:]]})
    with pytest.raises(InvalidMessage, match="same length"):
        protocol.restore_engine(engine.run, {**state, "held-shares": held[:-1]})
    with pytest.raises(InvalidMessage, match="masked with"):
        protocol.restore_engine(engine.run, {**state, "masked-with": state["masked-with"][:-1]})
    own = state["own-seed-share"]
    with pytest.raises(InvalidMessage, match="own self-mask share"):
        protocol.restore_engine(engine.run, {**state, "own-seed-share": own[:4] + b"\xff" * (len(own) - 4)})


@pytest.mark.parametrize(("phase", "field", "value"), [
    ("advertise-keys", "self-mask-seed", b"\x07" * 32),  # a seed before share-keys made one
    ("share-keys", "share-key", b"\x07" * 32),  # the share-channel key share-keys let go of
    ("masked-input", "mask-key", b"\x07" * 32),  # the mask key masked-input let go of
    ("masked-input", "input", np.arange(4, dtype=np.uint32)),  # an input after the phase that used it
    ("share-keys", "signed-survivors", [0, 1, 2]),  # a signature never made
])
def test_a_secret_the_phase_does_not_hold_is_refused(phase, field, value):
    protocol, engine, state = _secagg_state_after(phase)

    with pytest.raises(InvalidMessage):
        protocol.restore_engine(engine.run, {**state, field: value})


def test_a_finished_engine_holding_a_secret_is_refused():
    protocol = SecAgg()
    inputs = random_inputs(3, 4, 32, seed=7)
    outcome, _, wrappers = run_reloading(protocol, inputs)
    done = wrappers["client/0"].engine
    state = done.state_dict()
    assert outcome.aggregate.included == (0, 1, 2)
    assert state["status"] == "done" and state["mask-key"] == b"" and state["held-shares"] == []

    restored = protocol.restore_engine(done.run, state)
    assert restored.state is EngineState.DONE
    with pytest.raises(InvalidMessage, match="mask key"):
        protocol.restore_engine(done.run, {**state, "mask-key": os.urandom(32)})


def test_an_active_decryptor_is_restored_only_around_its_key_holder():
    protocol = Paillier(key_bits=KEY_BITS)
    parties = protocol.setup(clients=2, vector_length=3, session=os.urandom(16), round=0)
    decryptor = parties.helpers[0]
    state = decryptor.state_dict()
    assert not any(isinstance(value, bytes) and len(value) >= KEY_BITS // 16 for key, value in state.items()
                   if key != "run")  # the key pair lives in the key holder, not in the engine's state

    with pytest.raises(ConfigurationError, match="key holder"):
        type(decryptor).from_state_dict(decryptor.run, state)
    with pytest.raises(ConfigurationError, match="key holder"):
        Paillier(key_bits=KEY_BITS).restore_engine(decryptor.run, state)  # another key: refused by the run
    assert protocol.restore_engine(decryptor.run, state).state is EngineState.ACTIVE


def test_a_key_holder_round_trips_with_its_record_of_decryptions():
    protocol = Paillier(key_bits=KEY_BITS)
    keys = protocol.keys
    session = os.urandom(16)
    assert keys.claim(session, 4)
    state = keys.state_dict()
    walk_plain(state)

    restored = type(keys).from_state_dict(through_msgpack(state))

    assert restored.public_key == keys.public_key and restored.factors == keys.factors
    assert not restored.claim(session, 4) and restored.claim(session, 5)
    with pytest.raises(InvalidMessage):
        type(keys).from_state_dict({**state, "p": state["q"]})
    with pytest.raises(InvalidMessage):
        type(keys).from_state_dict({**state, "decrypted": [b"short"]})


# -- one party's engine alone ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_a_party_builds_its_own_engine_alone_and_it_answers_as_setup_s_would(name):
    protocol = protocol_of(name)
    session = os.urandom(16)
    parties = protocol.setup(clients=3, vector_length=4, session=session, round=1)
    run = parties.clients[0].run
    if protocol.registers_client_keys:
        with pytest.raises(ConfigurationError):
            protocol.client_engine(0, run)  # without its registered key
        signing_key = parties.clients[0]._signing_key
        alone = protocol.client_engine(0, run, signing_key=signing_key)
    else:
        alone = protocol.client_engine(0, run)
    assert type(alone) is type(parties.clients[0]) and alone.party == "client/0" and alone.run is run
    for helper in parties.helpers:
        assert type(protocol.helper_engine(helper.party, run)) is type(helper)
    assert type(protocol.server_engine(run)) is type(parties.server)
    with pytest.raises(ConfigurationError):
        protocol.client_engine(3, run)
    with pytest.raises(ConfigurationError):
        protocol.helper_engine("aggregator/9", run)


@pytest.mark.parametrize("name", list(CASES))
def test_engines_built_party_by_party_sum_exactly(name):
    protocol = protocol_of(name)
    session = os.urandom(16)
    helpers = [engine.party for engine in protocol.setup(clients=3, vector_length=1, session=session,
                                                         round=0).helpers]
    signing_keys = [SigningKey.generate() for _ in range(3)] if protocol.registers_client_keys else []
    run = protocol.run_parameters(clients=3, vector_length=4, session=session, round=7,
                                  verification_keys=[key.public_bytes for key in signing_keys])
    inputs = [np.arange(4, dtype=np.uint32) * (i + 1) for i in range(3)]
    clients = [protocol.client_engine(i, run, signing_key=signing_keys[i] if signing_keys else None)
               for i in range(3)]
    for engine, vector in zip(clients, inputs):
        engine.provide_input(vector)
    parties = [*clients, *(protocol.helper_engine(party, run) for party in helpers)]

    outcome = Round(protocol.server_engine(run), phases=protocol.phases,
                    transport=InProcessTransport(parties, phases=protocol.phases), drop_refused=False).run()

    assert outcome.aggregate.included == (0, 1, 2)
    assert np.array_equal(outcome.aggregate.total, ring_sum(inputs, range(3), protocol.encoding.ring_bits))


def test_run_parameters_are_what_every_party_derives_alike():
    protocol = SecAgg(neighbors=2)
    session = os.urandom(16)
    one = protocol.run_parameters(clients=6, vector_length=4, session=session, round=3)
    two = protocol.run_parameters(clients=6, vector_length=4, session=session, round=3)
    other = protocol.run_parameters(clients=6, vector_length=4, session=session, round=4)

    assert isinstance(one, RunParameters) and one.fingerprint() == two.fingerprint() != other.fingerprint()
    assert len(one.fingerprint()) == 32
    with pytest.raises(ConfigurationError):
        protocol.run_parameters(clients=6, vector_length=4, session=session, round=3, verification_keys=[b"k" * 32])


def test_the_reader_refuses_what_is_not_plain():
    reader = StateReader({"a": 1, "b": [1, 2], "c": np.zeros(2, np.uint32)}, what="test state")
    assert reader.integer("a", minimum=0, maximum=1) == 1
    with pytest.raises(InvalidMessage, match="unknown field"):
        reader.finish()
    with pytest.raises(InvalidMessage):
        check_plain({"a": object()})
    with pytest.raises(InvalidMessage):
        check_plain({"a": np.zeros((2, 2))})
    with pytest.raises(InvalidMessage):
        check_plain({"a": [1, "x"]})
    with pytest.raises(InvalidMessage):
        check_plain({"a": np.uint32(3)})
