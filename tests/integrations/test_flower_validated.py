"""Validated sharing over Flower: aggregators on their own SuperNodes verify each other's shares, sealed and signed.

The aggregators' verifier shares travel aggregator -> ServerApp -> aggregator
like a client's shares: sealed to the peer's transport key and signed with
the sender's Ed25519 key, published as its parameters (its fingerprint
covers it). The ServerApp runs in the default malicious-server mode.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")

from securefl import ring  # noqa: E402
from securefl.crypto.keys import PUBLIC_KEY_BYTES, SigningKey  # noqa: E402
from securefl.errors import ProtocolAbort  # noqa: E402
from securefl.integrations import flower  # noqa: E402
from securefl.integrations.flower import wire  # noqa: E402
from securefl.protocols import ValidatedSharing  # noqa: E402
from securefl.protocols.validated import Rejection  # noqa: E402
from securefl.protocols.wire import decode_message  # noqa: E402
from tests.integrations.flower_fakes import FakeGrid  # noqa: E402
from tests.integrations.test_flower_malicious_server import error_replies  # noqa: E402
from tests.protocols.helpers import ring_sum  # noqa: E402

pytestmark = pytest.mark.flower

LENGTH = 24
CLIENTS = 4
PROTOCOL = ValidatedSharing()
AGGREGATORS = ("aggregator/0", "aggregator/1")
BOOSTED = 1


def client_input(partition: int) -> np.ndarray:
    """Small coordinates and weight 1; partition BOOSTED far above the norm bound (10^5 ring units each)."""
    rng = np.random.default_rng(np.random.SeedSequence(31, spawn_key=(partition,)))
    values = rng.integers(-50, 51, size=LENGTH - 1) * (2000 if partition == BOOSTED else 1)
    return ring.from_signed(np.append(values, 1), 32)


def input_fn(job):
    return client_input(job.partition)


def expected_sum(partitions) -> np.ndarray:
    return ring_sum([client_input(p) for p in range(CLIENTS)], partitions, 32)


def validated_federation(protocol=PROTOCOL, *, clients=CLIENTS):
    app = flower.make_client_app(protocol, input_fn=input_fn)
    nodes = [({"partition-id": i}, app) for i in range(clients)]
    nodes += [({"securefl-role": role}, app) for role in AGGREGATORS]
    grid = FakeGrid(nodes)
    driver = flower.FlowerDriver(grid, protocol, timeout=2, poll_interval=0.01)
    driver.discover(min_nodes=clients + len(AGGREGATORS))
    return grid, driver


def honest_partitions(driver):
    """The client nodes except the one holding the boosted partition, in cohort order."""
    return [node for node in driver.federation.clients if driver.federation.nodes[node].partition != BOOSTED]


def test_validated_sharing_sums_exactly_over_flower_with_every_exchange_sealed():
    grid, driver = validated_federation()
    clients = honest_partitions(driver)

    aggregation = driver.aggregate(clients, vector_length=LENGTH, round=2)

    partitions = [driver.federation.nodes[node].partition for node in clients]
    assert aggregation.aggregate.included == tuple(range(len(clients))) and aggregation.aggregate.rejected == {}
    assert np.array_equal(aggregation.aggregate.total, expected_sum(partitions))
    for node in driver.federation.helpers.values():
        assert len(driver.federation.nodes[node].parameters) == PUBLIC_KEY_BYTES  # its verification key
    plain, routes = [], []
    for message in grid.seen:
        if message.has_content() and wire.MESSAGES in message.content.array_records:
            for entry in wire.unpack(message.content)[1]:
                if entry.sealed:
                    routes.append(wire.envelope_route(entry.data))
                else:
                    plain.append(decode_message(entry.data).KIND)
    assert "validated-sharing/verifier-share" not in plain
    assert not {"validated-sharing/witness-share", "validated-sharing/proof-share"} & set(plain)
    # each verifier share once from its aggregator and once relayed to the peer
    assert routes.count(("aggregator/1", "aggregator/0")) == routes.count(("aggregator/0", "aggregator/1")) == 2


def test_a_client_proving_a_boosted_update_over_flower_is_rejected_and_the_others_summed():
    grid, driver = validated_federation(PROTOCOL.with_cheating_provers({BOOSTED}))
    clients = sorted(driver.federation.clients, key=lambda node: driver.federation.nodes[node].partition)

    aggregation = driver.aggregate(clients, vector_length=LENGTH, round=1)

    assert aggregation.aggregate.rejected == {BOOSTED: Rejection.NORM_EXCEEDED}
    assert aggregation.aggregate.included == tuple(i for i in range(CLIENTS) if i != BOOSTED)
    assert np.array_equal(aggregation.aggregate.total, expected_sum([i for i in range(CLIENTS) if i != BOOSTED]))


def test_a_verifier_share_the_server_seals_in_an_aggregators_name_is_refused_by_its_peer():
    grid, driver = validated_federation()
    helpers = driver.federation.helpers
    keys = {party: driver.federation.nodes[node].transport_key for party, node in helpers.items()}
    forger = SigningKey.generate()

    def forge(messages):  # replace aggregator/0's verifier share to aggregator/1 by one the server made
        for message in messages:
            if message.metadata.dst_node_id != helpers["aggregator/1"]:
                continue
            control, entries = wire.unpack(message.content)
            forged = []
            for entry in entries:
                if entry.sealed and wire.envelope_route(entry.data) == ("aggregator/1", "aggregator/0"):
                    bound = wire.bound_session(control["session"], control["round-digest"])
                    entry = wire.Entry(wire.seal_to(keys["aggregator/1"], b"\x00" * 64, session=bound,
                                                    round=control["round"], sender="aggregator/0",
                                                    recipient="aggregator/1", signer=forger), sealed=True)
                forged.append(entry)
            wire.pack(control, forged, extra=message.content)

    grid.on_push = forge
    with pytest.raises(ProtocolAbort):
        driver.aggregate(honest_partitions(driver), vector_length=LENGTH, round=1)
    refusals = error_replies(grid, {helpers["aggregator/1"]})
    assert len(refusals) == 1 and "signature" in next(iter(refusals.values()))


def refusals_when_the_server_substitutes(grid, driver, victim: str, watcher: str) -> dict[int, str]:
    """The server relays a verification key of its own for aggregator ``victim``; ``watcher``'s refusals."""
    helpers = driver.federation.helpers
    nodes = dict(driver.federation.nodes)
    nodes[helpers[victim]] = dataclasses.replace(nodes[helpers[victim]], parameters=SigningKey.generate().public_bytes)
    driver.federation = flower.Federation(nodes)
    with pytest.raises(ProtocolAbort):
        driver.aggregate(honest_partitions(driver), vector_length=LENGTH, round=1)
    return error_replies(grid, {helpers[watcher]})


