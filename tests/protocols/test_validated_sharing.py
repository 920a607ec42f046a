import dataclasses
import itertools
import os
import warnings

import numpy as np
import pytest
from scipy import stats

from securefl import ring
from securefl.encoding import Encoding
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate, ProtocolAbort
from securefl.protocols import ValidatedSharing, catalog
from securefl.protocols.validated import Rejection, engines, field, projection, proof, randomness
from securefl.protocols.validated.messages import ProofSeed, ProofShare
from securefl.protocols.validated.statement import Challenge, Query
from securefl.simulation import run_protocol
from tests.protocols.conformance import Run
from tests.protocols.helpers import ring_sum

ENCODING = Encoding(value_bits=8, max_clients=16, max_weight=4)
BOUND = 2.0


def updates(count, length, seed, *, norm=1.5):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.normal(size=length)
        out.append(x / np.linalg.norm(x) * norm * rng.uniform(0.1, 1))
    return out


def encoded(protocol, values, seed=0, weights=None):
    rng = np.random.default_rng(seed)
    weights = weights or [1] * len(values)
    return [protocol.encoding.encode(np.clip(x, -1, 1), weight=w, rng=rng) for x, w in zip(values, weights)]


# -- honest clients -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("digit_bits", "aggregators", "weighted"), [(1, 2, False), (2, 2, True), (3, 3, False),
                                                                   (4, 2, True)])
def test_honest_clients_always_verify_and_the_sum_is_exact(digit_bits, aggregators, weighted):
    protocol = ValidatedSharing(norm_bound=BOUND, digit_bits=digit_bits, aggregators=aggregators, encoding=ENCODING)
    weights = [1, 2, 3, 4, 1] if weighted else None
    inputs = encoded(protocol, updates(5, 23, seed=digit_bits), weights=weights)
    aggregate, _, _ = run_protocol(protocol, inputs)
    assert aggregate.included == tuple(range(5)) and aggregate.rejected == {}
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, range(5), ENCODING.ring_bits))


@pytest.mark.parametrize("clients", range(1, 4))
def test_exact_sum_under_every_dropout_pattern(clients):
    protocol = ValidatedSharing(norm_bound=BOUND, min_clients=1 if clients == 1 else 2, encoding=ENCODING)
    inputs = encoded(protocol, updates(clients, 6, seed=clients))
    # A client acts in 'upload' and 'prove'; dropping in a later phase is the same as not dropping.
    choices = (None, "upload", "challenge", "prove", "query")
    for pattern in itertools.product(choices, repeat=clients):
        dropouts = {i: phase for i, phase in enumerate(pattern) if phase is not None}
        survivors = [i for i in range(clients) if dropouts.get(i) not in ("upload", "challenge", "prove")]
        if len(survivors) < protocol.min_clients:
            with pytest.raises(ProtocolAbort):
                run_protocol(protocol, inputs, dropouts=dropouts)
            continue
        aggregate, _, _ = run_protocol(protocol, inputs, dropouts=dropouts)
        assert aggregate.included == tuple(survivors) and aggregate.rejected == {}
        np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, survivors, ENCODING.ring_bits))


def test_an_honest_client_refuses_an_update_above_the_bound():
    protocol = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING)
    parties = protocol.setup(clients=2, vector_length=11, session=os.urandom(16), round=0)
    too_long = encoded(protocol, [np.full(10, BOUND * (1 + 1e-2) / np.sqrt(10))])[0]
    with pytest.raises(InvalidUpdate, match="squared norm"):
        parties.clients[0].provide_input(too_long)


@pytest.mark.parametrize("options", [{"norm_bound": 0.0}, {"norm_bound": float("inf")}, {"digit_bits": 5},
                                     {"aggregators": 1}, {"norm_bound": 1e-6}])
def test_configuration_refused(options):
    with pytest.raises(ConfigurationError):
        ValidatedSharing(**{"norm_bound": BOUND, **options})


