"""SecAgg's parts: configuration and thresholds, the graph, the fast primitives, labels, masking vectors.

Regenerate the masking known-answer vectors (only after a deliberate change to
the construction) with ``python -m tests.protocols.test_secagg_parts``.
"""

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl import ring
from securefl.crypto import aead, keys, prg
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols import SecAgg
from securefl.protocols.catalog import make_protocol
from securefl.protocols.secagg import labels
from securefl.protocols.secagg.graph import (
    coin_graph,
    coin_seed,
    complete_graph,
    graph_order,
    harary_graph,
    order_from_seed,
    round_graph,
)
from securefl.protocols.secagg.masking import mask_input
from securefl.protocols.secagg.primitives import AgreementKey, MaskAccumulator, agree_many, counters
from tests.vectors import VECTORS_DIR, load_vectors

SESSION = bytes(range(16))


# --- configuration ------------------------------------------------------------------------


def test_defaults_work_for_any_number_of_clients():
    for clients in range(1, 40):
        for protocol in (SecAgg(), SecAgg(malicious_server=True), SecAgg(neighbors=4)):
            t, m = protocol.threshold_for(clients), protocol.group_size(clients)
            bound = 2 / 3 if protocol.malicious_server else 1 / 2
            assert bound * m < t <= m
            assert t == int(bound * m) + 1  # the smallest allowed: tolerates the most dropouts


def test_names_phases_and_description_follow_the_options():
    assert SecAgg().name == "secagg" and SecAgg(neighbors=11).name == "secagg+"
    assert SecAgg().phases == ("advertise-keys", "share-keys", "masked-input", "unmasking")
    assert SecAgg(malicious_server=True).phases == (
        "advertise-keys", "share-keys", "masked-input", "consistency-check", "unmasking")
    assert SecAgg(neighbors=4).phases == SecAgg().phases
    assert SecAgg(neighbors=4, malicious_server=True).phases == (  # the graph is drawn from committed coins
        "commit-coins", "advertise-keys", "share-keys", "masked-input", "consistency-check", "unmasking")
    assert "11 neighbours" in SecAgg(neighbors=11).describe()
    assert "malicious server" in SecAgg(malicious_server=True).describe()
    assert SecAgg().secure


@pytest.mark.parametrize(
    "threshold, clients, malicious, expected",
    [(0.75, 8, False, 6), (1.0, 8, False, 8), (0.51, 10, False, 6), (5, 9, False, 5), (0.7, 10, True, 7),
     (7, 10, True, 7), (0.6, 5, False, 3)],
)
def test_threshold_as_fraction_or_count(threshold, clients, malicious, expected):
    assert SecAgg(threshold=threshold, malicious_server=malicious).threshold_for(clients) == expected


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(threshold=0.5), r"fraction in \(1/2, 1\]"),
        (dict(threshold=0.6, malicious_server=True), r"fraction in \(2/3, 1\]"),
        (dict(threshold=1.5), "fraction"),
        (dict(threshold=float("nan")), "fraction"),
        (dict(threshold=0), "positive count"),
        (dict(threshold=True), "fraction"),
        (dict(threshold=3, neighbors=6), r"1/2 \* 7 < threshold"),
        (dict(threshold=9, neighbors=6), "threshold 9 does not fit"),
        (dict(neighbors=0), "neighbors"),
        (dict(neighbors=2.0), "neighbors"),
        (dict(malicious_server=1), "malicious_server"),
        (dict(ring_bits=16), "can wrap"),  # the default encoding's clients and weights overflow 16 bits
        (dict(ring_bits=20, encoding=Encoding()), "disagrees"),
        (dict(encoding="32"), "Encoding"),
    ],
)
def test_bad_configuration_is_refused_up_front(options, match):
    with pytest.raises(ConfigurationError, match=match):
        SecAgg(**options)


def test_count_threshold_is_checked_against_the_actual_neighbourhood():
    protocol = SecAgg(threshold=3)
    assert protocol.threshold_for(5) == 3
    with pytest.raises(ConfigurationError, match="1/2 \\* 6 < threshold"):
        protocol.setup(clients=6, vector_length=4, session=SESSION, round=0)
    with pytest.raises(ConfigurationError, match="threshold 3 does not fit a neighbourhood of 2"):
        protocol.threshold_for(2)


