"""A malicious ServerApp against honest nodes: each attack, driven through the real node code.

The attacker controls everything the server sends and withholds: control
records, cohorts, sessions, rounds, the model each node gets, which replies
it forwards, and it may re-send anything it saw. Every node is honest and
no client colludes. Each test mounts one attack on the in-process Grid
(``flower_fakes``: Flower's own serialisation between calls) and asserts the
refusal, and that the server's view is then no more than an aggregate of at
least the nodes' minimum cohort.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from securefl import ring  # noqa: E402
from securefl.crypto.keys import SigningKey  # noqa: E402
from securefl.encoding import Encoding  # noqa: E402
from securefl.errors import ConfigurationError, ProtocolAbort  # noqa: E402
from securefl.integrations import flower  # noqa: E402
from securefl.integrations.flower import SecureAggregation, securefl_mod, wire  # noqa: E402
from securefl.integrations.flower.fedavg import fedavg_client_app, fedavg_server_app  # noqa: E402
from securefl.integrations.flower.ledger import LEDGER_FILE, Ledger  # noqa: E402
from securefl.protocols import Paillier, Plaintext, SecretSharing  # noqa: E402
from securefl.protocols.secagg import SecAgg  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402
from tests.integrations.test_flower_mod import NODES, initial_arrays, numpy_app  # noqa: E402

pytestmark = pytest.mark.flower

LENGTH = 24
CLIENTS = 3
SHARING = SecretSharing(aggregators=2)  # min_clients = 2
AGGREGATORS = ("aggregator/0", "aggregator/1")


def client_input(partition: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(23, spawn_key=(partition,)))
    return ring.from_signed(rng.integers(-1000, 1001, size=LENGTH), 32)


def input_fn(job):
    return client_input(job.partition)


def ring_sum(partitions) -> np.ndarray:
    total = np.zeros(LENGTH, dtype=np.uint32)
    for partition in partitions:
        ring.add(total, client_input(partition), 32)
    return total


def driver_federation(protocol, helpers=AGGREGATORS, *, clients=CLIENTS, node_config=None, helper_config=None,
                      semi_honest_server=False):
    app = flower.make_client_app(protocol, input_fn=input_fn, semi_honest_server=semi_honest_server)
    nodes = [({"partition-id": i, **(node_config or {})}, app) for i in range(clients)]
    nodes += [({"securefl-role": role, **(helper_config or {})}, app) for role in helpers]
    grid = FakeGrid(nodes)
    driver = flower.FlowerDriver(grid, protocol, timeout=1, poll_interval=0.01, semi_honest_server=semi_honest_server)
    driver.discover(min_nodes=clients + len(helpers))
    return grid, driver


def error_replies(grid, nodes=None) -> dict[int, str]:
    """{node: reason} of the error replies nodes sent (node ids from the message each answers)."""
    sent = {m.metadata.message_id: m.metadata.dst_node_id for m in grid.seen if not m.metadata.reply_to_message_id}
    return {sent[m.metadata.reply_to_message_id]: m.error.reason for m in grid.seen
            if m.has_error() and (nodes is None or sent[m.metadata.reply_to_message_id] in nodes)}


def to_helpers(grid, driver, since=0) -> list[Message]:
    """The protocol messages the server sent the helper nodes (from ``grid.seen[since:]``)."""
    helpers = set(driver.federation.helpers.values())
    return [m for m in grid.seen[since:] if m.metadata.dst_node_id in helpers and not m.metadata.reply_to_message_id
            and wire.unpack(m.content)[0].get("op") == "phase"]


def push_again(grid, messages) -> list[Message]:
    """The server re-sends ``messages`` as they were (new Flower messages, same content); the replies."""
    copies = [Message(RecordDict(dict(m.content.items())), m.metadata.dst_node_id, m.metadata.message_type,
                      group_id=m.metadata.group_id, ttl=60.0) for m in messages]
    return grid.pull_messages(grid.push_messages(copies))


# -- 1. forged shares in honest clients' names ---------------------------------------------------


def forged_envelopes(grid, driver, *, signer: SigningKey, victims=("client/1", "client/2")):
    """on_push: replace the victims' sealed shares to the aggregators with envelopes the server makes itself."""
    helpers = driver.federation.helpers
    keys = {party: driver.federation.nodes[node].transport_key for party, node in helpers.items()}

    def forge(messages):
        for message in messages:
            if message.metadata.dst_node_id not in helpers.values():
                continue
            control, entries = wire.unpack(message.content)
            forged = []
            for entry in entries:
                recipient, sender = wire.envelope_route(entry.data) if entry.sealed else (None, None)
                if sender in victims:
                    bound = wire.bound_session(control["session"], control["round-digest"])
                    entry = wire.Entry(wire.seal_to(keys[recipient], b"\x00" * 64, session=bound,
                                                    round=control["round"], sender=sender, recipient=recipient,
                                                    signer=signer), sealed=True)
                forged.append(entry)
            wire.pack(control, forged, extra=message.content)

    return forge