def test_a_length_whose_norm_could_wrap_the_field_is_refused():
    encoding = Encoding(value_bits=24, ring_bits=64, max_weight=256, max_clients=4)
    protocol = ValidatedSharing(norm_bound=BOUND, encoding=encoding)
    with pytest.raises(ConfigurationError, match="wrap the field"):
        protocol.setup(clients=2, vector_length=10**6, session=os.urandom(16), round=0)


def test_catalog_names_it():
    protocol = catalog.make_protocol("validated-sharing", norm_bound=3.0)
    assert isinstance(protocol, ValidatedSharing) and protocol.norm_bound == 3.0


# -- malicious clients ------------------------------------------------------------------------------------


class _Cheat(engines.Client):
    """A client that builds its witness and proof by hand (``forge`` changes them)."""

    forge: dict = {}

    def _accept_input(self, vector):
        return None  # proves a false statement: no honest check

    def _plan(self):
        return self.forge.get(self._index, {})

    def _upload(self, message):
        run = self._run
        signed = ring.to_signed(self._take_input(), run.ring_bits)
        values, weight = signed[:-1], int(signed[-1])
        plan = self._plan()
        if "values" in plan:
            values = plan["values"]
        weight = plan.get("weight", weight)
        self._witness = run.statement.witness(values, weight)
        if "shared" in plan:  # shares of another witness than the one proved
            shared = self._witness.copy()
            shared[1] = field.add(shared[1:2], np.uint64(1))[0]
            return self._shares(shared, "witness", engines.UPLOAD)
        return self._shares(self._witness, "witness", engines.UPLOAD)

    def _prove(self, message):
        run, plan = self._run, self._plan()
        statement = run.statement
        challenge = randomness.challenge_for(run.session, run.round, message.joint_seeds)
        extension = statement.extension(self._witness, challenge, slack=plan.get("slack", lambda s: None)(statement))
        if "digit" in plan:
            extension[0] = plan["digit"]
        blinds = field.expand(os.urandom(32), b"blinds", statement.blind_length)
        made = statement.prove(self._witness, challenge, blinds, extension=extension)
        if plan.get("tamper"):
            made[-1] = field.add(made[-1:], np.uint64(1))[0]
        return self._shares(made, "proof", engines.PROVE)


def _with_cheats(protocol, forge):
    class Cheating(ValidatedSharing):
        def setup(self, *, clients, vector_length, session, round):
            parties = super().setup(clients=clients, vector_length=vector_length, session=session, round=round)
            run = parties.server.run
            cheat = type("Cheat", (_Cheat,), {"forge": forge})
            parties.clients = [cheat(i, run) if i in forge else c for i, c in enumerate(parties.clients)]
            return parties

    return Cheating(norm_bound=protocol.norm_bound, encoding=protocol.encoding)


