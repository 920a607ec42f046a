"""Exact distributed noise over SecAgg: whole Sk(V/t) shares, m - t removed, exactly Sk(V) for every survivor count."""

import itertools
import os

import numpy as np
import pytest
from scipy import stats

from securefl import ring
from securefl.crypto import shamir
from securefl.errors import ConfigurationError, LocalProtocolError, ProtocolAbort, ProtocolViolation
from securefl.privacy.accountant import RDPAccountant
from securefl.privacy.plugins import DistributedDP
from securefl.protocols import SecAgg, SecretSharing
from securefl.protocols.secagg import ConsistencyRequest
from securefl.protocols.secagg.messages import SHARE_BYTES
from securefl.protocols.secagg.noise import (
    ExactNoise,
    InputWithNoiseSeed,
    noise_anchor,
    noise_share,
    removal_order,
)
from securefl.protocols.wire import client_id
from securefl.simulation import run_protocol
from tests.protocols.test_secagg_refusals import Round

BITS = 32
V = 24.0
SESSION = bytes(range(16))


def skellam_fit(sample: np.ndarray, variance: float) -> float:
    """p-value of a chi-square goodness-of-fit test of integer ``sample`` against Sk(variance) (mu1 = mu2)."""
    law = stats.skellam(variance / 2, variance / 2)
    low, high = int(law.ppf(1e-3)), int(law.ppf(1 - 1e-3))  # tails pooled: every bin expects >= 5 draws
    edges = np.arange(low, high + 1)
    observed = np.array([np.sum(sample < low), *[np.sum(sample == k) for k in edges], np.sum(sample > high)])
    expected = sample.size * np.array([law.cdf(low - 1), *law.pmf(edges), law.sf(high)])
    return float(stats.chisquare(observed, expected / expected.sum() * observed.sum()).pvalue)


def _seeded_inputs(plain, seed):
    """Ring inputs carrying known noise seeds (as the DP stage hands them over); the seeds."""
    rng = np.random.default_rng(seed)
    seeds = [rng.bytes(32) for _ in plain]
    return [InputWithNoiseSeed.of(ring.from_signed(x, BITS), s) for x, s in zip(plain, seeds)], seeds


# --- the math -------------------------------------------------------------------------------------


def test_sums_of_independent_skellams_are_skellam():
    """Sk(a) + Sk(b) = Sk(a + b): why t whole shares of Sk(V/t) leave an exact Sk(V)."""
    rng = np.random.default_rng(1)
    a, b, size = 3.0, 7.5, 60_000
    first = rng.poisson(a / 2, size) - rng.poisson(a / 2, size)
    total = first + rng.poisson(b / 2, size) - rng.poisson(b / 2, size)
    assert skellam_fit(total, a + b) > 1e-3
    assert skellam_fit(total, 1.3 * (a + b)) < 1e-6  # the test can tell another variance


def test_a_noise_share_is_a_deterministic_function_of_its_seed_round_and_client():
    noise = ExactNoise(variance=V, kept=3, clients=8)
    seed = os.urandom(32)
    first = noise_share(seed, noise, length=1000, round=1, client=2)
    np.testing.assert_array_equal(first, noise_share(seed, noise, length=1000, round=1, client=2))
    for other in (dict(client=3), dict(round=2)):
        assert not np.array_equal(first, noise_share(seed, noise, length=1000, **(dict(round=1, client=2) | other)))
    assert not np.array_equal(first, noise_share(os.urandom(32), noise, length=1000, round=1, client=2))
    sample = np.concatenate([noise_share(bytes([u]) * 32, noise, length=20_000, round=0, client=u) for u in range(3)])
    assert skellam_fit(sample, V / 3) > 1e-4


def test_the_removal_set_is_a_prefix_of_one_public_order_of_the_survivors():
    noise = ExactNoise(variance=V, kept=4, clients=10)
    order = removal_order(range(10), round=5)
    assert sorted(order) == list(range(10)) and order == removal_order(reversed(range(10)), round=5)
    assert order != removal_order(range(10), round=6)  # a fresh order each round
    for m in range(4, 11):
        for survivors in itertools.combinations(range(10), m):
            removed = noise.removals(survivors, round=5)
            assert len(removed) == m - 4 and set(removed) <= set(survivors)
            ranked = [u for u in order if u in survivors]
            assert set(removed) == set(ranked[: m - 4])  # the first m - t of U in the public order


