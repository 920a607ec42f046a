"""Exact distributed noise over SecAgg: the unmasked sum carries exactly Sk(V) for every survivor count."""

import os

import numpy as np
import pytest
from scipy import stats

from securefl import ring
from securefl.crypto import shamir
from securefl.errors import ConfigurationError, ProtocolAbort, ProtocolViolation
from securefl.privacy.plugins import DistributedDP
from securefl.protocols import SecAgg, SecretSharing
from securefl.protocols.secagg import ConsistencyRequest
from securefl.protocols.secagg.messages import SHARE_BYTES
from securefl.protocols.secagg.noise import (
    NoiseLadder,
    chain_down,
    component,
    excess_noise,
    noise_anchor,
    noise_chain,
)
from securefl.protocols.wire import client_id
from securefl.simulation import run_protocol
from tests.protocols.helpers import ring_sum
from tests.protocols.test_secagg_refusals import Round

BITS = 32
V = 24.0
SESSION = bytes(range(16))


def skellam_fit(sample: np.ndarray, variance: float) -> float:
    """p-value of a chi-square goodness-of-fit test of integer ``sample`` against Sk(variance) (mu1 = mu2)."""
    law = stats.skellam(variance / 2, variance / 2)
    low, high = int(law.ppf(1e-4)), int(law.ppf(1 - 1e-4))
    edges = np.arange(low, high + 1)
    observed = np.array([np.sum(sample < low), *[np.sum(sample == k) for k in edges], np.sum(sample > high)])
    expected = sample.size * np.array([law.cdf(low - 1), *law.pmf(edges), law.sf(high)])
    return float(stats.chisquare(observed, expected / expected.sum() * observed.sum()).pvalue)


# --- the math -------------------------------------------------------------------------------------


def test_the_ladder_telescopes_to_v_over_m_per_survivor():
    ladder = NoiseLadder(variance=V, first=4, clients=11)
    for m in range(4, 12):
        left = sum(ladder.component_variance(k) for k in range(m, 11)) + ladder.base_variance
        assert left * m == pytest.approx(V, rel=1e-12)
    assert sum(ladder.component_variance(k) for k in ladder.levels) + ladder.base_variance == pytest.approx(V / 4)


def test_sums_of_independent_skellams_are_skellam():
    """Sk(a) + Sk(b) = Sk(a + b): why removing components leaves an exact Skellam."""
    rng = np.random.default_rng(1)
    a, b, size = 3.0, 7.5, 60_000
    first = rng.poisson(a / 2, size) - rng.poisson(a / 2, size)
    total = first + rng.poisson(b / 2, size) - rng.poisson(b / 2, size)
    assert skellam_fit(total, a + b) > 1e-3
    assert skellam_fit(total, 1.3 * (a + b)) < 1e-6  # the test can tell another variance


def test_a_component_is_a_deterministic_function_of_its_seed():
    ladder = NoiseLadder(variance=V, first=3, clients=8)
    seed = os.urandom(32)
    first = component(seed, ladder, level=5, length=1000, session=SESSION, round=1, client=2)
    np.testing.assert_array_equal(first, component(seed, ladder, level=5, length=1000, session=SESSION, round=1,
                                                   client=2))
    for other in (dict(level=6), dict(client=3), dict(round=2)):
        options = dict(level=5, session=SESSION, round=1, client=2) | other
        assert not np.array_equal(first, component(seed, ladder, length=1000, **options))


def test_the_chain_goes_down_only_and_ends_at_the_anchor():
    ladder = NoiseLadder(variance=V, first=3, clients=9)
    seeds = noise_chain(os.urandom(32), ladder, session=SESSION, round=0, client=1)
    assert sorted(seeds) == list(ladder.levels)
    assert chain_down(seeds[6], level=6, first=3, session=SESSION, round=0, client=1) == \
        {k: seeds[k] for k in range(3, 7)}
    assert len(set(seeds.values())) == len(seeds)
    anchor = noise_anchor(seeds[3], session=SESSION, round=0, client=1)
    assert anchor != noise_anchor(seeds[3], session=SESSION, round=0, client=2)


def test_the_ladder_is_validated():
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigurationError, match="noise variance"):
            NoiseLadder(variance=bad, first=1, clients=2)
    with pytest.raises(ConfigurationError, match="exceeds the clients"):
        NoiseLadder(variance=1.0, first=5, clients=4)
    with pytest.raises(ConfigurationError, match="noise variance"):
        SecAgg(noise_variance=-2.0)


# --- end to end: exact noise whatever the dropouts -------------------------------------------------