def _norm_violation(statement):
    """Integer coordinates with ||q|| >= B s (1 + 1e-3) (at least one unit above N), spread evenly."""
    target = int(np.sqrt(statement.norm_squared) * (1 + 1e-3)) + 1
    values = np.full(statement.length, target // int(np.sqrt(statement.length)), dtype=np.int64)
    while int(np.sum(values**2)) < target**2:
        values[int(np.argmin(values))] += 1
    return values


def _square_root_mod_p(value):
    """A square root of ``value`` mod p (Tonelli-Shanks; p - 1 = 2^32 (2^32 - 1))."""
    p = field.MODULUS
    odd, twos = p - 1, 0
    while odd % 2 == 0:
        odd, twos = odd // 2, twos + 1
    non_residue = next(z for z in range(2, 100) if pow(z, (p - 1) // 2, p) == p - 1)
    c, root, t, m = pow(non_residue, odd, p), pow(value, (odd + 1) // 2, p), pow(value, odd, p), twos
    while t != 1:
        i, t2 = 0, t
        while t2 != 1:
            t2, i = t2 * t2 % p, i + 1
        b = pow(c, 1 << (m - i - 1), p)
        root, c, t, m = root * b % p, b * b % p, t * b * b % p, i
    return root


def _square_that_wraps_the_field(statement):
    """One coordinate r with r^2 = 5 (mod p), |r| ~ 2^63: sum q_i^2 = 5 mod p passes the norm identity."""
    root = _square_root_mod_p(5)
    assert root * root % field.MODULUS == 5 and min(root, field.MODULUS - root) > 1 << 62
    values = np.zeros(statement.length, dtype=np.int64)
    values[5] = min(root, field.MODULUS - root)
    return values


def _coordinate_out_of_range(statement):
    """One coordinate of 2^40 ring units (far beyond any bound; the field does not wrap it), the rest zero."""
    values = np.zeros(statement.length, dtype=np.int64)
    values[3] = 1 << 40
    return values


MALFORMED = {
    "coordinate out of range": ({"values": _coordinate_out_of_range}, Rejection.NORM_EXCEEDED),
    "a square that wraps the field": ({"values": _square_that_wraps_the_field,
                                       "slack": lambda s: s.norm_squared - 5}, Rejection.PROJECTION_MISMATCH),
    "projection digit out of range": ({"digit": None}, Rejection.OUT_OF_RANGE),
    "norm B(1+1e-3)": ({"values": _norm_violation, "slack": lambda s: 0}, Rejection.NORM_EXCEEDED),
    "tampered proof share": ({"tamper": True}, Rejection.PROOF_INVALID),
    "shares that do not match the proof": ({"shared": True}, Rejection.PROOF_INVALID),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_contribution_is_rejected_by_both_aggregators(case):
    honest = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING)
    plan, reason = MALFORMED[case]
    plan = dict(plan)
    length = 12
    if "values" in plan:
        plan["values"] = plan["values"](honest.statement(length + 1))
    if "digit" in plan:
        plan["digit"] = 1 << honest.digit_bits  # the digit base itself: outside [0, base)
    protocol = _with_cheats(honest, {2: plan})
    inputs = encoded(honest, updates(4, length, seed=9))
    aggregate, _, _ = run_protocol(protocol, inputs)
    assert aggregate.included == (0, 1, 3)
    assert aggregate.rejected == {2: reason}
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, [0, 1, 3], ENCODING.ring_bits))


def test_a_weight_above_max_weight_is_rejected_though_its_digits_could_hold_it():
    encoding = Encoding(value_bits=8, max_clients=16, max_weight=3)  # one base-4 digit holds w - 1 up to 3
    honest = ValidatedSharing(norm_bound=BOUND, encoding=encoding)
    assert honest.statement(13).base ** honest.statement(13).weight_digits > encoding.max_weight
    protocol = _with_cheats(honest, {1: {"weight": 4}})
    inputs = encoded(honest, updates(4, 12, seed=4))
    aggregate, _, _ = run_protocol(protocol, inputs)
    assert aggregate.rejected == {1: Rejection.OUT_OF_RANGE} and aggregate.included == (0, 2, 3)
    np.testing.assert_array_equal(aggregate.total, ring_sum(inputs, [0, 2, 3], encoding.ring_bits))


def test_the_statement_a_cheat_proves_is_really_false():
    statement = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING).statement(13)
    values = _norm_violation(statement)
    assert int(np.sum(values**2)) > statement.norm_squared * (1 + 1e-3) ** 2 - 2 * np.sqrt(statement.norm_squared)
    with pytest.raises(InvalidUpdate):
        statement.check_update(values, 1)


def test_a_replayed_proof_is_rejected_by_both_aggregators():
    protocol = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING)
    run = Run(protocol, clients=4, length=9)
    captured = {}

    def replay(run, message):
        if isinstance(message, (ProofShare, ProofSeed)):
            if message.sender == "client/0":
                captured[message.recipient] = message
            elif message.sender == "client/1":
                return run.deliver(run.rebind(captured[message.recipient], sender="client/1"))
        return None

    run.play(intercept=replay)
    aggregate = run.server.result()
    assert aggregate.included == (0, 2, 3)
    assert aggregate.rejected == {1: Rejection.PROOF_INVALID}
    for helper in run.helpers:
        assert helper.rejected == {1: Rejection.PROOF_INVALID}
    assert np.array_equal(aggregate.total, run.expected_sum([0, 2, 3]))