def test_ring_bits_convenience_and_headroom():
    small = Encoding(ring_bits=20, value_bits=6, max_clients=64, max_weight=8)
    assert SecAgg(ring_bits=20, encoding=small).encoding is small
    assert SecAgg(encoding=small).ring_bits == 20
    assert SecAgg(ring_bits=64).encoding.ring_bits == 64
    with pytest.raises(ConfigurationError, match="max_clients"):
        SecAgg(encoding=Encoding(max_clients=8)).setup(clients=9, vector_length=3, session=SESSION, round=0)


@pytest.mark.parametrize(
    "arguments, match",
    [
        (dict(clients=0), "clients"),
        (dict(vector_length=0), "vector_length"),
        (dict(session=bytes(15)), "session"),
        (dict(round=-1), "round"),
    ],
)
def test_setup_validates_its_arguments(arguments, match):
    options = dict(clients=3, vector_length=4, session=SESSION, round=0)
    options.update(arguments)
    with pytest.raises(ConfigurationError, match=match):
        SecAgg().setup(**options)


def test_catalog_builds_both_variants():
    assert make_protocol("secagg") == SecAgg()
    assert make_protocol("secagg+", neighbors=6) == SecAgg(neighbors=6)
    with pytest.raises(ConfigurationError, match="--neighbors K"):
        make_protocol("secagg+")
    with pytest.raises(ConfigurationError, match="secagg\\+"):
        make_protocol("secagg", neighbors=4)


# --- the communication graph --------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(clients=st.integers(2, 60), neighbors=st.integers(1, 70), round=st.integers(0, 2**64 - 1))
def test_graph_is_regular_symmetric_and_public(clients, neighbors, round):
    graph = round_graph(clients, neighbors, session=SESSION, round=round)
    expected = min(neighbors + (neighbors % 2 and clients % 2), clients - 1)
    for u in range(clients):
        assert u not in graph.neighbours(u)
        assert len(graph.neighbours(u)) == graph.degree == expected
        assert graph.closed(u) == tuple(sorted((u, *graph.neighbours(u))))
        for v in graph.neighbours(u):
            assert u in graph.neighbours(v) and graph.is_neighbour(u, v)
        assert [graph.share_point(u, w) for w in graph.closed(u)] == list(range(1, graph.group_size + 1))
    assert graph.complete == (expected == clients - 1)
    again = round_graph(clients, neighbors, session=SESSION, round=round)
    assert again.edges() == graph.edges()  # every party derives the same graph


def test_graph_is_harary_over_the_round_permutation():
    order = graph_order(12, session=SESSION, round=4)
    assert sorted(order) == list(range(12))
    graph = harary_graph(12, 3, order)  # odd k, even n: ring +-1 and the opposite position
    for position, client in enumerate(order):
        expected = {order[(position + 1) % 12], order[(position - 1) % 12], order[(position + 6) % 12]}
        assert set(graph.neighbours(client)) == expected
    assert graph_order(12, session=SESSION, round=5) != order  # a fresh permutation each round


@settings(max_examples=25, deadline=None)
@given(clients=st.integers(2, 40), neighbors=st.integers(1, 45), data=st.data())
def test_coin_graph_is_the_harary_graph_over_the_order_the_coins_draw(clients, neighbors, data):
    committed = sorted(data.draw(st.sets(st.integers(0, clients - 1), min_size=1)))
    coins = {v: os.urandom(32) for v in committed}
    graph = coin_graph(clients, neighbors, session=SESSION, round=3, coins=coins)
    reference = harary_graph(clients, neighbors, order_from_seed(clients, coin_seed(
        clients, session=SESSION, round=3, coins=coins)))
    assert graph.edges() == reference.edges() and graph.degree == round_graph(
        clients, neighbors, session=SESSION, round=3).degree  # the same shape as the public graph
    assert coin_graph(clients, neighbors, session=SESSION, round=3, coins=dict(coins)).edges() == graph.edges()


def test_coin_seed_binds_session_round_cohort_indices_and_every_coin():
    coins = {0: bytes(32), 2: bytes([1]) * 32, 5: bytes([2]) * 32}
    seed = coin_seed(8, session=SESSION, round=1, coins=coins)
    indices = np.array([0, 2, 5], dtype=">u4").tobytes()
    assert seed == hashlib.sha256(keys.context("securefl/secagg/v1/graph-coins", SESSION, 1, 8, indices,
                                               b"".join(coins[v] for v in (0, 2, 5)))).digest()
    others = [coin_seed(8, session=bytes(16), round=1, coins=coins),
              coin_seed(8, session=SESSION, round=2, coins=coins),
              coin_seed(9, session=SESSION, round=1, coins=coins),
              coin_seed(8, session=SESSION, round=1, coins={0: coins[0], 3: coins[2], 5: coins[5]}),
              coin_seed(8, session=SESSION, round=1, coins={**coins, 2: bytes([3]) * 32})]
    assert len({seed, *others}) == 6
    for bad in ({}, {8: bytes(32)}, {0: bytes(31)}):
        with pytest.raises(ConfigurationError):
            coin_seed(8, session=SESSION, round=1, coins=bad)