def test_shares_sealed_in_a_clients_name_by_the_server_are_refused_by_both_aggregators():
    grid, driver = driver_federation(SHARING)
    grid.on_push = forged_envelopes(grid, driver, signer=SigningKey.generate())

    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)

    refusals = error_replies(grid, set(driver.federation.helpers.values()))
    assert len(refusals) == 2 and all("signature" in reason for reason in refusals.values())


@pytest.mark.parametrize("pinned", [False, True])
def test_a_server_listing_its_own_key_for_a_client_is_refused_by_helpers_that_pin_the_clients(pinned):
    # The server lists a key of its own for client/1 (a Sybil in its place) and signs client/1's shares with it.
    grid, driver = driver_federation(SHARING)
    clients = driver.federation.clients
    if pinned:  # the helpers' operators pinned the real clients' fingerprints
        pins = " ".join(f"client/{position}={wire.client_fingerprint(driver.federation.nodes[node].verification_key)}"
                        for position, node in enumerate(clients))
        for helper in driver.federation.helpers.values():
            grid.contexts[helper].node_config["securefl-pins"] = pins
    sybil = SigningKey.generate()
    nodes = dict(driver.federation.nodes)
    nodes[clients[1]] = dataclasses.replace(nodes[clients[1]], verification_key=sybil.public_bytes)
    driver.federation = flower.Federation(nodes)
    grid.on_push = forged_envelopes(grid, driver, signer=sybil, victims=("client/1",))

    if pinned:  # the helpers refuse the list before opening any envelope: no sum
        with pytest.raises(ProtocolAbort):
            driver.aggregate(clients, vector_length=LENGTH, round=1)
        refusals = error_replies(grid, set(driver.federation.helpers.values()))
        assert len(refusals) == 2
        assert all("client/1 does not match any fingerprint" in reason for reason in refusals.values())
    else:  # the real client/1 refuses a list without its own key; only pins stop a Sybil taking its place
        aggregation = driver.aggregate(clients, vector_length=LENGTH, round=1)
        assert "is not this node's own" in aggregation.errors[clients[1]]
        assert np.array_equal(aggregation.aggregate.total, ring_sum([0, 2]))


def test_a_second_envelope_from_one_client_is_refused():
    grid, driver = driver_federation(SHARING)

    def duplicate(messages):
        for message in messages:
            if message.metadata.dst_node_id in driver.federation.helpers.values():
                control, entries = wire.unpack(message.content)
                if entries and entries[0].sealed:
                    wire.pack(control, [*entries, entries[0]], extra=message.content)

    grid.on_push = duplicate
    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)
    assert error_replies(grid, set(driver.federation.helpers.values()))


# -- 2. replay to helpers across sessions, and after a re-discovery --------------------------------