def test_exact_noise_is_validated():
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigurationError, match="noise variance"):
            ExactNoise(variance=bad, kept=1, clients=2)
    with pytest.raises(ConfigurationError, match="more than the clients"):
        ExactNoise(variance=1.0, kept=5, clients=4)
    with pytest.raises(ConfigurationError, match="noise variance"):
        SecAgg(noise_variance=-2.0)
    with pytest.raises(ConfigurationError, match="outside exact noise"):
        ExactNoise(variance=1.0, kept=3, clients=5).removals([0, 1], round=0)
    for bad in (b"\x00" * 31, b"\x00" * 33, "x" * 32):
        with pytest.raises(ConfigurationError, match="noise seed must be 32 bytes"):
            InputWithNoiseSeed.of(np.zeros(3, dtype=np.uint32), bad)


# --- end to end: exact noise whatever the dropouts -------------------------------------------------


def _noisy_round(protocol: SecAgg, clients: int, drops: dict, *, length: int, seed: int):
    """Inputs x_i with seeded noise seeds (the DP stage adds no noise); the unmasked sum minus sum x_i."""
    rng = np.random.default_rng(seed)
    plain = [rng.integers(-1000, 1000, size=length) for _ in range(clients)]
    inputs, _ = _seeded_inputs(plain, seed=seed)
    aggregate, _, _ = run_protocol(protocol, inputs, dropouts=drops, session=SESSION, round=seed)
    exact = ring.from_signed(np.sum([plain[i] for i in aggregate.included], axis=0), BITS)
    return aggregate, ring.to_signed(ring.sub(aggregate.total.copy(), exact, BITS), BITS)


MODES = [dict(), dict(neighbors=4), dict(malicious_server=True)]


@pytest.mark.parametrize("options", MODES, ids=["secagg", "secagg+", "malicious"])
@pytest.mark.parametrize("phase", ["share-keys", "masked-input", "unmasking"])
def test_every_survivor_count_carries_exactly_the_target_noise(options, phase):
    """Dropouts before share-keys, after share-keys (before masked-input) and after masked-input."""
    clients, length = 9, 12_000
    protocol = SecAgg(ring_bits=BITS, noise_variance=V, **options)
    t = protocol.minimum_inputs(clients)
    completed = 0
    for m in range(t, clients + 1):
        dropped = clients - m
        drops = {u: phase for u in range(dropped)}
        if phase == "unmasking":  # it sent its masked input, so it survives; the others drop earlier
            drops = {u: "masked-input" for u in range(dropped)} | ({clients - 1: "unmasking"} if m > t else {})
        try:
            aggregate, noise = _noisy_round(protocol, clients, drops, length=length, seed=m)
        except ProtocolAbort:
            assert options.get("neighbors") and m < clients  # a sparse neighbourhood can lose its threshold
            continue
        completed += 1
        assert len(aggregate.included) == m
        # The variance of a sample of 12,000 Sk(24) is within 6% of 24 with probability > 1 - 1e-5.
        assert noise.var() == pytest.approx(V, rel=0.06)
        assert abs(noise.mean()) < 0.3
        assert skellam_fit(noise, V) > 1e-4
    assert completed >= 2


def test_without_removal_the_v_over_t_shares_over_noise_and_fail_the_fit():
    """The control: V/t per client and nothing removed gives m V / t, which the test above would refuse."""
    clients, length = 9, 12_000
    protocol = SecAgg(ring_bits=BITS)
    t = protocol.minimum_inputs(clients)
    rng = np.random.default_rng(0)
    plain = [rng.integers(-1000, 1000, size=length) for _ in range(clients)]
    noisy = [ring.from_signed(x + rng.poisson(V / t / 2, length) - rng.poisson(V / t / 2, length), BITS)
             for x in plain]
    aggregate, _, _ = run_protocol(protocol, noisy, session=SESSION, round=0)
    exact = ring.from_signed(np.sum(plain, axis=0), BITS)
    noise = ring.to_signed(ring.sub(aggregate.total.copy(), exact, BITS), BITS)
    assert noise.var() == pytest.approx(V * clients / t, rel=0.06)
    assert noise.var() != pytest.approx(V, rel=0.06)
    assert skellam_fit(noise, V) < 1e-6