def test_complete_graph_and_share_points():
    graph = complete_graph(4)
    assert graph.complete and graph.group_size == 4 and graph.neighbours(2) == (0, 1, 3)
    assert graph.share_point(3, 0) == 1 and graph.count_in_group(1, {0, 3, 9}) == 2
    sparse = round_graph(20, 4, session=SESSION, round=0)
    outsider = next(v for v in range(20) if not sparse.in_group(0, v))
    with pytest.raises(InvalidMessage, match="not in the neighbourhood"):
        sparse.share_point(0, outsider)


# --- fast primitives equal the crypto modules ------------------------------------------------


def test_agree_many_equals_keys_agree_for_every_peer():
    own = AgreementKey.generate()
    peers = {index: AgreementKey.generate() for index in (0, 2, 9, 10, 11, 100)}
    fast = agree_many(own, {i: key.public_bytes for i, key in peers.items()}, own=3, label="x/y",
                      session=SESSION, round=7)
    own_pair = keys.KeyPair.from_private_bytes(own.private_bytes)
    for index, key in peers.items():
        reference = keys.agree(own_pair, key.public_bytes, label="x/y", session=SESSION, round=7,
                               parties=("client/3", f"client/{index}"))
        assert fast[index] == reference
        # and both ends agree
        back = agree_many(key, {3: own.public_bytes}, own=index, label="x/y", session=SESSION, round=7)
        assert back[3] == reference


@pytest.mark.parametrize("bad", [bytes(32), (1).to_bytes(32, "little")])
def test_agree_many_rejects_low_order_points_and_bad_lengths(bad):
    own = AgreementKey.generate()
    with pytest.raises(InvalidMessage, match="client/4's public key is a low-order point"):
        agree_many(own, {4: bad}, own=1, label="l", session=SESSION, round=0)
    with pytest.raises(InvalidMessage, match="31 bytes"):
        agree_many(own, {4: bad[:31]}, own=1, label="l", session=SESSION, round=0)
    with pytest.raises(InvalidMessage, match="itself"):
        agree_many(own, {1: AgreementKey.generate().public_bytes}, own=1, label="l", session=SESSION, round=0)


@pytest.mark.parametrize("ring_bits", [8, 16, 20, 32, 64])
def test_mask_accumulator_equals_prg_expand(ring_bits):
    rng = np.random.default_rng(ring_bits)
    start = ring.from_signed(rng.integers(-1000, 1000, size=1001), ring_bits)
    accumulator = MaskAccumulator(start.copy(), ring_bits)
    seeds = [os.urandom(32) for _ in range(4)]
    before = counters.expansions
    for index, seed in enumerate(seeds):
        accumulator.add(seed, b"label/%d" % index, 1 if index % 2 == 0 else -1)
    expected = start.copy()
    for index, seed in enumerate(seeds):
        term = prg.expand(seed, b"label/%d" % index, 1001, ring_bits)
        (ring.add if index % 2 == 0 else ring.sub)(expected, term, ring_bits)
    np.testing.assert_array_equal(accumulator.finish(), expected)
    assert counters.expansions - before == 4


def test_accumulator_starting_from_a_vector_leaves_it_untouched():
    vector = np.arange(10, dtype=np.uint32)
    seed = os.urandom(32)
    accumulator = MaskAccumulator.starting_from(vector, 32)
    accumulator.add(seed, b"l", -1)
    accumulator.add(seed, b"m", 1)
    expected = vector - prg.expand(seed, b"l", 10, 32) + prg.expand(seed, b"m", 10, 32)
    np.testing.assert_array_equal(accumulator.finish(), expected)
    np.testing.assert_array_equal(vector, np.arange(10))
    np.testing.assert_array_equal(MaskAccumulator.starting_from(vector, 32).finish(), vector)