@pytest.mark.parametrize("rediscover", [False, True])
def test_helpers_answer_a_replayed_session_once_whatever_came_in_between(rediscover):
    grid, driver = driver_federation(SHARING)
    clients = driver.federation.clients
    first = driver.aggregate(clients, vector_length=LENGTH, round=1)
    assert np.array_equal(first.aggregate.total, ring_sum(range(CLIENTS)))
    replayed = to_helpers(grid, driver)

    mark = len(grid.seen)
    second = driver.aggregate(clients[1:], vector_length=LENGTH, round=2)  # a detour through another session
    assert np.array_equal(second.aggregate.total, ring_sum(range(1, CLIENTS)))
    if rediscover:
        driver.discover(min_nodes=CLIENTS + 2)

    replies = push_again(grid, replayed)
    assert replies and all(reply.has_error() for reply in replies)
    assert all("already took part in this session" in reply.error.reason for reply in replies)
    assert len(grid.seen) > mark


def test_helpers_refuse_a_second_session_for_a_round_they_answered():
    grid, driver = driver_federation(SHARING)
    clients = driver.federation.clients
    driver.aggregate(clients, vector_length=LENGTH, round=1)

    # Round 1 again, under a fresh session, without client 0: the difference would be client 0's input.
    with pytest.raises(ProtocolAbort):
        driver.aggregate(clients[1:], vector_length=LENGTH, round=1)
    reasons = error_replies(grid)
    assert any("already contributed to round 1" in reason for reason in reasons.values())


def test_the_paillier_decryptor_decrypts_a_replayed_sum_once_even_after_a_rediscovery():
    protocol = Paillier(key_bits=512, encoding=Encoding(max_clients=8))
    grid, driver = driver_federation(protocol, ("decryptor",), semi_honest_server=True)  # its only mode
    driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)
    replayed = to_helpers(grid, driver)

    driver.discover(min_nodes=CLIENTS + 1)  # a re-discovery: the decryptor's node state is made anew
    replies = push_again(grid, replayed)

    assert replies and all(reply.has_error() and "already took part" in reply.error.reason for reply in replies)


# -- 3. a cohort below the nodes' minimum ---------------------------------------------------------


COHORT_CASES = {
    "secret-sharing": (SHARING, AGGREGATORS, False),
    "paillier": (Paillier(key_bits=512, encoding=Encoding(max_clients=8)), ("decryptor",), True),  # its only mode
    "secagg": (SecAgg(), (), False),  # malicious-server mode, the default over Flower
    "secagg+": (SecAgg(neighbors=2), (), False),
    "secagg-semi-honest": (SecAgg(), (), True),
}


@pytest.mark.parametrize("name", COHORT_CASES)
def test_a_cohort_of_one_is_refused_by_the_node_and_the_server_gets_nothing(name):
    protocol, helpers, semi_honest = COHORT_CASES[name]
    grid, driver = driver_federation(protocol, helpers, semi_honest_server=semi_honest)
    driver.protocol = dataclasses.replace(driver.protocol, min_clients=1)  # the server's copy says what it likes
    target = driver.federation.clients[0]
    mark = len(grid.seen)

    with pytest.raises(ProtocolAbort):
        driver.aggregate([target], vector_length=LENGTH, round=1)

    assert "min_clients=2" in error_replies(grid)[target]
    assert not [m for m in grid.seen[mark:] if m.metadata.src_node_id == target and not m.has_error()]