@pytest.mark.parametrize("phase", ["share-keys", "masked-input", "unmasking"])
def test_exact_sums_under_every_dropout_pattern(phase):
    """Known seeds: the unmasked sum is exactly sum x_i + sum of e_u over U \\ D(U), every survivor set U."""
    clients, length, round = 6, 64, 2
    protocol = SecAgg(ring_bits=BITS, noise_variance=V)
    noise = protocol.exact_noise(clients)
    t = noise.kept
    rng = np.random.default_rng(7)
    plain = [rng.integers(-1000, 1000, size=length) for _ in range(clients)]
    for size in range(0, clients - t + 1):
        for dropped in itertools.combinations(range(clients), size):
            inputs, seeds = _seeded_inputs(plain, seed=size)
            aggregate, _, _ = run_protocol(protocol, inputs, dropouts={u: phase for u in dropped}, session=SESSION,
                                           round=round)
            # A client that drops in unmasking sent its masked input: it survives, unanswering.
            survivors = tuple(u for u in range(clients) if phase == "unmasking" or u not in dropped)
            assert aggregate.included == survivors
            kept = set(survivors) - set(noise.removals(survivors, round=round))
            assert len(kept) == t
            expected = np.sum([plain[u] for u in survivors], axis=0) + np.sum(
                [noise_share(seeds[u], noise, length=length, round=round, client=u) for u in kept], axis=0)
            np.testing.assert_array_equal(aggregate.total, ring.from_signed(expected, BITS))


# --- what a server can and cannot get removed --------------------------------------------------------


def _noise_seeds(game, clients):
    return {u: game.engines[client_id(u)]._noise_seed for u in range(clients)}


@pytest.mark.parametrize("options", MODES, ids=["secagg", "secagg+", "malicious"])
def test_honest_clients_reveal_exactly_the_m_minus_t_seeds_of_d(options):
    clients, length = 8, 8
    for silent in range(0, 3):
        game = Round(clients=clients, length=length, ring_bits=BITS, noise_variance=V, **options)
        noise, threshold, round = game.server._parameters.noise, game.server._parameters.threshold, game.round
        game.until("masked-input")
        seeds = _noise_seeds(game, clients)
        try:
            game.phase("masked-input", silent=tuple(range(silent)))
            if options.get("malicious_server"):
                game.phase("consistency-check")
            replies = game.phase("unmasking")
        except ProtocolAbort:
            assert options.get("neighbors")  # a sparse neighbourhood can lose its threshold
            continue
        survivors = tuple(range(silent, clients))
        removed = set(noise.removals(survivors, round=round))
        assert len(removed) == len(survivors) - noise.kept
        revealed = {}
        for reply in replies:
            with_seed = {owner for owner, share in reply.self_mask_shares.items() if len(share) == 2 * SHARE_BYTES}
            holder = int(reply.sender.split("/")[1])
            assert with_seed == removed & set(reply.self_mask_shares)  # D only, never outside D
            assert not with_seed & set(reply.mask_key_shares)  # never for a dropped client
            assert set(game.server._round_graph().closed(holder)) >= with_seed
            for owner in with_seed:
                revealed.setdefault(owner, []).append(shamir.Share.from_bytes(reply.self_mask_shares[owner][
                    SHARE_BYTES:]))
        assert set(revealed) == removed  # exactly m - t seeds can be reconstructed
        for owner, shares in revealed.items():
            assert shamir.reconstruct(shares[:threshold], threshold=threshold) == seeds[owner]
        assert game.server.result().included == survivors