def _noisy_round(protocol: SecAgg, clients: int, drops: dict, *, length: int, seed: int):
    """Inputs x_i + Sk(V/n) (the DP stage's base share); the unmasked sum minus sum x_i over the survivors."""
    rng = np.random.default_rng(seed)
    plain = [rng.integers(-1000, 1000, size=length) for _ in range(clients)]
    base = V / clients
    noisy = [ring.from_signed(x + rng.poisson(base / 2, length) - rng.poisson(base / 2, length), BITS)
             for x in plain]
    aggregate, _, _ = run_protocol(protocol, noisy, dropouts=drops, session=SESSION, round=seed)
    exact = ring.from_signed(np.sum([plain[i] for i in aggregate.included], axis=0), BITS)
    return aggregate, ring.to_signed(ring.sub(aggregate.total.copy(), exact, BITS), BITS)


MODES = [dict(), dict(neighbors=4), dict(malicious_server=True)]


@pytest.mark.parametrize("options", MODES, ids=["secagg", "secagg+", "malicious"])
@pytest.mark.parametrize("phase", ["share-keys", "masked-input", "unmasking"])
def test_every_survivor_count_carries_exactly_the_target_noise(options, phase):
    clients, length = 9, 12_000
    protocol = SecAgg(ring_bits=BITS, noise_variance=V, **options)
    t = protocol.minimum_inputs(clients)
    phases = protocol.phases
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
        assert len(aggregate.included) == m and phase in phases
        # The variance of a sample of 12,000 Sk(24) is within 6% of 24 with probability > 1 - 1e-5.
        assert noise.var() == pytest.approx(V, rel=0.06)
        assert abs(noise.mean()) < 0.3
        assert skellam_fit(noise, V) > 1e-4


def test_without_the_ladder_the_old_share_over_noises():
    """The control: V/t per client gives m V / t, so the test above can tell exact from over-noised."""
    clients, length = 9, 12_000
    protocol = SecAgg(ring_bits=BITS)
    t = protocol.minimum_inputs(clients)
    rng = np.random.default_rng(0)
    plain = [rng.integers(-1000, 1000, size=length) for _ in range(clients)]
    noisy = [ring.from_signed(x + rng.poisson(V / t / 2, length) - rng.poisson(V / t / 2, length), BITS)
             for x in plain]
    aggregate, _, _ = run_protocol(protocol, noisy, session=SESSION, round=0)
    noise = ring.to_signed(ring.sub(aggregate.total.copy(), ring_sum(
        [ring.from_signed(x, BITS) for x in plain], range(clients), BITS), BITS), BITS)
    assert noise.var() == pytest.approx(V * clients / t, rel=0.06)
    assert skellam_fit(noise, V) < 1e-6


def test_exact_noise_rounds_still_give_exact_sums_under_every_dropout_pattern():
    """With the ladder subtracted by hand, each survivor set gives exactly sum x_i (the removal is exact)."""
    import itertools

    clients, length = 6, 64
    protocol = SecAgg(ring_bits=BITS, noise_variance=V)
    t = protocol.minimum_inputs(clients)
    for size in range(0, clients - t + 1):
        for dropped in itertools.combinations(range(clients), size):
            aggregate, noise = _noisy_round(protocol, clients, {u: "masked-input" for u in dropped}, length=length,
                                            seed=size)
            assert aggregate.included == tuple(u for u in range(clients) if u not in dropped)
            assert np.all(np.abs(noise) < 60)  # only Sk(V) left: no mask, no ladder residue


# --- what a server can and cannot get removed --------------------------------------------------------


def _seeds_after_share_keys(game, clients):
    return {u: dict(game.engines[client_id(u)]._noise_seeds) for u in range(clients)}


def test_honest_clients_reveal_exactly_the_seed_the_survivor_count_allows():
    clients = 7
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V)
    ladder = game.server._parameters.noise
    game.phase("advertise-keys")
    game.phase("share-keys")
    seeds = _seeds_after_share_keys(game, clients)
    game.phase("masked-input", silent=(6,))  # m = 6 survivors
    replies = game.phase("unmasking")
    m, threshold = 6, game.server._parameters.threshold
    for reply in replies:
        assert set(reply.self_mask_shares) == set(range(6)) and set(reply.mask_key_shares) == {6}
        assert all(len(share) == 2 * SHARE_BYTES for share in reply.self_mask_shares.values())
    for owner in range(6):
        shares = [shamir.Share.from_bytes(r.self_mask_shares[owner][SHARE_BYTES:]) for r in replies][:threshold]
        revealed = shamir.reconstruct(shares, threshold=threshold)
        assert revealed == seeds[owner][m - 1]  # s_{m-1}: it removes c_t .. c_{m-1} and nothing above
        assert revealed not in {seeds[owner][k] for k in ladder.levels if k != m - 1}
    assert game.server.result().included == tuple(range(6))


def test_at_the_threshold_no_noise_seed_is_revealed():
    clients = 5
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V)
    t = game.protocol.minimum_inputs(clients)
    game.until("masked-input")
    game.phase("masked-input", silent=tuple(range(t, clients)))
    for reply in game.phase("unmasking"):
        assert all(len(share) == SHARE_BYTES for share in reply.self_mask_shares.values())