def test_the_wrapper_cannot_sample_a_single_node_into_a_sum():
    grid = FakeGrid([({"partition-id": p}, numpy_app([securefl_mod(SHARING)])) for p in range(NODES)]
                    + [({"securefl-role": role}, numpy_app([securefl_mod(SHARING)])) for role in AGGREGATORS])
    one = FedAvg(fraction_train=0.01, min_train_nodes=1, min_available_nodes=1, fraction_evaluate=0.0)
    secure = SecureAggregation(one, dataclasses.replace(SHARING, min_clients=1), timeout=1, poll_interval=0.01)

    result = secure.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1, timeout=5)

    (report,) = secure.reports
    assert len(report.sampled) == 1 and report.aborted is not None and not report.included
    assert "min_clients=2" in report.errors[report.sampled[0]]
    for theirs, ours in zip(initial_arrays().to_numpy_ndarrays(), result.arrays.to_numpy_ndarrays()):
        np.testing.assert_array_equal(theirs, ours)


# -- 4. different models to different clients -----------------------------------------------------


class SplitModels(FedAvg):
    """A server strategy that gives the target node its own model and the others another."""

    def __init__(self, target_index: int, **options) -> None:
        super().__init__(**options)
        self.target_index = target_index

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(super().configure_train(server_round, arrays, config, grid))
        zero = ArrayRecord([np.zeros_like(a) for a in arrays.to_numpy_ndarrays()])
        return [message if position == self.target_index else
                Message(RecordDict({**dict(message.content.items()), "arrays": zero}), message.metadata.dst_node_id,
                        message.metadata.message_type, group_id=message.metadata.group_id, ttl=message.metadata.ttl)
                for position, message in enumerate(messages)]


class HidesTheSplit(SecureAggregation):
    """The attacker's server: names the majority's digest to the helpers as if every node got that model."""

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(super().configure_train(server_round, arrays, config, grid))
        majority = wire.content_digest(messages[-1].content, skip=("securefl.ticket",))
        self._pending = dataclasses.replace(self._pending, digests=frozenset({majority}))
        return messages


def helper_grid(protocol=SHARING, roles=AGGREGATORS):
    return FakeGrid([({"partition-id": p}, numpy_app([securefl_mod(protocol)])) for p in range(NODES)]
                    + [({"securefl-role": role}, numpy_app([securefl_mod(protocol)])) for role in roles])


@pytest.mark.parametrize("name", ["secret-sharing", "secagg+"])
def test_a_client_given_another_model_than_the_others_is_never_summed_with_them(name):
    protocol, roles = (SHARING, AGGREGATORS) if name == "secret-sharing" else (SecAgg(neighbors=4), ())
    grid = helper_grid(protocol, roles)
    secure = HidesTheSplit(SplitModels(0, min_available_nodes=NODES, fraction_evaluate=0.0), protocol, timeout=1,
                           poll_interval=0.01)

    secure.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1, timeout=5)

    # The target trained on its own model: its session is bound to it, not to the one the helpers were told,
    # so it cannot take part; the sum holds only the others' updates (of the model made to measure).
    (report,) = secure.reports
    target = report.sampled[0]
    assert target not in report.included and len(report.included) == NODES - 1
    assert "another session" in report.errors[target]


def test_an_honest_server_whose_strategy_splits_the_model_aborts_the_round_itself():
    grid = helper_grid()
    secure = SecureAggregation(SplitModels(0, min_available_nodes=NODES, fraction_evaluate=0.0), SHARING, timeout=1,
                               poll_interval=0.01)

    secure.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1, timeout=5)

    (report,) = secure.reports
    assert report.aborted is not None and "one model per round" in report.aborted


# -- 5. re-running a round --------------------------------------------------------------------------


def retrain(secure, grid, server_round, arrays, nodes):
    """The server sends a train message again (as its configure_train makes it) to ``nodes``; the replies."""
    messages = [m for m in secure.configure_train(server_round, arrays, ConfigRecord(), grid)
                if m.metadata.dst_node_id in nodes]
    return list(grid.send_and_receive(messages))