def test_a_malicious_server_that_inflates_the_survivor_set_is_refused_by_every_honest_client():
    """Calling a client that sent no masked input a survivor would raise m, so m - t, by one."""
    clients = 7
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V, malicious_server=True)
    game.until("masked-input")
    game.phase("masked-input", silent=(6,))  # client/6 shared its seed but sent no masked input
    game.phase("consistency-check")  # they sign {0..5}
    signatures = {int(r.sender.split("/")[1]): r.signature for r in game.replies["consistency-check"]}
    for holder in range(6):
        request = game.unmask(holder, survivors=range(7), dropped=[], signatures=signatures)
        with pytest.raises(ProtocolViolation, match=f"differ from the set client/{holder} signed"):
            game.send(request)


@pytest.mark.parametrize("attempt", ["more-than-m-minus-t", "outside-d"])
def test_a_malicious_server_that_asks_for_more_than_m_minus_t_or_outside_d_is_refused(attempt):
    """The server names no seeds: it can move D only by changing U, and every honest client refuses."""
    clients = 10
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V, malicious_server=True)
    noise = game.server._parameters.noise
    game.until("masked-input")
    game.phase("masked-input", silent=(9,))
    game.phase("consistency-check")  # they sign U = {0..8}
    signed = tuple(range(9))
    removed = set(noise.removals(signed, round=game.round))
    signatures = {int(r.sender.split("/")[1]): r.signature for r in game.replies["consistency-check"]}
    if attempt == "more-than-m-minus-t":  # one more survivor: m - t + 1 shares removed
        survivors, dropped = tuple(range(10)), ()
        assert len(noise.removals(survivors, round=game.round)) == len(removed) + 1
    else:  # pretend the first of the order dropped and bring client/9 back: D(U') leaves D(U)
        first = removal_order(signed, round=game.round)[0]
        survivors, dropped = tuple(sorted(set(signed) - {first} | {9})), (first,)
        assert set(noise.removals(survivors, round=game.round)) - removed
    for holder in range(9):
        request = game.unmask(holder, survivors=survivors, dropped=dropped, signatures=signatures)
        with pytest.raises(ProtocolViolation, match="differ from the set|leaves out"):
            game.send(request)


@pytest.mark.parametrize("options", [dict(), dict(malicious_server=True)], ids=["semi-honest", "malicious"])
def test_a_server_asking_removal_for_a_client_that_never_shared_is_refused(options):
    clients = 7
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V, **options)
    game.until("share-keys")
    game.phase("share-keys", silent=(6,))  # client/6 never shared: calling it a survivor inflates m
    game.phase("masked-input")
    for holder in range(6):
        if options:  # malicious-server mode: the survivor set is refused when the server asks for signatures
            request = ConsistencyRequest(**game.header("consistency-check", holder), survivors=tuple(range(7)))
        else:
            request = game.unmask(holder, survivors=range(7), dropped=[])
        with pytest.raises(ProtocolViolation, match="client/6 as a survivor, but it never shared keys"):
            game.send(request)


def test_a_survivor_set_below_t_removes_nothing_and_is_refused():
    clients = 7
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V, min_clients=2)
    t = game.server._parameters.noise.kept
    game.until("unmasking")
    for holder in range(t - 1):  # a neighbourhood that still has t members, but a survivor set of t - 1
        request = game.unmask(holder, survivors=range(t - 1), dropped=range(t - 1, clients))
        with pytest.raises((ProtocolViolation, ProtocolAbort)):
            game.send(request)


def test_a_corrupted_noise_share_aborts_instead_of_giving_a_wrong_sum():
    clients = 6
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V)
    game.until("masked-input")
    game.phase("masked-input", silent=(0,))  # m = 5 > t: one seed is reconstructed
    requests = game.server.begin_phase("unmasking")
    replies = [r for q in requests for r in game.send(q)]
    survivors = tuple(range(1, clients))
    owner = game.server._parameters.noise.removals(survivors, round=game.round)[0]
    first = next(r for r in replies if owner in r.self_mask_shares)
    share = bytearray(first.self_mask_shares[owner])
    share[-1] ^= 1  # the noise-seed share, still a valid field element
    corrupted = dict(first.self_mask_shares) | {owner: bytes(share)}
    for reply in replies:
        if reply is first:
            reply = type(first)(*[getattr(first, f) for f in ("session", "round", "phase", "sender", "recipient")],
                                self_mask_shares=corrupted, mask_key_shares=first.mask_key_shares)
        game.send(reply)
    with pytest.raises(ProtocolAbort, match="noise seed does not match its anchor"):
        game.server.end_phase("unmasking")