def test_a_run_with_too_few_valid_clients_aborts():
    honest = ValidatedSharing(norm_bound=BOUND, min_clients=3, encoding=ENCODING)
    protocol = ValidatedSharing(norm_bound=BOUND, min_clients=3, encoding=ENCODING)
    cheating = _with_cheats(protocol, {0: {"tamper": True}, 1: {"tamper": True}})
    object.__setattr__(cheating, "min_clients", 3)
    inputs = encoded(honest, updates(4, 5, seed=2))
    with pytest.raises(ProtocolAbort, match="passed verification"):
        run_protocol(cheating, inputs)


# -- the proof system ----------------------------------------------------------------------------------------


def test_a_false_identity_is_caught_at_a_random_point():
    shape = proof.layout(50, 2)
    inputs = field.from_signed(np.arange(50) - 25)
    made = proof.prove(shape, inputs, lambda x: field.mul(x, x), np.ones(shape.chunk, field.DTYPE),
                       field.expand(os.urandom(32), b"b", 2 * shape.chunk))
    forged = made.copy()
    forged[2 * shape.chunk + 3] = field.add(forged[2 * shape.chunk + 3 : 2 * shape.chunk + 4], np.uint64(1))[0]
    points = (123456789, 987654321)
    for candidate, expected in ((made, True), (forged, False)):
        combined = proof.verifier_share(shape, inputs, candidate, points, None)
        assert proof.identity_holds(shape, combined, lambda x: field.mul(x, x), np.ones(shape.chunk, field.DTYPE)) \
            is expected
    assert int(combined[-1]) == sum(v * v for v in range(-25, 25)) % field.MODULUS


def test_field_arithmetic_against_python_integers():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**63, 2000, dtype=np.uint64) * np.uint64(2) % np.uint64(field.MODULUS)
    b = np.concatenate([np.array([field.MODULUS - 1, 0, 1, 2**32], dtype=np.uint64), a[:-4][::-1]])
    p = field.MODULUS
    assert [int(v) for v in field.mul(a, b)] == [int(x) * int(y) % p for x, y in zip(a, b)]
    assert [int(v) for v in field.add(a, b)] == [(int(x) + int(y)) % p for x, y in zip(a, b)]
    assert [int(v) for v in field.sub(a, b)] == [(int(x) - int(y)) % p for x, y in zip(a, b)]
    values = rng.integers(0, p, (8, 3), dtype=np.uint64)
    assert np.array_equal(field.intt(field.ntt(values)), values)