@pytest.mark.parametrize("relabel", [False, True])
def test_a_round_is_summed_once_per_node_even_under_a_new_round_number(relabel):
    grid = helper_grid()
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES, fraction_evaluate=0.0), SHARING, timeout=1,
                               poll_interval=0.01)
    secure.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1, timeout=5)
    first = secure.reports[0]
    assert first.aborted is None and len(first.included) == NODES

    # The same model again to every node but the target; the difference of the sums would be its update.
    others = set(first.included[1:])
    server_round = 2 if relabel else 1
    replies = retrain(secure, grid, server_round, initial_arrays(), others)
    secure.aggregate_train(server_round, replies)

    second = secure.reports[-1]
    assert second.aborted is not None and not second.included
    expected = "this very model" if relabel else "already contributed to round 1"
    assert others <= {node for node, reason in second.errors.items() if expected in reason}


# -- 6. downgrades by run config or by the server's mode -------------------------------------------


def test_the_run_config_cannot_switch_the_nodes_to_plaintext():
    run_config = {"protocol": "plaintext", "clients": 4, "rounds": 1, "seed": 3, "local-epochs": 1, "timeout": 1.0,
                  "min-nodes": 4, "discovery-wait": 1.0}
    node_config = {"securefl-protocol": "secret-sharing", "securefl-aggregators": 2}
    grid = FakeGrid([({"partition-id": p, **node_config}, fedavg_client_app()) for p in range(4)]
                    + [({"securefl-role": role, **node_config}, fedavg_client_app()) for role in AGGREGATORS],
                    run_config=run_config)

    runs = []
    fedavg_server_app(done=lambda fedavg, history: runs.append(history))(grid, flower_context(run_config))

    (history,) = runs
    assert [record.included for record in history.records] == [()] and len(history.aborted_rounds) == 1
    assert not [m for m in grid.seen if m.metadata.reply_to_message_id and m.has_content()
                and wire.unpack(m.content)[1]]  # no node sent a protocol message, let alone its vector


def test_a_server_that_drops_malicious_server_mode_is_refused_by_the_nodes():
    app = flower.make_client_app(SecAgg(), input_fn=input_fn)  # the default: against a malicious server
    grid = FakeGrid([({"partition-id": i}, app) for i in range(CLIENTS)])
    driver = flower.FlowerDriver(grid, SecAgg(), timeout=1, poll_interval=0.01, semi_honest_server=True)

    found = driver.discover(min_nodes=CLIENTS)
    assert found.clients == () and all("malicious_server=True" in reason
                                       for reason in driver.discovery_failures.values())

    # A server that skips the discovery check and runs semi-honest SecAgg anyway: refused at the first phase.
    driver.federation = flower.Federation({node: flower.NodeInfo(node_id=node, role="client", partition=i,
                                                                 verification_key=SigningKey.generate().public_bytes)
                                           for i, node in enumerate(sorted(grid.apps))})
    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)
    assert set(error_replies(grid)) == set(grid.apps)
    assert not [m for m in grid.seen if m.metadata.reply_to_message_id and not m.has_error()
                and wire.unpack(m.content)[1]]  # no protocol message left a node


def flower_context(run_config):
    from flwr.app import Context

    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))


def test_a_server_in_another_protocol_gets_no_reply_in_the_clear_through_the_mod():
    grid = helper_grid()
    secure = SecureAggregation(FedAvg(min_available_nodes=NODES, fraction_evaluate=0.0), Plaintext(), timeout=1,
                               poll_interval=0.01, discovery_wait=1.0)

    secure.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=1, timeout=5)

    assert secure.reports[0].aborted is not None and not secure.reports[0].included
    assert not any(m.content.array_records.get("arrays") for m in grid.seen
                   if m.metadata.reply_to_message_id and m.has_content())


# -- 7. a re-discovery does not reset what a node has done -----------------------------------------