def test_the_anchor_binds_the_seed_session_round_and_client():
    seed = os.urandom(32)
    anchor = noise_anchor(seed, session=SESSION, round=0, client=1)
    assert anchor == noise_anchor(seed, session=SESSION, round=0, client=1)
    assert len({anchor, noise_anchor(seed, session=bytes(16), round=0, client=1),
                noise_anchor(seed, session=SESSION, round=1, client=1),
                noise_anchor(seed, session=SESSION, round=0, client=2),
                noise_anchor(os.urandom(32), session=SESSION, round=0, client=1)}) == 5


# --- the engine API: the seed comes with the input ------------------------------------------------------


def test_the_engine_takes_the_seed_handed_over_with_the_input():
    protocol = SecAgg(ring_bits=BITS, noise_variance=V)
    parties = protocol.setup(clients=5, vector_length=4, session=SESSION, round=0)
    seed = os.urandom(32)
    carried = InputWithNoiseSeed.of(np.zeros(4, dtype=np.uint32), seed)
    parties.clients[0].provide_input(carried)
    assert parties.clients[0]._noise_seed == seed and type(parties.clients[0]._input) is np.ndarray
    parties.clients[1].provide_input(np.zeros(4, dtype=np.uint32), noise_seed=seed)
    assert parties.clients[1]._noise_seed == seed
    for bad in (b"\x00" * 31, b"\x00" * 33):
        with pytest.raises(ConfigurationError, match="noise seed must be 32 bytes"):
            parties.clients[2].provide_input(np.zeros(4, dtype=np.uint32), noise_seed=bad)
    plain = SecAgg(ring_bits=BITS).setup(clients=5, vector_length=4, session=SESSION, round=0)
    with pytest.raises(ConfigurationError, match="no exact noise"):
        plain.clients[0].provide_input(carried)


def test_a_seed_after_share_keys_is_refused():
    game = Round(clients=5, length=4, ring_bits=BITS, noise_variance=V)
    engine = game.clients[0]
    game.until("masked-input")
    with pytest.raises(LocalProtocolError, match="already holds the noise seed"):
        engine.provide_input(np.zeros(4, dtype=np.uint32), noise_seed=os.urandom(32))


def test_without_a_seed_the_engine_draws_one_from_the_os():
    game = Round(clients=5, length=4, ring_bits=BITS, noise_variance=V)
    game.until("masked-input")
    seeds = _noise_seeds(game, 5)
    assert all(isinstance(s, bytes) and len(s) == 32 for s in seeds.values()) and len(set(seeds.values())) == 5


# --- the DP plugin ------------------------------------------------------------------------------------


def test_distributed_dp_over_secagg_is_exact_by_default_and_charges_sk_v():
    dp = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    protocol = dp.bind(SecAgg(), dimension=50, cohort=10)
    assert protocol.noise_variance == pytest.approx(dp.pipeline.central_variance)
    stages = dp.begin_round(0, cohort=10)
    assert stages.shares == SecAgg().minimum_inputs(10) and stages.exact
    assert stages.event == dp.pipeline.event(sample_rate=1.0)  # Sk(V): the event does not depend on m
    assert dp.summary()["exact_noise"] is True