def test_field_operations_on_edge_values_scalars_aliases_and_long_vectors():
    p = field.MODULUS
    edges = [0, 1, 2, 2**32 - 1, 2**32, 2**32 + 1, 2**63, p - 2, p - 1]
    pairs = list(itertools.product(edges, repeat=2))
    rng = np.random.default_rng(11)
    count = 70_000  # longer than one internal block
    a = np.concatenate([np.array([x for x, _ in pairs], dtype=np.uint64), rng.integers(0, p, count, dtype=np.uint64)])
    b = np.concatenate([np.array([y for _, y in pairs], dtype=np.uint64), rng.integers(0, p, count, dtype=np.uint64)])
    ints_a, ints_b = [int(v) for v in a], [int(v) for v in b]
    assert [int(v) for v in field.mul(a, b)] == [x * y % p for x, y in zip(ints_a, ints_b)]
    assert [int(v) for v in field.add(a, b)] == [(x + y) % p for x, y in zip(ints_a, ints_b)]
    assert [int(v) for v in field.sub(a, b)] == [(x - y) % p for x, y in zip(ints_a, ints_b)]
    for scalar in edges:
        assert [int(v) for v in field.mul(a, np.uint64(scalar))] == [x * scalar % p for x in ints_a]
        assert [int(v) for v in field.add(a, np.uint64(scalar))] == [(x + scalar) % p for x in ints_a]
        assert [int(v) for v in field.sub(a, np.uint64(scalar))] == [(x - scalar) % p for x in ints_a]
    for operation, reference in ((field.mul, lambda x, y: x * y % p), (field.add, lambda x, y: (x + y) % p),
                                 (field.sub, lambda x, y: (x - y) % p)):
        target = a.copy()
        assert operation(target, b, out=target) is target
        assert [int(v) for v in target] == [reference(x, y) for x, y in zip(ints_a, ints_b)]
    grid = rng.integers(0, p, (16, 5), dtype=np.uint64)
    column = rng.integers(0, p, (16, 1), dtype=np.uint64)
    assert [[int(v) for v in row] for row in field.mul(grid, column)] == \
        [[int(x) * int(c[0]) % p for x in row] for row, c in zip(grid, column)]
    omega = field.root_of_unity(16)
    naive = [[sum(int(grid[j, col]) * pow(omega, i * j, p) for j in range(16)) % p for col in range(5)]
             for i in range(16)]
    assert [[int(v) for v in row] for row in field.ntt(grid)] == naive
    assert np.array_equal(field.intt(field.ntt(grid)), grid)
    point = 123456789
    values = [sum(int(field.lagrange_at(point, 16)[i]) * int(grid[i, 0]) for i in range(16)) % p]
    coefficients = field.intt(grid)[:, 0]
    assert values == [sum(int(c) * pow(point, i, p) for i, c in enumerate(coefficients)) % p]

# -- zero knowledge: one aggregator's view of an honest client is independent of its update -----------------


def _honest_round(statement, values, weight):
    """One honest client's witness, aggregator 0's witness and proof shares, and the summed verifier shares."""
    witness = statement.witness(values, weight)
    challenge = Challenge(os.urandom(32))
    made = statement.prove(witness, challenge, field.expand(os.urandom(32), b"blinds", statement.blind_length))
    helper_witness = field.expand(os.urandom(32), b"w", witness.size)
    helper_proof = field.expand(os.urandom(32), b"p", made.size)
    points = tuple(int(v) for v in field.expand(os.urandom(32), b"t", 2))
    gamma = field.expand(os.urandom(32), b"gamma", projection.ROWS)
    query = Query(field.expand(os.urandom(32), b"sigma", statement.range_layout.calls), points, gamma,
                  projection.transpose_apply(challenge.projection_seed, gamma, statement.length))
    leader_witness, leader_proof = field.sub(witness, helper_witness), field.sub(made, helper_proof)
    combined = field.add(statement.verifier_share(leader_witness, leader_proof, leader=True, query=query),
                         statement.verifier_share(helper_witness, helper_proof, leader=False, query=query))
    assert statement.decide(combined) is None
    return witness, leader_witness, leader_proof, combined


def _leader_view(statement, values, weight):
    """What aggregator 0 sees of one honest client: its witness and proof shares and the combined verifier."""
    witness, leader_witness, leader_proof, combined = _honest_round(statement, values, weight)
    ranges, norms, _ = statement._layouts()
    wires = np.concatenate([combined[: ranges.chunk], combined[ranges.verifier_length :][: norms.chunk]])
    return np.concatenate([leader_witness, leader_proof, wires]), witness


def _top_bits(samples):
    return np.concatenate(samples) >> np.uint64(60)


