"""The Flower driver against an in-process Grid that serialises like a deployment (``flower_fakes``).

Every Flower message and every node context goes through Flower's protobuf
codec between calls, as between SuperLink, SuperNode and a fresh ClientApp
process, so these tests exercise the engine state kept as plain records and
the wire format the deployment uses, in milliseconds.
"""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict  # noqa: E402

from securefl import ring  # noqa: E402
from securefl.crypto.keys import KeyPair, SigningKey  # noqa: E402
from securefl.encoding import Encoding  # noqa: E402
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort, ProtocolViolation  # noqa: E402
from securefl.integrations import flower  # noqa: E402
from securefl.integrations.flower import SecureFLNode, protocol_from_config, wire  # noqa: E402
from securefl.integrations.flower.ledger import LEDGER_FILE, LEDGER_KEY  # noqa: E402
from securefl.integrations.flower.node import ENGINE_ARRAYS_KEY, ENGINE_KEY, KEY_HOLDER_KEY, STATE_KEY  # noqa: E402
from securefl.protocols import BFV, Paillier, Plaintext, SecretSharing  # noqa: E402
from securefl.protocols.paillier import KeyHolder  # noqa: E402
from securefl.protocols.secagg import SecAgg  # noqa: E402
from securefl.protocols.state import check_plain  # noqa: E402
from securefl.protocols.wire import decode_message  # noqa: E402
from securefl.simulation import server_saw_individual_updates  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402

pytestmark = pytest.mark.flower

LENGTH = 40
CLIENTS = 5


# The driver-level tests run each protocol in the mode they name (over Flower the default is malicious-server
# mode; tests/integrations/test_flower_malicious_server.py tests that default).
def make_client_app(protocol, **options):
    return flower.make_client_app(protocol, semi_honest_server=True, **options)


def FlowerDriver(grid, protocol, **options):  # noqa: N802 - stands in for the class
    return flower.FlowerDriver(grid, protocol, semi_honest_server=True, **options)


def client_input(partition: int, ring_bits: int = 32) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(partition,)))
    return ring.from_signed(rng.integers(-1000, 1001, size=LENGTH), ring_bits)


def input_fn(job):
    return client_input(job.partition, job.protocol.encoding.ring_bits)


def ring_sum(partitions, ring_bits: int = 32) -> np.ndarray:
    total = np.zeros(LENGTH, dtype=ring.ring_dtype(ring_bits))
    for partition in partitions:
        ring.add(total, client_input(partition, ring_bits), ring_bits)
    return total


def helpers_of(protocol) -> list[str]:
    return list(protocol.helper_parties())


def federation(protocol, *, clients: int = CLIENTS, app=None, helper_app=None, node_config=None):
    app = app or make_client_app(protocol, input_fn=input_fn)
    nodes = [({"partition-id": i, **(node_config or {})}, app) for i in range(clients)]
    nodes += [({"securefl-role": party}, helper_app or app) for party in helpers_of(protocol)]
    return FakeGrid(nodes)


PROTOCOLS = {
    "plaintext": Plaintext(),
    "secret-sharing": SecretSharing(aggregators=3),
    "secagg": SecAgg(),
    "secagg+": SecAgg(neighbors=2),
    "secagg-malicious-server": SecAgg(malicious_server=True),
    "paillier": Paillier(key_bits=512, encoding=Encoding(max_clients=8)),
    **({"bfv": BFV(encoding=Encoding(max_clients=8))} if find_spec("tenseal") else {}),
}


# -- exact sums, and what the server saw ---------------------------------------------------


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_sums_exactly_over_flower(name):
    protocol = PROTOCOLS[name]
    grid = federation(protocol)
    driver = FlowerDriver(grid, protocol, timeout=5)

    found = driver.discover(min_nodes=CLIENTS + len(helpers_of(protocol)))
    aggregation = driver.aggregate(found.clients, vector_length=LENGTH, round=3)

    assert aggregation.aggregate.included == tuple(range(CLIENTS))
    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))
    assert aggregation.dropped == {} and aggregation.errors == {}
    assert set(found.helpers) == set(helpers_of(protocol))