def test_a_rediscovered_node_still_plays_one_party_per_session():
    protocol = SecretSharing(aggregators=2, min_clients=1)  # the second sum keeps one client: the node is tested
    grid, driver = driver_federation(protocol)
    first, second, third = driver.federation.clients
    session = bytes(range(16))
    driver.aggregate([first, second], vector_length=LENGTH, session=session, round=1)

    driver.discover(min_nodes=CLIENTS + 2)  # discovery writes every node's state anew
    with pytest.raises(ProtocolAbort):  # the aggregators refuse the session too
        driver.aggregate([third, first], vector_length=LENGTH, session=session, round=1)

    assert "already took part in this session as 'client/0'" in error_replies(grid)[first]


# -- the ledger itself ------------------------------------------------------------------------------


def test_the_ledger_survives_a_new_run_in_the_key_directory(tmp_path):
    from flwr.app import Context

    first = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    ledger = Ledger.load(first, tmp_path)
    ledger.admit(run=1, round=4, session=bytes(16), party="client/0", digest=bytes(32))
    ledger.save(first)
    assert (tmp_path / LEDGER_FILE).stat().st_mode & 0o777 == 0o600

    fresh = Context(run_id=2, node_id=7, node_config={}, state=RecordDict(), run_config={})
    again = Ledger.load(fresh, tmp_path)
    with pytest.raises(Exception, match="this very model"):
        again.check(run=2, round=1, session=bytes([1]) * 16, party="client/0", digest=bytes(32))
    again.check(run=2, round=4, session=bytes([1]) * 16, party="client/0", digest=bytes([1]) * 32)
    assert Ledger.load(fresh, None).rounds == set()  # without a key directory a new run starts afresh

    (tmp_path / LEDGER_FILE).write_bytes(b"\x93garbage")
    with pytest.raises(Exception, match="not a securefl ledger"):
        Ledger.load(fresh, tmp_path)


# -- 8. SecAgg+ placement ---------------------------------------------------------------------------


def share_graph(grid) -> dict[int, frozenset[int]]:
    """{client u: the clients u sent shares to}: the round's graph, as the nodes drew it."""
    from securefl.protocols.wire import client_index, decode_message

    graph = {}
    for message in grid.seen:
        if message.metadata.reply_to_message_id and message.has_content():
            for entry in wire.unpack(message.content)[1]:
                decoded = decode_message(entry.data)
                if decoded.KIND == "secagg/encrypted-shares":
                    graph[client_index(decoded.sender)] = frozenset(decoded.ciphertexts)
    return graph


def test_a_server_fixing_the_session_and_the_index_assignment_does_not_fix_the_secagg_plus_graph():
    protocol, clients = SecAgg(neighbors=2), 10
    graphs = []
    for _ in range(2):  # the same session, round and assignment, on fresh nodes
        grid, driver = driver_federation(protocol, (), clients=clients)
        aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH, session=bytes(16), round=1)
        assert np.array_equal(aggregation.aggregate.total, ring_sum(range(clients)))
        graph = share_graph(grid)
        assert sorted(graph) == list(range(clients)) and {len(peers) for peers in graph.values()} == {2}
        assert all(u in graph[v] for u, peers in graph.items() for v in peers)  # undirected: both ends agree
        graphs.append(graph)
    # The nodes' coins drew the graph: with the server's choices fixed it still differs (equal w.p. 20/10!).
    assert graphs[0] != graphs[1]


# -- the channel to helpers, without holes ------------------------------------------------------------