def test_the_exact_stage_adds_no_noise_and_hands_over_a_seed_from_its_generator():
    dp = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20, rng=np.random.default_rng(0))
    dp.bind(SecAgg(), dimension=50, cohort=10)
    stages = dp.begin_round(0, cohort=10)
    update = np.linspace(-0.1, 0.1, 50)
    stage = stages.client_stage(update, rng=np.random.default_rng(5))
    quantised = dp.pipeline.quantise(update, signs=stages.signs, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(np.asarray(stage.vector), ring.from_signed(quantised, 20))
    assert isinstance(stage.vector, InputWithNoiseSeed) and len(stage.vector.noise_seed) == 32
    again = stages.client_stage(update, rng=np.random.default_rng(5))
    assert again.vector.noise_seed == stage.vector.noise_seed  # a seeded generator: a seeded seed
    other = stages.client_stage(update, rng=np.random.default_rng(6))
    assert other.vector.noise_seed != stage.vector.noise_seed


def test_distributed_dp_keeps_v_over_t_where_no_exact_noise_runs():
    dp = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    protocol = dp.bind(SecretSharing(), dimension=50, cohort=10)
    stages = dp.begin_round(0, cohort=10)
    assert stages.shares == protocol.minimum_inputs(10) and not stages.exact
    assert not isinstance(stages.client_stage(np.zeros(50), rng=np.random.default_rng(0)).vector,
                          InputWithNoiseSeed)
    off = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20, exact_noise=False)
    assert off.bind(SecAgg(), dimension=50, cohort=10).noise_variance is None
    gauss = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20, mechanism="ddgauss")
    assert gauss.bind(SecAgg(), dimension=50, cohort=10).noise_variance is None
    early = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    engines = early.protocol_for(SecAgg())  # engines built before bind carry no exact noise
    assert engines.noise_variance is None and early.bind(SecAgg(), dimension=50, cohort=10).noise_variance is None
    assert not early.begin_round(0, cohort=10).exact


def test_exact_noise_epsilon_never_exceeds_the_target():
    for epsilon in (1.0, 4.0, 8.0):
        dp = DistributedDP(target_epsilon=epsilon, delta=1e-5, rounds=10, clip=1.0, bits=20)
        dp.bind(SecAgg(), dimension=100, cohort=12)
        accountant = RDPAccountant()
        accountant.compose(dp.begin_round(0, cohort=12).event, count=10)
        assert accountant.get_epsilon(1e-5) <= epsilon


@pytest.mark.parametrize("dropped", [0, 2, 4])
def test_the_released_noise_is_sk_v_through_the_plugin(dropped):
    """Client stages of the plugin + the protocol: the ring noise on a zero update is Sk(V) for any m."""
    clients = 10
    dp = DistributedDP(noise_multiplier=0.05, rounds=1, clip=1.0, bits=24)
    protocol = dp.bind(SecAgg(), dimension=4096, cohort=clients)
    variance = dp.pipeline.central_variance
    stages = dp.begin_round(0, cohort=clients)
    rng = np.random.default_rng(3)
    vectors = [stages.client_stage(np.zeros(4096), rng=rng).vector for _ in range(clients)]
    aggregate, _, _ = run_protocol(protocol, vectors, dropouts={u: "masked-input" for u in range(dropped)},
                                   session=SESSION, round=0)
    noise = ring.to_signed(aggregate.total, 24)
    assert len(aggregate.included) == clients - dropped
    assert noise.var() == pytest.approx(variance, rel=0.15)


def test_a_seeded_simulation_is_reproducible_whatever_the_session():
    """The released noise depends on the clients' seeded generators and the round only, not the session."""
    clients = 8
    totals = []
    for session in (bytes(16), os.urandom(16)):
        dp = DistributedDP(noise_multiplier=0.5, rounds=1, clip=1.0, bits=24, rng=np.random.default_rng(1))
        protocol = dp.bind(SecAgg(), dimension=256, cohort=clients)
        stages = dp.begin_round(0, cohort=clients)
        rng = np.random.default_rng(9)
        updates = np.random.default_rng(2).normal(scale=0.05, size=(clients, 256))
        vectors = [stages.client_stage(u, rng=rng).vector for u in updates]
        aggregate, _, _ = run_protocol(protocol, vectors, dropouts={1: "masked-input"}, session=session, round=0)
        totals.append(aggregate.total)
    np.testing.assert_array_equal(*totals)