@pytest.mark.parametrize("name", PROTOCOLS)
def test_helper_parties_are_the_helpers_setup_makes(name):
    protocol = dataclasses.replace(PROTOCOLS[name])  # setup may deal keys into the protocol object
    made = protocol.setup(clients=CLIENTS, vector_length=1, session=bytes(16), round=0).helpers
    assert protocol.helper_parties() == tuple(engine.party for engine in made)


def server_engine_only(protocol):
    """``protocol`` as the ServerApp's copy: building any client's engine, or all engines at once, fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("the ServerApp built an engine that is not the server's")

    kind = type(protocol)
    only = dataclasses.make_dataclass(kind.__name__, [], bases=(kind,), frozen=True,
                                      namespace={"setup": refuse, "client_engine": refuse})
    return only(**{item.name: getattr(protocol, item.name) for item in dataclasses.fields(protocol) if item.init})


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_server_app_builds_the_server_engine_alone(name):
    protocol = PROTOCOLS[name]
    grid = federation(protocol)
    driver = FlowerDriver(grid, server_engine_only(protocol), timeout=5)
    driver.discover(min_nodes=CLIENTS + len(helpers_of(protocol)))

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_server_transcript_reveals_an_update_only_for_the_plaintext_baseline(name):
    protocol = PROTOCOLS[name]
    grid = federation(protocol)
    driver = FlowerDriver(grid, protocol, timeout=5)
    found = driver.discover(min_nodes=CLIENTS + len(helpers_of(protocol)))

    result = driver.aggregate(found.clients, vector_length=LENGTH).result()

    updates = [ring.to_signed(client_input(i), 32).astype(np.float64) for i in range(CLIENTS)]
    assert server_saw_individual_updates(result, updates) is (not protocol.secure)
    assert result.transcript and all(entry.sender.startswith(("client/", "aggregator/", "decryptor"))
                                     for entry in result.transcript)


def test_shares_for_aggregators_cross_the_server_sealed():
    protocol = SecretSharing(aggregators=2)
    grid = federation(protocol)
    driver = FlowerDriver(grid, protocol, timeout=5)
    driver.discover(min_nodes=CLIENTS + 2)

    driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    plain, sealed = [], []
    for message in grid.seen:
        if message.has_content() and wire.MESSAGES in message.content.array_records:
            for entry in wire.unpack(message.content)[1]:
                (sealed if entry.sealed else plain).append(entry.data)
    kinds = {decode_message(data).KIND for data in plain}
    assert not kinds & {"secret-sharing/vector-share", "secret-sharing/seed-share"}
    # each client's two shares, once from the client and once relayed to the aggregator
    assert len(sealed) == 2 * CLIENTS * 2
    with pytest.raises(InvalidMessage):
        decode_message(sealed[0])


def test_paillier_private_key_stays_on_the_decryptor_supernode():
    protocol = PROTOCOLS["paillier"]
    grid = federation(protocol)
    driver = FlowerDriver(grid, protocol, timeout=5)
    driver.discover(min_nodes=CLIENTS + 1)

    session = bytes(range(16))
    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH, session=session, round=3)

    server_keys = aggregation.protocol.keys
    with pytest.raises(ProtocolViolation):
        server_keys.decrypt_raw([1])
    assert protocol.key_holder is None and "keys" not in protocol._cache  # nothing was dealt in the ServerApp
    decryptor = grid.contexts[driver.federation.helpers["decryptor"]]
    stored = KeyHolder.from_state_dict(dict(decryptor.state.config_records[KEY_HOLDER_KEY]))
    assert stored.public_key == server_keys.public_key and stored.can_decrypt
    bound = wire.bound_session(session, wire.content_digest(RecordDict()))  # the session its engine ran under
    assert not stored.claim(bound, 3) and stored.claim(bound, 4)  # its decryption is on record


# -- dropouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["secagg", "secagg+", "secagg-malicious-server"])
@pytest.mark.parametrize("kill_after", ["advertise-keys", "share-keys"])
def test_secagg_recovers_the_exact_sum_of_survivors_when_a_supernode_dies_between_phases(name, kill_after):
    protocol = PROTOCOLS[name]
    grid = federation(protocol)
    victim = 2

    def on_phase_end(report):
        if report.phase == kill_after:
            grid.kill(driver.federation.clients[victim])

    driver = FlowerDriver(grid, protocol, timeout=0.3, on_phase_end=on_phase_end)
    driver.discover(min_nodes=CLIENTS)

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    survivors = [i for i in range(CLIENTS) if i != victim]
    next_phase = protocol.phases[protocol.phases.index(kill_after) + 1]
    assert aggregation.aggregate.included == tuple(survivors)
    assert np.array_equal(aggregation.aggregate.total, ring_sum(survivors))
    assert aggregation.dropped == {driver.federation.clients[victim]: next_phase}
    assert "no reply" in aggregation.errors[driver.federation.clients[victim]]


def test_a_client_without_a_supernode_is_a_dropout_from_the_first_phase():
    protocol = SecAgg()
    grid = federation(protocol, clients=4)
    driver = FlowerDriver(grid, protocol, timeout=1)
    driver.discover(min_nodes=4)
    clients = list(driver.federation.clients)

    aggregation = driver.aggregate([clients[0], None, *clients[1:]], vector_length=LENGTH)

    assert aggregation.aggregate.included == (0, 2, 3, 4)
    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(4)))


def test_too_many_dropouts_abort_with_the_engine_reason():
    protocol = SecAgg()
    grid = federation(protocol)

    def on_phase_end(report):
        if report.phase == "advertise-keys":
            for node in driver.federation.clients[:3]:
                grid.kill(node)

    driver = FlowerDriver(grid, protocol, timeout=0.3, on_phase_end=on_phase_end)
    driver.discover(min_nodes=CLIENTS)
    with pytest.raises(ProtocolAbort, match="share-keys"):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH)


def test_a_node_answering_as_another_client_is_dropped():
    protocol = SecAgg()
    honest = SecureFLNode(protocol, input_fn=input_fn, semi_honest_server=True)

    def impostor(message, context):
        reply = honest(message, context)
        control, entries = wire.unpack(message.content)
        if control.get("party") == "client/3":
            forged = [wire.Entry(data=e.data.replace(b"client/3", b"client/1")) for e in wire.unpack(reply.content)[1]]
            return Message(wire.pack({"op": "phase", "party": "client/3"}, forged), reply_to=message)
        return reply

    grid = federation(protocol, app=make_client_app(protocol, input_fn=input_fn))
    node_of_partition_3 = [n for n, c in grid.contexts.items() if c.node_config.get("partition-id") == 3][0]
    grid.apps[node_of_partition_3] = impostor
    driver = FlowerDriver(grid, protocol, timeout=1)
    driver.discover(min_nodes=CLIENTS)

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    assert 3 not in aggregation.aggregate.included
    assert "sent a message as 'client/1'" in aggregation.errors[node_of_partition_3]
    assert np.array_equal(aggregation.aggregate.total, ring_sum(aggregation.aggregate.included))


# -- helper keys, pins, refusals ------------------------------------------------------------------


def test_clients_refuse_a_helper_whose_fingerprint_differs_from_their_pin():
    protocol = SecretSharing(aggregators=2)
    grid = federation(protocol, node_config={"securefl-pins": "aggregator/0=" + "0" * 32})
    driver = FlowerDriver(grid, protocol, timeout=1)
    driver.discover(min_nodes=CLIENTS + 2)

    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH)
    assert all("fingerprint" in reason for reason in driver_errors(grid))


def driver_errors(grid):
    return [m.error.reason for m in grid.seen if m.has_error()]


def test_a_helper_with_a_key_dir_keeps_its_fingerprint_across_runs_and_pinned_clients_accept_it(tmp_path):
    protocol = PROTOCOLS["paillier"]
    app = make_client_app(protocol, input_fn=input_fn)

    def run(pins: str = ""):
        nodes = [({"partition-id": i, "securefl-pins": pins}, app) for i in range(CLIENTS)]
        nodes.append(({"securefl-role": "decryptor", "securefl-key-dir": str(tmp_path / "keys")}, app))
        driver = FlowerDriver(FakeGrid(nodes), protocol, timeout=5)
        found = driver.discover(min_nodes=CLIENTS + 1)
        decryptor = found.nodes[found.helpers["decryptor"]]
        return driver, found, decryptor.fingerprint

    _, _, first = run()
    driver, found, second = run(pins=f"decryptor={first}")

    aggregation = driver.aggregate(found.clients, vector_length=LENGTH)

    assert second == first
    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["ledger.lock", LEDGER_FILE,
                                                                      "paillier-512.json", "transport.key"]
    assert all((p.stat().st_mode & 0o077) == 0 for p in (tmp_path / "keys").iterdir())


def test_a_protocol_that_needs_a_helper_supernode_says_which_role_to_start():
    protocol = SecretSharing(aggregators=2)
    grid = FakeGrid([({"partition-id": i}, make_client_app(protocol, input_fn=input_fn)) for i in range(3)])
    driver = FlowerDriver(grid, protocol)
    driver.discover(min_nodes=3)
    with pytest.raises(ConfigurationError, match='securefl-role=\\\\?"aggregator/0'):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH)


def test_helpers_hosted_in_the_server_process_still_sum_exactly():
    protocol = SecretSharing(aggregators=2)
    grid = FakeGrid([({"partition-id": i}, make_client_app(protocol, input_fn=input_fn)) for i in range(CLIENTS)])
    driver = FlowerDriver(grid, protocol, host_helpers_in_server=True)
    driver.discover(min_nodes=CLIENTS)

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))


def test_malicious_server_mode_signs_with_node_made_keys_that_key_dir_keeps_and_pins_accept(tmp_path):
    protocol = SecAgg(malicious_server=True)
    app = make_client_app(protocol, input_fn=input_fn)

    def run(pins: str = ""):
        grid = FakeGrid([({"partition-id": i, "securefl-key-dir": str(tmp_path / f"client-{i}"),
                           "securefl-pins": pins}, app) for i in range(CLIENTS)])
        driver = FlowerDriver(grid, protocol, timeout=1)
        return grid, driver, driver.discover(min_nodes=CLIENTS)

    _, _, first = run()
    pins = " ".join(f"client/{info.partition}={info.fingerprint}" for info in first.nodes.values())
    grid, driver, found = run(pins)

    aggregation = driver.aggregate(found.clients, vector_length=LENGTH)

    assert {info.fingerprint for info in found.nodes.values()} == {info.fingerprint for info in first.nodes.values()}
    assert len({info.verification_key for info in found.nodes.values()}) == CLIENTS
    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))
    assert "consistency-check" in aggregation.protocol.phases and aggregation.errors == {}
    assert all(sorted(p.name for p in (tmp_path / f"client-{i}").iterdir()) == ["ledger.lock", LEDGER_FILE,
                                                                                 "signing.key"]
               for i in range(CLIENTS))
    assert all((tmp_path / f"client-{i}" / "signing.key").stat().st_mode & 0o077 == 0 for i in range(CLIENTS))


def test_a_server_that_substitutes_a_client_verification_key_is_refused_by_pinning_clients(tmp_path):
    protocol = SecAgg(malicious_server=True)
    app = make_client_app(protocol, input_fn=input_fn)
    nodes = [({"partition-id": i, "securefl-key-dir": str(tmp_path / f"client-{i}")}, app) for i in range(CLIENTS)]
    genuine = FlowerDriver(FakeGrid(nodes), protocol).discover(min_nodes=CLIENTS)
    pins = " ".join(f"client/{info.partition}={info.fingerprint}" for info in genuine.nodes.values())
    grid = FakeGrid([({**config, "securefl-pins": pins}, app) for config, app in nodes])
    driver = FlowerDriver(grid, protocol, timeout=1)
    found = driver.discover(min_nodes=CLIENTS)
    victim = found.clients[2]
    # The server relays a key of its own for client/2, so that it could sign as client/2.
    found.nodes[victim] = dataclasses.replace(found.nodes[victim], verification_key=SigningKey.generate().public_bytes)

    with pytest.raises(ProtocolAbort):
        driver.aggregate(found.clients, vector_length=LENGTH)

    assert driver.last_dropped == {node: "advertise-keys" for node in found.clients}
    reasons = driver_errors(grid)
    assert len(reasons) == CLIENTS
    assert sum("client/2 does not match any fingerprint this node pinned" in r for r in reasons) == CLIENTS - 1
    assert sum("not this node's own" in r for r in reasons) == 1


def test_without_pins_a_substituted_key_drops_only_its_client_and_the_sum_stays_exact():
    protocol = SecAgg(malicious_server=True)
    grid = federation(protocol, clients=CLIENTS)
    driver = FlowerDriver(grid, protocol, timeout=1)
    found = driver.discover(min_nodes=CLIENTS)
    victim = found.clients[1]
    found.nodes[victim] = dataclasses.replace(found.nodes[victim], verification_key=SigningKey.generate().public_bytes)

    aggregation = driver.aggregate(found.clients, vector_length=LENGTH)

    assert aggregation.aggregate.included == (0, 2, 3, 4)
    assert np.array_equal(aggregation.aggregate.total, ring_sum([0, 2, 3, 4]))
    assert "not this node's own" in aggregation.errors[victim]


def test_a_semi_honest_node_is_left_out_of_a_malicious_server_federation_at_discovery():
    grid = FakeGrid([({"partition-id": 0}, make_client_app(SecAgg(), input_fn=input_fn)),
                     ({"partition-id": 1}, make_client_app(SecAgg(malicious_server=True), input_fn=input_fn))])
    driver = FlowerDriver(grid, SecAgg(malicious_server=True))
    found = driver.discover(min_nodes=2)
    assert len(found.clients) == 1
    assert "without malicious_server=True" in next(iter(driver.discovery_failures.values()))


def _registered(keys, signing_keys=None, clients=3):
    return SecAgg(malicious_server=True).setup_registered(
        clients=clients, vector_length=4, session=bytes(16), round=0, verification_keys=keys,
        signing_keys=signing_keys or {})


def test_setup_registered_builds_only_the_engines_whose_signing_keys_it_holds():
    signers = [SigningKey.generate() for _ in range(3)]
    keys = [key.public_bytes for key in signers]

    parties = _registered(keys, {1: signers[1]})

    assert [engine.party for engine in parties.clients] == ["client/1"]
    assert _registered(keys).clients == []


@pytest.mark.parametrize("case", ["31 bytes", "33 bytes", "not bytes", "too few", "too many", "duplicate",
                                  "foreign signer", "index out of range", "semi-honest"])
def test_setup_registered_refuses_malformed_keys_with_a_typed_error(case):
    signers = [SigningKey.generate() for _ in range(3)]
    keys = [key.public_bytes for key in signers]
    signing_keys = {0: signers[0]}
    if case == "31 bytes":
        keys[1] = keys[1][:31]
    elif case == "33 bytes":
        keys[1] = keys[1] + b"\0"
    elif case == "not bytes":
        keys[1] = keys[1].hex()
    elif case == "too few":
        keys = keys[:2]
    elif case == "too many":
        keys = keys + [SigningKey.generate().public_bytes]
    elif case == "duplicate":
        keys[2] = keys[1]
    elif case == "foreign signer":
        signing_keys = {0: signers[1]}
    elif case == "index out of range":
        signing_keys = {3: signers[0]}
    if case == "semi-honest":
        with pytest.raises(ConfigurationError):
            SecAgg().setup_registered(clients=3, vector_length=4, session=bytes(16), round=0,
                                      verification_keys=keys, signing_keys={})
        return
    with pytest.raises(ConfigurationError):
        _registered(keys, signing_keys)


def test_nodes_configured_for_another_protocol_are_left_out_at_discovery():
    grid = FakeGrid([({"partition-id": 0}, make_client_app(Plaintext(), input_fn=input_fn)),
                     ({"partition-id": 1}, make_client_app(SecAgg(), input_fn=input_fn))])
    driver = FlowerDriver(grid, SecAgg())
    found = driver.discover(min_nodes=2)
    assert len(found.clients) == 1
    assert "plaintext" in next(iter(driver.discovery_failures.values()))


# -- the pieces ------------------------------------------------------------------------------------


def _plain_records(context):
    """Every record a node keeps, as plain dicts (``check_plain`` passes on each)."""
    records = {}
    for name, record in context.state.items():
        assert isinstance(record, (ConfigRecord, ArrayRecord)), f"{name} is a {type(record).__name__}"
        values = {key: value.numpy() for key, value in record.items()} if isinstance(record, ArrayRecord) \
            else dict(record)
        check_plain(values, what=name)
        records[name] = values
    return records


@pytest.mark.parametrize("name", PROTOCOLS)
def test_nodes_keep_their_engines_as_plain_records_between_phases(name):
    protocol = PROTOCOLS[name]
    grid = federation(protocol)
    seen = []

    def on_phase_end(report):
        for node, context in grid.contexts.items():
            seen.append((report.phase, node, _plain_records(context)))

    driver = FlowerDriver(grid, protocol, timeout=5, on_phase_end=on_phase_end)
    driver.discover(min_nodes=CLIENTS + len(helpers_of(protocol)))

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))
    engines = [records[ENGINE_KEY] for _, _, records in seen if ENGINE_KEY in records and records[ENGINE_KEY]]
    assert engines and all(engine["format"] == "securefl/engine-state/v1" for engine in engines)
    assert all(set(records) <= {STATE_KEY, ENGINE_KEY, ENGINE_ARRAYS_KEY, KEY_HOLDER_KEY, LEDGER_KEY}
               for _, _, records in seen)
    assert not any("pickle" in records.get(STATE_KEY, {}) for _, _, records in seen)


def test_a_secagg_client_between_phases_holds_its_mask_key_as_raw_bytes_and_its_input_as_an_array():
    protocol = SecAgg(malicious_server=True)
    grid = federation(protocol)
    stored = {}

    def on_phase_end(report):
        if report.phase == "advertise-keys":
            stored.update(_plain_records(grid.contexts[driver.federation.clients[0]]))

    driver = FlowerDriver(grid, protocol, timeout=5, on_phase_end=on_phase_end)
    driver.discover(min_nodes=CLIENTS)
    driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    engine, arrays = stored[ENGINE_KEY], stored[ENGINE_ARRAYS_KEY]
    assert engine["engine"] == "secagg/client" and engine["party"] == "client/0"
    assert engine["position"] == 0 and engine["status"] == "active"
    assert len(engine["mask-key"]) == len(engine["share-key"]) == len(engine["signing-key"]) == 32
    assert np.array_equal(arrays["input"], client_input(0))
    assert len(stored[STATE_KEY]["signing-key"]) == 32 and stored[STATE_KEY]["party"] == "client/0"


@pytest.mark.parametrize("tamper", ["31-byte mask key", "unknown phase", "extra field", "truncated",
                                    "another run", "node record"])
def test_a_node_whose_stored_state_was_tampered_with_refuses_and_the_round_goes_on_without_it(tamper):
    protocol = SecAgg()
    grid = federation(protocol)
    victim = {}

    def on_phase_end(report):
        if report.phase != "advertise-keys":
            return
        node = victim["node"] = driver.federation.clients[1]
        state = grid.contexts[node].state
        engine = dict(state.config_records[ENGINE_KEY])
        if tamper == "31-byte mask key":
            engine["mask-key"] = engine["mask-key"][:31]
        elif tamper == "unknown phase":
            engine["position"] = 7
        elif tamper == "extra field":
            engine["mask-key-copy"] = engine["mask-key"]
        elif tamper == "truncated":
            del engine["held-shares"]
        elif tamper == "another run":
            engine["run"] = bytes(32)
        if tamper == "node record":
            node_record = dict(state.config_records[STATE_KEY])
            node_record["digest"] = bytes(31)
            state[STATE_KEY] = ConfigRecord(node_record)
        state[ENGINE_KEY] = ConfigRecord(engine)

    driver = FlowerDriver(grid, protocol, timeout=1, on_phase_end=on_phase_end)
    driver.discover(min_nodes=CLIENTS)

    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH)

    survivors = [0, 2, 3, 4]
    assert aggregation.aggregate.included == tuple(survivors)
    assert np.array_equal(aggregation.aggregate.total, ring_sum(survivors))
    assert "InvalidMessage: stored " in aggregation.errors[victim["node"]]


def test_sealed_envelope_opens_only_for_its_helper_session_and_round_and_signed_by_its_sender():
    helper, client = KeyPair.generate(), SigningKey.generate()
    session = bytes(range(16))
    envelope = wire.seal_to(helper.public_bytes, b"canonical bytes", session=session, round=2,
                            sender="client/1", recipient="aggregator/0", signer=client)
    keys = {"client/1": client.public_bytes}.__getitem__

    assert wire.open_envelope(envelope, helper, session=session, round=2, recipient="aggregator/0",
                              sender_keys=keys) == ("client/1", b"canonical bytes")
    assert wire.envelope_route(envelope) == ("aggregator/0", "client/1")
    with pytest.raises(InvalidMessage):
        wire.open_envelope(envelope, helper, session=session, round=3, recipient="aggregator/0", sender_keys=keys)
    with pytest.raises(InvalidMessage):
        wire.open_envelope(envelope, KeyPair.generate(), session=session, round=2, recipient="aggregator/0",
                           sender_keys=keys)
    with pytest.raises(InvalidMessage, match="signature"):  # sealed by anyone, but signed by another key
        wire.open_envelope(envelope, helper, session=session, round=2, recipient="aggregator/0",
                           sender_keys={"client/1": SigningKey.generate().public_bytes}.__getitem__)
    for position in (-1, -70):  # the signature's last byte, the ciphertext's
        tampered = envelope[:position] + bytes([envelope[position] ^ 1]) + envelope[position + 1:] if position != -1 \
            else envelope[:-1] + bytes([envelope[-1] ^ 1])
        with pytest.raises(InvalidMessage):
            wire.open_envelope(tampered, helper, session=session, round=2, recipient="aggregator/0", sender_keys=keys)


def test_protocol_from_run_config():
    protocol = protocol_from_config({"protocol": "secagg+", "neighbors": 4, "threshold": "", "ring-bits": 40,
                                     "rounds": 3, "output-dir": "x"})
    assert protocol.name == "secagg+" and protocol.neighbors == 4 and protocol.encoding.ring_bits == 40
    paillier = protocol_from_config({"protocol": "paillier", "key-bits": 1024, "max-clients": 8})
    assert paillier.key_bits == 1024 and paillier.encoding.max_clients == 8
    with pytest.raises(ConfigurationError, match="protocol"):
        protocol_from_config({"rounds": 3})


def test_a_node_never_plays_two_parties_of_one_session():
    protocol = Plaintext(min_clients=1)  # the second aggregation keeps one client: what is tested is the node
    grid = federation(protocol, clients=3)
    driver = FlowerDriver(grid, protocol, timeout=1)
    first, second, third = driver.discover(min_nodes=3).clients
    session = bytes(range(16))
    driver.aggregate([first, second], vector_length=LENGTH, session=session)

    # The same session again, with `first` moved from client/0 to client/1.
    aggregation = driver.aggregate([third, first], vector_length=LENGTH, session=session)

    assert aggregation.aggregate.included == (0,)
    assert "this session" in aggregation.errors[first] and "'client/0'" in aggregation.errors[first]