def test_one_aggregators_view_is_independent_of_the_update():
    statement = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING).statement(7)
    small = np.zeros(6, dtype=np.int64)
    large = np.array([100, -100, 90, -80, 50, 0], dtype=np.int64)
    views = {name: [_leader_view(statement, values, 1)[0] for _ in range(150)] for name, values in
             (("small", small), ("large", large))}
    table = np.array([np.bincount(_top_bits(views[name]).astype(np.int64), minlength=16) for name in views])
    assert stats.chi2_contingency(table).pvalue > 1e-4
    # The same test tells the raw witnesses apart: it can fail.
    raw = {name: [_leader_view(statement, values, 1)[1] << np.uint64(62) for _ in range(10)] for name, values in
           (("small", small), ("large", large))}
    raw_table = np.array([np.bincount(_top_bits(raw[name]).astype(np.int64), minlength=16) for name in raw])
    raw_table = raw_table[:, raw_table.sum(axis=0) > 0]
    assert stats.chi2_contingency(raw_table).pvalue < 1e-6


# -- the honest client's L2 clip and the cheating prover (SecureAggregator) -----------------------------------


def _aggregator_for(bound: float, dimension: int):
    from securefl.aggregator import SecureAggregator

    protocol = ValidatedSharing(norm_bound=bound, encoding=Encoding(clip=1.0, max_weight=1))
    return protocol, SecureAggregator(protocol, rng=np.random.default_rng(5))


@pytest.mark.parametrize("scale", [1.0, 1.5, 40.0])
def test_honest_updates_at_and_above_the_bound_are_clipped_and_verify(scale):
    dimension = 400
    protocol, aggregator = _aggregator_for(0.5, dimension)
    rng = np.random.default_rng(3)
    vectors = []
    for _ in range(3):
        direction = rng.uniform(-1, 1, dimension)
        vectors.append(direction / np.linalg.norm(direction) * 0.5 * scale)  # ||x|| = scale B
    with pytest.warns(ClippingWarning, match="scaled down"):
        aggregate = aggregator.aggregate_vectors(vectors)
    assert aggregate.included == (0, 1, 2) and aggregate.metrics["rejected"] == {}
    assert aggregate.metrics["l2_clipped_clients"] == 3
    bound = protocol.honest_clip_norm(dimension)
    assert bound == pytest.approx((np.sqrt(protocol.norm_squared) - np.sqrt(dimension) - 1) / protocol.encoding.scale)
    assert 0.48 < bound < 0.5
    expected = np.mean([v * bound / np.linalg.norm(v) for v in vectors], axis=0)
    assert np.abs(aggregate.mean - expected).max() < 3 * protocol.encoding.step