def test_mask_accumulator_checks_its_arguments():
    with pytest.raises(ConfigurationError, match="contiguous"):
        MaskAccumulator(np.zeros(4, np.uint64), 32)
    accumulator = MaskAccumulator(np.zeros(4, np.uint32), 32)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        accumulator.add(bytes(31), b"l")
    with pytest.raises(ConfigurationError, match="sign must be"):
        accumulator.add(bytes(32), b"l", 0)


def test_labels_equal_the_generic_context_encoding():
    assert labels.pairwise_mask_label(SESSION, 9, 7, 2) == keys.context(
        "securefl/secagg/v1/pairwise-mask", SESSION, 9, 2, 7)
    assert labels.pairwise_mask_label(SESSION, 9, 2, 7) == labels.pairwise_mask_label(SESSION, 9, 7, 2)
    assert labels.self_mask_label(SESSION, 9, 7) == keys.context("securefl/secagg/v1/self-mask", SESSION, 9, 7)
    assert labels.shares_associated_data(SESSION, 9, 3, 12) == aead.associated_data(
        session=SESSION, round=9, sender="client/3", recipient="client/12", label=labels.SHARES_AEAD_LABEL)
    assert labels.shares_associated_data(SESSION, 9, 3, 12) != labels.shares_associated_data(SESSION, 9, 12, 3)
    assert labels.self_mask_label(SESSION, 9, 7) != labels.self_mask_label(SESSION, 10, 7)
    coin = bytes(range(32))
    assert labels.coin_commitment(SESSION, 9, 7, coin) == hashlib.sha256(keys.context(
        "securefl/secagg/v1/graph-coin-commitment", SESSION, 9, 7, coin)).digest()
    assert labels.coin_commitment(SESSION, 9, 7, coin) != labels.coin_commitment(SESSION, 9, 8, coin)  # index bound
    commitments = {1: bytes([1]) * 32, 4: bytes([4]) * 32}
    assert labels.coin_list_digest(SESSION, 9, 6, commitments) == hashlib.sha256(keys.context(
        "securefl/secagg/v1/graph-coin-list", SESSION, 9, 6, bytes([0, 0, 0, 1, 0, 0, 0, 4]),
        commitments[1] + commitments[4])).digest()
    assert labels.coin_list_digest(SESSION, 9, 6, commitments) != labels.coin_list_digest(
        SESSION, 9, 6, {1: commitments[4], 4: commitments[1]})
    for survivors in ((), (0,), (0, 3, 99), tuple(range(300))):
        assert labels.consistency_statement(SESSION, 9, survivors) == keys.context(
            "securefl/secagg/v1/consistency", SESSION, 9, *survivors)
    assert labels.advertise_statement(SESSION, 9, 7, b"s" * 32, b"m" * 32) == keys.context(
        "securefl/secagg/v1/advertise", SESSION, 9, 7, b"s" * 32, b"m" * 32)
    assert labels.advertise_statement(SESSION, 9, 7, b"s" * 32, b"m" * 32, coin_list=b"d" * 32) == keys.context(
        "securefl/secagg/v1/advertise-with-coin-list", SESSION, 9, 7, b"s" * 32, b"m" * 32, b"d" * 32)


# --- masking: known answers and a slow reference ---------------------------------------------


def masking_reference(case: dict) -> list[int]:
    """y_u from the spec, straight from securefl.crypto (keys.agree, prg.expand), integer arithmetic."""
    bits, session, round, client = case["ring_bits"], bytes.fromhex(case["session"]), case["round"], case["client"]
    modulus = 1 << bits
    total = [int(v) for v in case["input"]]
    own = keys.KeyPair.from_private_bytes(bytes.fromhex(case["mask_private_key"]))

    def add(vector, sign):
        for i, value in enumerate(vector):
            total[i] = (total[i] + sign * int(value)) % modulus

    add(prg.expand(bytes.fromhex(case["self_mask_seed"]), keys.context("securefl/secagg/v1/self-mask", session,
                                                                        round, client), len(total), bits), 1)
    for peer in case["peers"]:
        other = peer["client"]
        seed = keys.agree(own, bytes.fromhex(peer["mask_public_key"]), label="securefl/secagg/v1/pairwise-seed",
                          session=session, round=round, parties=(f"client/{client}", f"client/{other}"))
        assert seed.hex() == peer["pairwise_seed"]
        label = keys.context("securefl/secagg/v1/pairwise-mask", session, round, min(client, other), max(client, other))
        add(prg.expand(seed, label, len(total), bits), 1 if client < other else -1)
    return total


try:
    MASKING_CASES = load_vectors("secagg_masking")