def test_a_malicious_server_that_inflates_the_survivor_set_is_refused_by_every_honest_client():
    clients = 7
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V, malicious_server=True)
    game.until("masked-input")
    game.phase("masked-input", silent=(6,))  # client/6 shared its seeds but sent no masked input
    game.phase("consistency-check")  # they sign {0..5}
    signatures = {int(r.sender.split("/")[1]): r.signature for r in game.replies["consistency-check"]}
    for holder in range(6):  # asking for m = 7 (more removal) by calling client/6 a survivor
        request = game.unmask(holder, survivors=range(7), dropped=[], signatures=signatures)
        with pytest.raises(ProtocolViolation, match=f"differ from the set client/{holder} signed"):
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


def test_a_corrupted_noise_share_aborts_instead_of_giving_a_wrong_sum():
    clients = 6
    game = Round(clients=clients, length=8, ring_bits=BITS, noise_variance=V)
    game.until("unmasking")
    requests = game.server.begin_phase("unmasking")
    replies = [r for q in requests for r in game.send(q)]
    first = replies[0]
    share = bytearray(first.self_mask_shares[1])
    share[-1] ^= 1  # the noise-seed share, still a valid field element
    corrupted = dict(first.self_mask_shares) | {1: bytes(share)}
    game.send(type(first)(*[getattr(first, f) for f in ("session", "round", "phase", "sender", "recipient")],
                          self_mask_shares=corrupted, mask_key_shares=first.mask_key_shares))
    for reply in replies[1:]:
        game.send(reply)
    with pytest.raises(ProtocolAbort, match="noise seed does not match its anchor"):
        game.server.end_phase("unmasking")


# --- the DP plugin ------------------------------------------------------------------------------------


def test_distributed_dp_over_secagg_is_exact_by_default_and_charges_sk_v():
    dp = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    protocol = dp.bind(SecAgg(), dimension=50, cohort=10)
    assert protocol.noise_variance == pytest.approx(dp.pipeline.central_variance)
    stages = dp.begin_round(0, cohort=10)
    assert stages.shares == 10 and stages.minimum == SecAgg().minimum_inputs(10)
    assert stages.event == dp.pipeline.event(sample_rate=1.0)  # Sk(V): the event does not depend on m
    assert dp.summary()["exact_noise"] is True


def test_distributed_dp_keeps_v_over_t_where_no_ladder_runs():
    dp = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    protocol = dp.bind(SecretSharing(), dimension=50, cohort=10)
    assert dp.begin_round(0, cohort=10).shares == protocol.minimum_inputs(10)
    off = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20, exact_noise=False)
    assert off.bind(SecAgg(), dimension=50, cohort=10).noise_variance is None
    early = DistributedDP(noise_multiplier=1.0, rounds=1, clip=1.0, bits=20)
    engines = early.protocol_for(SecAgg())  # engines built before bind carry no ladder
    assert engines.noise_variance is None and early.bind(SecAgg(), dimension=50, cohort=10).noise_variance is None
    assert early.begin_round(0, cohort=10).shares == SecAgg().minimum_inputs(10)


def test_exact_noise_epsilon_never_exceeds_the_target():
    for epsilon in (1.0, 4.0, 8.0):
        dp = DistributedDP(target_epsilon=epsilon, delta=1e-5, rounds=10, clip=1.0, bits=20)
        dp.bind(SecAgg(), dimension=100, cohort=12)
        from securefl.privacy.accountant import RDPAccountant

        accountant = RDPAccountant()
        accountant.compose(dp.begin_round(0, cohort=12).event, count=10)
        assert accountant.get_epsilon(1e-5) <= epsilon


def test_the_released_noise_is_sk_v_through_the_plugin():
    """Client stages of the plugin + the protocol: the decoded-free ring noise on a zero update is Sk(V)."""
    clients = 8
    dp = DistributedDP(noise_multiplier=0.05, rounds=1, clip=1.0, bits=24)
    protocol = dp.bind(SecAgg(), dimension=4096, cohort=clients)
    V_ring = dp.pipeline.central_variance
    stages = dp.begin_round(0, cohort=clients)
    rng = np.random.default_rng(3)
    zero = np.zeros(4096)
    vectors = [stages.client_stage(zero, rng=rng).vector for _ in range(clients)]
    aggregate, _, _ = run_protocol(protocol, vectors, dropouts={0: "masked-input", 1: "masked-input"},
                                   session=SESSION, round=0)
    noise = ring.to_signed(aggregate.total, 24)
    assert len(aggregate.included) == 6
    assert noise.var() == pytest.approx(V_ring, rel=0.15)


def test_excess_noise_is_the_sum_of_its_components():
    ladder = NoiseLadder(variance=V, first=2, clients=6)
    seeds = noise_chain(os.urandom(32), ladder, session=SESSION, round=0, client=0)
    total = excess_noise(seeds, ladder, levels=ladder.levels, length=50, session=SESSION, round=0, client=0)
    parts = sum(component(seeds[k], ladder, level=k, length=50, session=SESSION, round=0, client=0)
                for k in ladder.levels)
    np.testing.assert_array_equal(total, parts)