def test_an_aggregator_refuses_a_peer_key_the_server_substitutes_when_its_operator_pinned_the_peer():
    grid, driver = validated_federation()
    helpers = driver.federation.helpers
    peer = driver.federation.nodes[helpers["aggregator/1"]]
    grid.contexts[helpers["aggregator/0"]].node_config["securefl-pins"] = f"aggregator/1={peer.fingerprint}"

    refusals = refusals_when_the_server_substitutes(grid, driver, "aggregator/1", "aggregator/0")

    assert refusals and all("'aggregator/1' does not match the fingerprint" in r for r in refusals.values())


def test_an_aggregator_refuses_a_relayed_key_for_itself_that_is_not_its_own():
    grid, driver = validated_federation()

    refusals = refusals_when_the_server_substitutes(grid, driver, "aggregator/0", "aggregator/0")

    assert refusals and all("another key or parameters for 'aggregator/0'" in r for r in refusals.values())


def test_an_aggregator_refuses_a_helper_list_naming_a_client():
    # A "peer" named client/2 with the server's keys would let the server sign envelopes in client/2's name.
    grid, driver = validated_federation()
    helpers = driver.federation.helpers
    sybil = SigningKey.generate()

    def add_a_peer(messages):
        for message in messages:
            if message.metadata.dst_node_id not in helpers.values():
                continue
            control, entries = wire.unpack(message.content)
            control = {**control, "helpers": [*control["helpers"], "client/2"],
                       "helper-keys": [*control["helper-keys"], control["helper-keys"][0]],
                       "helper-parameters": [*control["helper-parameters"], sybil.public_bytes]}
            wire.pack(control, entries, extra=message.content)

    grid.on_push = add_a_peer
    with pytest.raises(ProtocolAbort):
        driver.aggregate(honest_partitions(driver), vector_length=LENGTH, round=1)
    refusals = error_replies(grid, set(helpers.values()))
    assert len(refusals) == 2 and all("the server lists the helpers" in r for r in refusals.values())
