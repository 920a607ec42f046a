"""SecAgg / SecAgg+ end to end: exact sums under every dropout pattern, uniform masked vectors, costs."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl import ring
from securefl.driver import InProcessTransport, Round
from securefl.encoding import Encoding
from securefl.errors import ProtocolAbort
from securefl.protocols import SecAgg
from securefl.protocols.secagg import MaskedInput
from securefl.protocols.secagg.graph import round_graph
from securefl.protocols.wire import client_id, decode_message
from securefl.simulation import run_protocol, secure_sum, server_saw_individual_updates
from tests.protocols.helpers import random_inputs, ring_sum

SESSION = bytes(range(16))


# --- the reference: which clients the sum must cover, or the phase that must abort ----------


class Abort(Exception):
    def __init__(self, phase):
        self.phase = phase


def expected_outcome(protocol: SecAgg, graph, drop_at: dict, clients: int) -> tuple[int, ...]:
    """The survivors whose sum the round must return, or Abort(phase): the server's rules, written plainly.

    Each phase asks the clients that answered the previous one and whose neighbourhood (themselves
    included) still has threshold live members; a phase with fewer than threshold answers aborts;
    unmasking needs threshold shares of every survivor's and every needed dropped client's secrets.
    Malicious-server SecAgg+ first collects coin commitments and asks every committed client to
    reveal; one that does not aborts advertise-keys, and only then is the graph (``graph``) used.
    """
    phases = protocol.phases
    t = protocol.threshold_for(clients)

    def count(owner, members):
        return sum(1 for v in graph.closed(owner) if v in members)

    def answers(asked, position):
        return {u for u in asked if drop_at.get(u, math.inf) > position}

    live = answers(set(range(clients)), 0)
    survivors = signers = None
    dropped: set[int] = set()
    for position, phase in enumerate(phases):
        if phase == "advertise-keys" and "commit-coins" in phases:
            committed = live
            live = answers(committed, position)
            if len(live) < t or live != committed:
                raise Abort(phase)
            continue
        if position > 0:
            if phase == "consistency-check":
                asked = {u for u in survivors if count(u, survivors) >= t}
            elif phase == "unmasking":
                pool = signers if protocol.malicious_server else survivors
                asked = {u for u in pool if count(u, survivors) >= t and count(u, pool) >= t}
                needs_key = [v for v in dropped if any(u in survivors for u in graph.neighbours(v))]
                if any(count(owner, asked) < t for owner in [*survivors, *needs_key]):
                    raise Abort(phase)
            else:
                asked = {u for u in live if count(u, live) >= t}
            live = answers(asked, position)
        if len(live) < t:
            raise Abort(phase)
        if phase == "share-keys":
            shared = set(live)
        elif phase == "masked-input":
            survivors, dropped = set(live), shared - live
        elif phase == "consistency-check":
            signers = set(live)
    if any(count(owner, live) < t for owner in [*survivors, *needs_key]):
        raise Abort("unmasking")
    return tuple(sorted(survivors))


def run_round(protocol, inputs, drop_at, *, session=SESSION, round=0):
    """One round in process: (aggregate or the ProtocolAbort raised, the graph the server used)."""
    parties = protocol.setup(clients=len(inputs), vector_length=int(inputs[0].size), session=session, round=round)
    for engine, vector in zip(parties.clients, inputs, strict=True):
        engine.provide_input(vector)
    transport = InProcessTransport(parties.clients, phases=protocol.phases,
                                   dropouts={client_id(u): protocol.phases[p] for u, p in drop_at.items()})
    try:
        outcome = Round(parties.server, phases=protocol.phases, transport=transport, drop_refused=False).run()
    except ProtocolAbort as abort:
        return abort, parties.server.graph
    return outcome.aggregate, parties.server.graph


def check_round(protocol, inputs, drop_at, *, session=SESSION, round=0):
    """Run one round and assert its outcome against expected_outcome.

    With a public graph the reference derives it itself; when the clients' coins draw it
    (malicious-server SecAgg+) it takes the graph the server drew (None if the round ended first).
    """
    bits = protocol.encoding.ring_bits
    if "commit-coins" in protocol.phases:
        result, graph = run_round(protocol, inputs, drop_at, session=session, round=round)
    else:
        graph = round_graph(len(inputs), protocol.neighbors, session=session, round=round)
        result = None
    try:
        survivors = expected_outcome(protocol, graph, drop_at, len(inputs))
    except Abort as abort:
        if result is None:
            with pytest.raises(ProtocolAbort, match=f"phase '{abort.phase}'"):
                run_protocol(protocol, inputs, dropouts={u: protocol.phases[p] for u, p in drop_at.items()},
                             session=session, round=round)
        else:
            assert isinstance(result, ProtocolAbort) and f"phase '{abort.phase}'" in str(result), result
        return None
    if result is None:
        result, _, _ = run_protocol(protocol, inputs, dropouts={u: protocol.phases[p] for u, p in drop_at.items()},
                                    session=session, round=round)
    assert not isinstance(result, ProtocolAbort), result
    assert result.included == survivors
    np.testing.assert_array_equal(result.total, ring_sum(inputs, survivors, bits))
    return survivors


def _patterns(clients, phases):
    """Every assignment of 'never drops' or a drop phase to each client."""
    return itertools.product([None, *range(len(phases))], repeat=clients)


# --- exhaustive dropout patterns ---------------------------------------------------------------


@pytest.mark.parametrize(
    "clients, first",
    # Five clients: 5^5 = 3125 rounds, split by client 0's choice so that xdist can share them out.
    [(1, "any"), (2, "any"), (3, "any"), (4, "any"), *((5, choice) for choice in (None, 0, 1, 2, 3))],
)
def test_exact_sum_under_every_dropout_pattern(clients, first):
    # A lone client is refused by default (min_clients=2); opted in, its round is exhaustively right too.
    protocol = SecAgg(min_clients=1) if clients == 1 else SecAgg()
    inputs = random_inputs(clients, 3, 32, seed=clients)
    aborted = set()
    for pattern in _patterns(clients, protocol.phases):
        if first != "any" and pattern[0] != first:
            continue
        drop_at = {u: p for u, p in enumerate(pattern) if p is not None}
        aborted.add(check_round(protocol, inputs, drop_at) is None)
    assert aborted == {True, False}  # both outcomes occur, so neither branch is vacuous


@pytest.mark.parametrize("clients", [1, 2, 3])
def test_exact_sum_under_every_dropout_pattern_malicious_server(clients):
    protocol = SecAgg(malicious_server=True, min_clients=1 if clients == 1 else 2)
    inputs = random_inputs(clients, 3, 32, seed=10 + clients)
    for pattern in _patterns(clients, protocol.phases):
        check_round(protocol, inputs, {u: p for u, p in enumerate(pattern) if p is not None})


@pytest.mark.parametrize("clients", [4, 5])
def test_malicious_server_every_multiset_of_drop_phases(clients):
    # Ed25519 verification makes a malicious-mode round ~4x dearer, so 6^4 and 6^5 assignments would
    # cost minutes. The complete graph is symmetric in the clients up to the signs of the masks, so
    # each multiset of drop phases runs once, on an assignment rotated from one multiset to the next.
    protocol = SecAgg(malicious_server=True)
    inputs = random_inputs(clients, 3, 32, seed=10 + clients)
    choices = [None, *range(len(protocol.phases))]
    for number, multiset in enumerate(itertools.combinations_with_replacement(choices, clients)):
        rotated = multiset[number % clients:] + multiset[: number % clients]
        check_round(protocol, inputs, {u: p for u, p in enumerate(rotated) if p is not None})


def test_sparse_graph_every_dropout_pattern_on_a_ring_of_five():
    protocol = SecAgg(neighbors=2)  # a cycle: each client, two neighbours, threshold 2 of 3
    inputs = random_inputs(5, 3, 32, seed=21)
    phases = protocol.phases
    aborted = 0
    for pattern in itertools.product([None, phases.index("masked-input"), phases.index("unmasking")], repeat=5):
        aborted += check_round(protocol, inputs, {u: p for u, p in enumerate(pattern) if p is not None}) is None
    assert 0 < aborted < 3**5


def test_malicious_sparse_graph_single_and_paired_dropouts_at_every_phase():
    # Malicious-server SecAgg+, n=9, k=4: neighbourhoods of 5, threshold 4. A client silent in
    # commit-coins is left out of the graph's coins; one that committed and is silent in advertise-keys
    # aborts the round (its coin is missing); later dropouts are recovered as usual or abort by the rules.
    protocol = SecAgg(neighbors=4, malicious_server=True)
    inputs = random_inputs(9, 3, 32, seed=31)
    phases = protocol.phases
    completed = {}
    for first in range(len(phases)):
        completed[phases[first]] = check_round(protocol, inputs, {4: first}, round=first) is not None
        for second in range(first, len(phases)):
            check_round(protocol, inputs, {1: first, 7: second}, round=100 + 10 * first + second)
    assert completed == {"commit-coins": True, "advertise-keys": False, "share-keys": True, "masked-input": True,
                         "consistency-check": True, "unmasking": True}


def test_malicious_sparse_graph_sums_exactly_with_dropouts_after_the_reveal():
    # n=40, k=12: neighbourhoods of 13, threshold 9, so any four clients may drop. One never commits;
    # the others drop after revealing their coins: in share-keys, masked-input and unmasking.
    protocol = SecAgg(neighbors=12, malicious_server=True)
    inputs = random_inputs(40, 6, 32, seed=32)
    drop_at = {3: "commit-coins", 11: "share-keys", 22: "masked-input", 35: "unmasking"}
    aggregate, _, _ = run_protocol(protocol, inputs, dropouts=drop_at, session=SESSION, round=9)
    included = tuple(u for u in range(40) if u not in (3, 11, 22))
    assert aggregate.included == included
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, included, 32))


# --- random larger rounds -------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clients=st.integers(2, 50),
    neighbors=st.one_of(st.none(), st.integers(2, 12)),
    malicious=st.booleans(),
    drop_rate=st.sampled_from([0.0, 0.05, 0.15, 0.3]),
    ring_bits=st.sampled_from([20, 32, 64]),
    round=st.integers(0, 2**32),
    data=st.data(),
)
def test_exact_sum_random_rounds(clients, neighbors, malicious, drop_rate, ring_bits, round, data):
    encoding = Encoding(ring_bits=ring_bits, value_bits=8, max_clients=64, max_weight=4)
    protocol = SecAgg(neighbors=neighbors, malicious_server=malicious, encoding=encoding)
    inputs = random_inputs(clients, 5, ring_bits, seed=round % 1000)
    phases = len(protocol.phases)
    flips = data.draw(st.lists(st.floats(0, 1), min_size=clients, max_size=clients))
    where = data.draw(st.lists(st.integers(0, phases - 1), min_size=clients, max_size=clients))
    drop_at = {u: where[u] for u in range(clients) if flips[u] < drop_rate}
    check_round(protocol, inputs, drop_at, round=round)


@pytest.mark.parametrize(
    "encoding",
    [Encoding(ring_bits=4, value_bits=2, max_clients=6, max_weight=1),
     Encoding(ring_bits=7, value_bits=2, max_clients=8, max_weight=1),
     Encoding(ring_bits=63)],
    ids=["4-bit", "7-bit", "63-bit"],
)
def test_rings_narrower_than_their_words(encoding):
    protocol = SecAgg(encoding=encoding, neighbors=3)
    inputs = random_inputs(6, 40, encoding.ring_bits, seed=encoding.ring_bits)
    survivors = check_round(protocol, inputs, {1: protocol.phases.index("masked-input")})
    assert survivors == (0, 2, 3, 4, 5)


def test_sparse_graph_with_many_clients_and_dropouts():
    protocol = SecAgg(neighbors=8)
    rng = np.random.default_rng(5)
    inputs = random_inputs(120, 16, 32, seed=5)
    drop_at = {int(u): int(rng.integers(0, 4)) for u in rng.choice(120, size=12, replace=False)}
    survivors = check_round(protocol, inputs, drop_at, round=3)
    assert survivors is not None and len(survivors) >= 108


# --- floats, weights and the transcript ----------------------------------------------------------


def test_float_sum_and_weights_travel_inside_the_masks():
    rng = np.random.default_rng(3)
    updates = [rng.normal(scale=0.2, size=400) for _ in range(7)]
    weights = [3, 1, 4, 1, 5, 9, 2]
    result = secure_sum(SecAgg(), updates, weights=weights, dropouts={2: "masked-input", 5: "unmasking"}, seed=0)
    included = [0, 1, 3, 4, 5, 6]
    assert result.included == tuple(included)
    assert result.weight_total == sum(weights[i] for i in included)
    expected = sum(weights[i] * updates[i] for i in included)
    assert np.max(np.abs(result.total - expected)) <= Encoding().step * len(included)
    assert not server_saw_individual_updates(result, updates)


def test_server_transcript_holds_only_masked_vectors_and_ciphertexts():
    rng = np.random.default_rng(4)
    updates = [np.clip(rng.normal(scale=0.3, size=300), -1, 1) for _ in range(5)]  # within the clip
    result = secure_sum(SecAgg(neighbors=2), updates, seed=0)
    kinds = {decode_message(entry.payload).KIND for entry in result.transcript}
    assert kinds == {"secagg/key-advertisement", "secagg/encrypted-shares", "secagg/masked-input",
                     "secagg/unmask-shares"}
    assert not server_saw_individual_updates(result, updates)


def test_upload_is_about_one_vector():
    length = 50_000
    rng = np.random.default_rng(5)
    result = secure_sum(SecAgg(), [rng.normal(size=length) * 0.1 for _ in range(10)], seed=0)
    assert result.metrics["bytes_up_per_client"] / (4 * length) < 1.02


# --- masked vectors look uniform ---------------------------------------------------------------


def _masked_vectors(protocol, inputs):
    """The masked vectors as the server received them, by sender."""
    _, transcript, _ = run_protocol(protocol, inputs)
    masked = {}
    for entry in transcript:
        message = decode_message(entry.payload)
        if isinstance(message, MaskedInput):
            masked[message.sender] = np.array(message.vector)
    return masked


@pytest.mark.parametrize("neighbors", [None, 2])
def test_masked_vectors_are_uniform_whatever_the_input(neighbors):
    """Chi-square of every value of an 8-bit ring, and of the top and bottom bytes of a 32-bit ring."""
    length = 256 * 80
    tiny = Encoding(ring_bits=8, value_bits=2, max_clients=8, max_weight=1)
    for protocol, bits in [(SecAgg(neighbors=neighbors, encoding=tiny), 8), (SecAgg(neighbors=neighbors), 32)]:
        dtype = ring.ring_dtype(bits)
        zero = np.zeros(length, dtype=dtype)
        large = np.full(length, (1 << (bits - 1)) - 1, dtype=dtype)
        ramp = (np.arange(length, dtype=np.uint64) % (1 << bits)).astype(dtype)
        masked = _masked_vectors(protocol, [zero, large, ramp, zero])
        for sender, vector in masked.items():
            values = vector.astype(np.uint64)
            for name, bins in [("low byte", values & 0xFF), ("high byte", values >> np.uint64(bits - 8))]:
                counts = np.bincount(bins.astype(np.int64), minlength=256)
                p_value = stats.chisquare(counts).pvalue
                # 16 tests per case: 1e-6 keeps the suite's false-alarm rate negligible, while a
                # biased mask (a short or reused stream) gives p-values far below it.
                assert p_value > 1e-6, f"{sender} {bits}-bit {name}: p = {p_value}"
        zero_masked = masked["client/0"].astype(np.int64)
        # and unrelated to the input: the masked zero vector is not correlated with anything
        assert abs(np.corrcoef(zero_masked, masked["client/2"].astype(np.int64))[0, 1]) < 0.05


def test_masked_vector_of_a_lone_client_is_uniform_too():
    masked = _masked_vectors(SecAgg(min_clients=1), [np.zeros(256 * 64, dtype=np.uint32)])["client/0"]
    counts = np.bincount((masked >> np.uint32(24)).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-6


# --- wired into the command line and FedAvg ----------------------------------------------------


def _run_json(capsys, *arguments):
    from securefl.cli import main

    assert main(["run", *arguments, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_runs_secagg_and_matches_plaintext_exactly(capsys):
    common = ["--clients", "4", "--rounds", "2", "--seed", "1"]
    plain = _run_json(capsys, "--protocol", "plaintext", *common)
    secure = _run_json(capsys, "--protocol", "secagg", *common)
    assert secure["protocol"] == "secagg" and secure["secure"] is True
    assert secure["server_saw_individual_updates"] is False
    # Exact sums of the same encoded updates: the same model, so the same accuracy.
    assert secure["final_accuracy"] == plain["final_accuracy"]


def test_cli_runs_secagg_plus_with_dropouts(capsys):
    summary = _run_json(capsys, "--protocol", "secagg+", "--neighbors", "3", "--clients", "6", "--rounds", "2",
                        "--dropout", "0.3", "--seed", "6")
    assert summary["protocol"] == "secagg+" and "3 neighbours" in summary["description"]
    assert summary["dropped"] > 0
    assert summary["server_saw_individual_updates"] is False


def test_cli_asks_for_the_number_of_neighbours(capsys):
    from securefl.cli import main

    assert main(["run", "--protocol", "secagg+", "--clients", "3", "--rounds", "1", "--quiet"]) == 2
    assert "--neighbors K" in capsys.readouterr().err