def test_an_unsealed_share_in_a_clients_name_is_refused_by_the_helpers():
    from securefl.protocols.secret_sharing import SeedShare, VectorShare

    grid, driver = driver_federation(SHARING)
    helpers = {node: party for party, node in driver.federation.helpers.items()}

    def inject(messages):  # keep client/0's envelopes, add shares in client/1's name, unsealed
        for message in messages:
            party = helpers.get(message.metadata.dst_node_id)
            control, entries = wire.unpack(message.content) if party else ({}, [])
            if not any(entry.sealed for entry in entries):
                continue
            bound = wire.bound_session(control["session"], control["round-digest"])
            header = (bound, control["round"], "upload", "client/1", party)
            forged = (VectorShare(*header, ring_bits=32, vector=np.zeros(LENGTH, dtype=np.uint32))
                      if party == "aggregator/0" else SeedShare(*header, seed=bytes(32)))
            kept = [entry for entry in entries if wire.envelope_route(entry.data)[1] == "client/0"]
            wire.pack(control, [*kept, wire.Entry(forged.to_bytes())], extra=message.content)

    grid.on_push = inject
    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)
    refusals = error_replies(grid, set(helpers))
    assert len(refusals) == 2 and all("unsealed message in the name of 'client/1'" in r for r in refusals.values())


def test_clients_send_a_helper_nothing_when_the_server_hides_its_key():
    grid, driver = driver_federation(SHARING)
    nodes = {node: dataclasses.replace(info, transport_key=b"") if info.role != "client" else info
             for node, info in driver.federation.nodes.items()}
    driver.federation = flower.Federation(nodes)  # the server relays empty helper keys: shares would go in clear
    mark = len(grid.seen)

    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)

    clients = set(driver.federation.clients)
    assert all("sends a helper nothing unsealed" in reason for reason in error_replies(grid, clients).values())
    assert not [m for m in grid.seen[mark:] if m.metadata.src_node_id in clients and not m.has_error()
                and wire.unpack(m.content)[1]]  # no client sent anything: no share in the clear


def test_paillier_runs_over_flower_only_against_a_semi_honest_server():
    protocol = Paillier(key_bits=512, encoding=Encoding(max_clients=8))
    for make in (lambda: securefl_mod(protocol), lambda: flower.FlowerDriver(FakeGrid([]), protocol),
                 lambda: SecureAggregation(FedAvg(), protocol)):
        with pytest.raises(ConfigurationError, match="semi_honest_server=True"):
            make()


@pytest.mark.parametrize("field, value", [("session", None), ("clients", "5"), ("helpers", 7),
                                          ("helper-keys", [b"\x01" * 5])])
def test_a_malformed_control_field_is_refused_with_a_typed_reason(field, value):
    grid, driver = driver_federation(SHARING)

    def corrupt(messages):
        for message in messages:
            control, entries = wire.unpack(message.content)
            if control.get("op") == "phase":
                if value is None:
                    control.pop(field)
                else:
                    control[field] = value
                wire.pack(control, entries, extra=message.content)

    grid.on_push = corrupt
    with pytest.raises(ProtocolAbort):
        driver.aggregate(driver.federation.clients, vector_length=LENGTH, round=1)
    reasons = error_replies(grid).values()
    assert reasons and all("InvalidMessage: malformed driver control record" in reason for reason in reasons)


def test_two_runs_sharing_a_key_directory_record_one_model_once_and_keep_each_others_records(tmp_path):
    from flwr.app import Context

    from securefl.errors import ProtocolViolation
    from securefl.integrations.flower.node import SecureFLNode

    first, second = (Context(run_id=run, node_id=7, node_config={"securefl-key-dir": str(tmp_path)},
                             state=RecordDict(), run_config={}) for run in (1, 2))
    model = bytes([9]) * 32
    # Both runs made their engines (each checked a ledger without the model); the first to release wins.
    SecureFLNode._record_model(first, model)
    with pytest.raises(ProtocolViolation, match="this very model"):
        SecureFLNode._record_model(second, model)

    for context in (first, second):  # each updates the file from what is there now, not from a stale copy
        Ledger.update(context, tmp_path, lambda ledger, run=context.run_id: ledger.admit(
            run=run, round=1, session=bytes([run]) * 16, party="client/0", digest=None))
    fresh = Context(run_id=3, node_id=7, node_config={}, state=RecordDict(), run_config={})
    assert Ledger.load(fresh, tmp_path).rounds == {(1, 1), (2, 1)}