def test_updates_within_the_bound_are_not_clipped():
    protocol, aggregator = _aggregator_for(10.0, 50)
    vectors = [np.full(50, 0.01), np.full(50, -0.02)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aggregate = aggregator.aggregate_vectors(vectors)
    assert aggregate.metrics["l2_clipped_clients"] == 0 and aggregate.included == (0, 1)


def test_a_dishonest_client_proves_its_boosted_update_and_the_aggregators_reject_it():
    protocol, aggregator = _aggregator_for(0.5, 100)
    honest = [np.full(100, 0.01), np.full(100, -0.01), np.full(100, 0.02)]
    boosted = np.full(100, 0.5)  # ||x|| = 5 = 10 B, every coordinate within the clip
    aggregate = aggregator.aggregate_vectors([*honest, boosted], dishonest=[3])
    assert aggregate.included == (0, 1, 2)
    assert aggregate.metrics["rejected"] == {3: "norm-exceeded"}
    assert np.abs(aggregate.mean - np.mean(honest, axis=0)).max() < 2 * protocol.encoding.step


def test_a_norm_bound_below_the_rounding_is_refused():
    protocol = ValidatedSharing(norm_bound=0.01, encoding=Encoding(clip=1.0, max_weight=1))
    with pytest.raises(ConfigurationError, match="no room for the rounding"):
        protocol.honest_clip_norm(10_000)


def test_cheating_provers_must_be_client_indices():
    with pytest.raises(ConfigurationError, match="cheating_provers"):
        ValidatedSharing(cheating_provers=frozenset({-1}))


# -- the projection ---------------------------------------------------------------------------------------


def test_the_projection_is_exact_mod_p_for_any_field_vector():
    seed, length = os.urandom(32), 9000  # longer than one expansion block
    matrix = projection.matrix(seed, length)
    assert matrix.shape == (projection.ROWS, length) and set(np.unique(matrix)) == {-1, 0, 1}
    counts = [int(np.count_nonzero(matrix == value)) for value in (-1, 0, 1)]
    assert stats.chisquare(counts, np.array([0.25, 0.5, 0.25]) * matrix.size).pvalue > 1e-4
    small = np.random.default_rng(1).integers(-2**25, 2**25, length)
    assert np.array_equal(field.to_signed(projection.project(seed, field.from_signed(small))), matrix @ small)
    p = field.MODULUS
    anything = field.expand(os.urandom(32), b"q", length)  # elements near p: no float shortcut holds
    rows = [int(v) for v in projection.project(seed, anything)[:4]]
    assert rows == [sum(int(r) * int(v) for r, v in zip(matrix[j], anything)) % p for j in range(4)]
    gamma = field.expand(os.urandom(32), b"gamma", projection.ROWS)
    columns = [int(v) for v in projection.transpose_apply(seed, gamma, length)[-4:]]
    assert columns == [sum(int(matrix[j, i]) * int(gamma[j]) for j in range(projection.ROWS)) % p
                       for i in range(length - 4, length)]


def _rows_in_window(statement, values, seed):
    """How many rows put (R q)_j in the window [-Y, L - Y) the digits can express."""
    projected = field.to_signed(projection.project(seed, field.from_signed(values)))
    span = statement.base ** statement.projection_digits
    return int(np.count_nonzero((projected >= -statement.projection_bound)
                                & (projected < span - statement.projection_bound)))


@pytest.mark.parametrize("shape", ["spread", "two spikes", "one spike"])
def test_a_long_vector_leaves_the_window_in_a_constant_fraction_of_rows(shape):
    # The soundness argument: ||q||^2 >= 8 (L - Y)^2 puts a row in the window with probability <= 0.8125.
    statement = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING).statement(401)
    reach = statement.base ** statement.projection_digits - statement.projection_bound
    norm = int(np.ceil(np.sqrt(8) * reach)) + 1
    values = np.zeros(statement.length, dtype=np.int64)
    if shape == "spread":
        values[:] = -(-norm // 20)
    elif shape == "two spikes":
        values[:2] = -(-norm // 1.4142)
    else:
        values[0] = norm
    assert int(np.sum(values.astype(object) ** 2)) >= 8 * reach**2
    inside = sum(_rows_in_window(statement, values, os.urandom(32)) for _ in range(20))
    assert inside / (20 * projection.ROWS) < 0.8125 - 0.05
    honest = np.full(statement.length, int(np.sqrt(statement.norm_squared / statement.length)))
    assert all(_rows_in_window(statement, honest, os.urandom(32)) == projection.ROWS for _ in range(20))


def test_a_coordinate_beyond_the_digits_span_fails_half_the_rows():
    statement = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING).statement(101)
    values = np.zeros(statement.length, dtype=np.int64)
    values[7] = statement.base ** statement.projection_digits  # |q_i| >= L
    inside = sum(_rows_in_window(statement, values, os.urandom(32)) for _ in range(20))
    assert inside / (20 * projection.ROWS) < 0.5 + 0.05


def test_soundness_at_the_benchmark_size_is_below_2_to_the_minus_60():
    protocol = ValidatedSharing(norm_bound=1.0, encoding=Encoding(value_bits=12, max_weight=1, max_clients=100))
    statement = protocol.statement(100_001)
    assert statement.soundness_error < 2.0**-60
    assert statement.proof_length < 0.25 * statement.length  # the second message: a fifth of the first


def test_a_cohort_whose_accepted_sum_could_wrap_the_ring_is_refused():
    protocol = ValidatedSharing(norm_bound=50.0, encoding=Encoding(clip=1.0, max_weight=256))
    protocol.setup(clients=3, vector_length=11, session=os.urandom(16), round=0)
    with pytest.raises(ConfigurationError, match="beyond 2\\^\\(ring_bits-1\\)-1"):
        protocol.setup(clients=1000, vector_length=11, session=os.urandom(16), round=0)


# -- a server that deviates: other joint seeds for one client --------------------------------------------------


@pytest.mark.parametrize("zero_update", [False, True])
def test_a_client_refuses_joint_seeds_its_aggregators_did_not_sign(zero_update):
    # With another R than the aggregators', a client's projection would match theirs only for q = 0: the
    # accept/reject outcome would tell the server whether the update is zero. The client refuses first.
    from securefl.errors import ProtocolViolation
    from securefl.protocols.validated.messages import ProveRequest

    protocol = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING)
    run = Run(protocol, clients=4, length=9)
    if zero_update:
        run.clients[1] = type(run.clients[1])(1, run.server.run)
        run.engines["client/1"] = run.clients[1]
        run.inputs[1] = ring.from_signed(np.append(np.zeros(8, dtype=np.int64), 1), ENCODING.ring_bits)
        run.clients[1].provide_input(run.inputs[1])
    refusals = []

    def substitute(run, message):
        if isinstance(message, ProveRequest) and message.recipient == "client/1":
            forged = dataclasses.replace(message, joint_seeds=(os.urandom(32), *message.joint_seeds[1:]))
            with pytest.raises(ProtocolViolation, match="is not one it signed") as refused:
                run.deliver(forged)
            refusals.append(refused.value)
            return []
        return None

    run.play(intercept=substitute)
    aggregate = run.server.result()
    assert len(refusals) == 1 and aggregate.included == (0, 2, 3) and aggregate.rejected == {}
    assert np.array_equal(aggregate.total, run.expected_sum([0, 2, 3]))