except FileNotFoundError:  # only while regenerating them (see the module docstring)
    MASKING_CASES = []


@pytest.mark.parametrize("case", MASKING_CASES, ids=[case["comment"] for case in MASKING_CASES])
def test_masking_known_answer(case):
    bits = case["ring_bits"]
    vector = np.array(case["input"], dtype=np.uint64).astype(ring.ring_dtype(bits))
    masked = mask_input(
        vector,
        client=case["client"],
        self_mask_seed=bytes.fromhex(case["self_mask_seed"]),
        mask_key=AgreementKey(bytes.fromhex(case["mask_private_key"])),
        peer_publics={p["client"]: bytes.fromhex(p["mask_public_key"]) for p in case["peers"]},
        session=bytes.fromhex(case["session"]),
        round=case["round"],
        ring_bits=bits,
    )
    assert [int(v) for v in masked] == case["expected"]
    np.testing.assert_array_equal(vector, np.array(case["input"], dtype=np.uint64).astype(vector.dtype))


@pytest.mark.parametrize("case", MASKING_CASES, ids=[case["comment"] for case in MASKING_CASES])
def test_masking_vectors_match_the_slow_reference(case):
    assert masking_reference(case) == case["expected"]


def test_vectors_cover_every_ring_width_and_both_signs():
    assert {case["ring_bits"] for case in MASKING_CASES} >= {8, 16, 20, 32, 64}
    assert any(p["client"] < c["client"] for c in MASKING_CASES for p in c["peers"])
    assert any(p["client"] > c["client"] for c in MASKING_CASES for p in c["peers"])
    assert any(not case["peers"] for case in MASKING_CASES)


def _generate_cases() -> list[dict]:
    def private(tag: int) -> bytes:
        return bytes((tag + i) % 256 for i in range(32))

    cases = []
    for comment, bits, client, peers, length in [
        ("32-bit ring, three peers on both sides", 32, 2, [0, 5, 7], 12),
        ("8-bit ring, two peers", 8, 1, [0, 3], 16),
        ("16-bit ring, one higher peer", 16, 0, [4], 10),
        ("20-bit ring, words reduced mod 2^20", 20, 6, [1, 9, 10], 10),
        ("64-bit ring, values above 2^53", 64, 3, [2, 4], 6),
        ("self mask only (no peers)", 32, 0, [], 8),
    ]:
        rng = np.random.default_rng(bits + client)
        inputs = [int(v) for v in rng.integers(0, 1 << min(bits, 62), size=length, dtype=np.uint64)]
        case = {
            "comment": comment,
            "ring_bits": bits,
            "session": bytes(range(100, 116)).hex(),
            "round": 7,
            "client": client,
            "input": inputs,
            "self_mask_seed": private(200 + client).hex(),
            "mask_private_key": private(client).hex(),
            "peers": [],
        }
        own = keys.KeyPair.from_private_bytes(private(client))
        for peer in peers:
            public = keys.KeyPair.from_private_bytes(private(peer)).public_bytes
            seed = keys.agree(own, public, label="securefl/secagg/v1/pairwise-seed", session=bytes(range(100, 116)),
                              round=7, parties=(f"client/{client}", f"client/{peer}"))
            case["peers"].append({"client": peer, "mask_public_key": public.hex(), "pairwise_seed": seed.hex()})
        case["expected"] = masking_reference(case)
        cases.append(case)
    return cases


def _write_vectors() -> None:
    document = {
        "description": (
            "SecAgg masking (protocols/secagg.md): y = x + PRG(b, context('securefl/secagg/v1/self-mask', "
            "session, round, client)) + sum over peers of sign * PRG(s, context('securefl/secagg/v1/pairwise-mask', "
            "session, round, low, high)) mod 2^k, sign = +1 if client < peer else -1, s = keys.agree(mask key, "
            "peer public, label 'securefl/secagg/v1/pairwise-seed', session, round, (client/u, client/v)). "
            "Keys, seeds and session are hex; vectors are integers (parse 64-bit values as integers)."
        ),
        "generated_by": "python -m tests.protocols.test_secagg_parts",
        "cases": _generate_cases(),
    }
    path = Path(VECTORS_DIR) / "secagg_masking.json"
    text = json.dumps(document, indent=2)
    # One line per integer list, as in the other vector files.
    text = re.sub(
        r"\[\s*([0-9,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text
    )
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(document['cases'])} cases to {path}", file=sys.stderr)


if __name__ == "__main__":
    _write_vectors()