def test_a_server_refuses_a_joint_seed_without_its_aggregators_signature():
    from securefl.errors import InvalidMessage
    from securefl.protocols.validated.messages import ChallengeSeed

    run = Run(ValidatedSharing(norm_bound=BOUND, encoding=ENCODING), clients=3, length=5)

    def resign(run, message):
        if isinstance(message, ChallengeSeed) and message.sender == "aggregator/1":
            with pytest.raises(InvalidMessage, match="signature"):
                run.deliver(dataclasses.replace(message, seed=os.urandom(32)))
        return None

    run.play(phases=2, intercept=resign)


def test_the_ring_headroom_counts_the_largest_coordinate_at_the_largest_weight():
    # isqrt(N W^2) = 10,925 exceeds W isqrt(N) = 10,912: three accepted coordinates of 10,925 at weight 16 sum
    # to 32,775, past the 16-bit ring's 32,767, although 3 x 16 x isqrt(N) = 32,736 fits.
    encoding = Encoding(value_bits=4, ring_bits=16, max_weight=16, max_clients=3, clip=1.0)
    protocol = ValidatedSharing(norm_bound=np.sqrt(466_299.5) / 7, encoding=encoding)
    assert protocol.norm_squared == 466_299
    protocol.setup(clients=2, vector_length=5, session=os.urandom(16), round=0)
    with pytest.raises(ConfigurationError, match="can sum to 32775"):
        protocol.setup(clients=3, vector_length=5, session=os.urandom(16), round=0)


def test_the_aggregators_never_reconstruct_a_clients_weight():
    statement = ValidatedSharing(norm_bound=BOUND, encoding=ENCODING).statement(7)
    # Without the zeroing, the summed weight output is w^2: 1, 4, 9, 16.
    assert {_combined_weight_output(statement, weight) for weight in (1, 2, 3, 4)} == {0}


def _combined_weight_output(statement, weight):
    """The weight proof's output in the summed verifier shares of an honest client of weight ``weight``."""
    combined = _honest_round(statement, np.zeros(statement.length, dtype=np.int64), weight)[3]
    ranges, norms, weights = statement._layouts()
    return int(combined[ranges.verifier_length + norms.verifier_length + weights.verifier_length - 1])
