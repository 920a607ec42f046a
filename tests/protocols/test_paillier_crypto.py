"""Packed Paillier building blocks: slot layout, key holder, ciphertext codec, obfuscators, threads."""

import random

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation
from securefl.protocols.paillier import (
    FixedBase,
    KeyHolder,
    Obfuscation,
    ObfuscatorPool,
    SlotLayout,
    ciphertext_bytes,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    key_id,
)
from securefl.protocols.paillier.parallel import available_cores, powmod_many, resolve_workers


@pytest.fixture(scope="module")
def keys():
    return KeyHolder.generate(512)


@pytest.fixture(scope="module")
def other_keys():
    return KeyHolder.generate(512)


# --- slot layout ------------------------------------------------------------------------


def _reference_encode(layout, values):
    """Slow, obviously-correct packing with Python integers."""
    out = []
    for start in range(0, len(values), layout.slots):
        chunk = values[start : start + layout.slots]
        out.append(sum((int(v) + layout.bound) << (j * layout.slot_bits) for j, v in enumerate(chunk)))
    return out


# Known answers: B = 3, T = 2 -> slot width bitlength(12) = 4; 15-bit plaintexts -> 3 slots.
KNOWN_ANSWERS = [
    dict(bound=3, max_terms=2, plaintext_bits=15, values=[1, -3, 3, 0], plaintexts=[4 + 0 * 16 + 6 * 256, 3]),
    dict(bound=3, max_terms=2, plaintext_bits=15, values=[-3, -3, -3], plaintexts=[0]),
    dict(bound=3, max_terms=2, plaintext_bits=15, values=[3, 3, 3], plaintexts=[6 + 6 * 16 + 6 * 256]),
    dict(bound=1, max_terms=1, plaintext_bits=2, values=[1, 0, -1], plaintexts=[2, 1, 0]),
]


@pytest.mark.parametrize("case", KNOWN_ANSWERS, ids=lambda case: str(case["values"]))
def test_known_answers(case):
    layout = SlotLayout(bound=case["bound"], max_terms=case["max_terms"], plaintext_bits=case["plaintext_bits"])
    assert layout.encode(np.array(case["values"])) == case["plaintexts"]
    decoded = layout.decode(case["plaintexts"], length=len(case["values"]), terms=1)
    np.testing.assert_array_equal(decoded, case["values"])


def test_layout_for_the_benchmark_configuration():
    # 16-bit values, weight 1, 1,024 clients, 2048-bit key: 26-bit slots, 78 per plaintext.
    layout = SlotLayout.for_key(bound=(1 << 15) - 1, max_terms=1024, key_bits=2048)
    assert (layout.slot_bits, layout.slots) == (26, 78)
    assert 512 / layout.slots <= 8  # ciphertext bytes per parameter


@settings(max_examples=60, deadline=None)
@given(
    bound=st.integers(1, 2**40),
    max_terms=st.integers(1, 2**12),
    extra_bits=st.integers(0, 300),
    data=st.data(),
)
def test_sums_of_packed_plaintexts_decode_exactly(bound, max_terms, extra_bits, data):
    slot_bits = (2 * bound * max_terms).bit_length()
    layout = SlotLayout(bound=bound, max_terms=max_terms, plaintext_bits=slot_bits + extra_bits)
    length = data.draw(st.integers(1, 60))
    terms = data.draw(st.integers(1, min(max_terms, 6)))
    extreme = data.draw(st.sampled_from(["random", "max", "min"]))
    inputs = []
    for _ in range(terms):
        if extreme == "random":
            values = data.draw(st.lists(st.integers(-bound, bound), min_size=length, max_size=length))
        else:
            values = [bound if extreme == "max" else -bound] * length
        inputs.append(np.array(values, dtype=np.int64))
    encoded = [layout.encode(v) for v in inputs]
    for values, plaintexts in zip(inputs, encoded):
        assert plaintexts == _reference_encode(layout, values.tolist())
    summed = [sum(column) for column in zip(*encoded)]
    decoded = layout.decode(summed, length=length, terms=terms)
    np.testing.assert_array_equal(decoded, np.sum(inputs, axis=0))


def test_slots_at_their_ceiling_do_not_carry():
    layout = SlotLayout(bound=127, max_terms=64, plaintext_bits=100)  # 2 B T = 16256 < 2^14
    assert layout.slot_bits == 14
    top = layout.encode(np.full(15, 127))
    summed = [p * 64 for p in top]  # 64 copies of +B: every slot holds 16256
    np.testing.assert_array_equal(layout.decode(summed, length=15, terms=64), np.full(15, 127 * 64))


def test_many_plaintexts_cross_batches():
    layout = SlotLayout(bound=5, max_terms=3, plaintext_bits=5)  # one 5-bit slot per plaintext
    values = np.random.default_rng(0).integers(-5, 6, size=5000)
    plaintexts = layout.encode(values)
    assert len(plaintexts) == 5000 == layout.plaintexts(5000)
    np.testing.assert_array_equal(layout.decode(plaintexts, length=5000, terms=1), values)


def test_decode_refuses_what_honest_inputs_cannot_produce():
    layout = SlotLayout(bound=3, max_terms=2, plaintext_bits=15)  # 3 slots of 4 bits, 12 used
    good = layout.encode(np.array([1, 2]))
    assert layout.decode(good, length=2, terms=1) is not None
    assert layout.decode([good[0] | (1 << 12)], length=2, terms=1) is None  # bit above the slots
    assert layout.decode([good[0] + (1 << 8)], length=2, terms=1) is None  # padding slot non-zero
    assert layout.decode([7], length=1, terms=1) is None  # slot 7 > 2 B T = 6
    assert layout.decode([7], length=1, terms=2) is not None  # ... but fine for two terms
    assert layout.decode(good, length=2, terms=3) is None  # more terms than the slots hold
    assert layout.decode(good, length=4, terms=1) is None  # 4 values need 2 plaintexts
    assert layout.decode([-1], length=1, terms=1) is None


def test_out_of_range_values_are_named():
    layout = SlotLayout(bound=100, max_terms=4, plaintext_bits=64)
    with pytest.raises(ConfigurationError, match=r"value 2 is -101, outside \[-100, 100\]"):
        layout.encode(np.array([0, 100, -101, 500]))
    with pytest.raises(ConfigurationError, match="value 0 is 101"):
        layout.encode(np.array([101], dtype=np.uint16))
    with pytest.raises(ConfigurationError, match="1-D integer"):
        layout.encode(np.array([0.5]))


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(bound=2**40, max_terms=2**30, plaintext_bits=2047), "slot width 72 bits .* 64-bit limit"),
        (dict(bound=2**20, max_terms=2**10, plaintext_bits=20), r"slot width 32 bits \(.*max_clients=1024 .* 20-bit"),
        (dict(bound=0, max_terms=1, plaintext_bits=20), "bound"),
        (dict(bound=1, max_terms=True, plaintext_bits=20), "max_terms"),
    ],
)
def test_layouts_that_cannot_work_are_refused(options, match):
    with pytest.raises(ConfigurationError, match=match):
        SlotLayout(**options)


# --- keys and ciphertexts ---------------------------------------------------------------


def test_batched_crt_decryption_matches_phe(keys):
    public = keys.public_key
    values = [0, 1, 12345, public.n - 1, 2**400]
    raw = [public.raw_encrypt(v) for v in values]
    assert keys.decrypt_raw(raw) == values
    assert keys.decrypt_raw(raw, workers=2) == values
    assert [keys._private_key.raw_decrypt(c) for c in raw] == values
    assert [keys.decrypt(public.encrypt(v)) for v in (-7, 0, 12345)] == [-7, 0, 12345]
    with pytest.raises(ConfigurationError, match="under this key holder"):
        keys.decrypt(raw[0])


def test_key_generation_uses_the_os_csprng():
    random.seed(0)
    first = KeyHolder.generate(256)
    random.seed(0)
    second = KeyHolder.generate(256)
    assert first.public_key.n != second.public_key.n
    assert first.key_bits == second.key_bits == 256
    assert first.key_id != second.key_id and len(first.key_id) == 16


def test_key_holder_checks_its_keys(keys, other_keys):
    with pytest.raises(ConfigurationError, match="does not belong"):
        KeyHolder(keys.public_key, other_keys._private_key)
    with pytest.raises(ConfigurationError, match="PaillierPublicKey"):
        KeyHolder(keys.public_key.n, keys._private_key)
    for bits in (255, 257, 128, True, 1024.0):
        with pytest.raises(ConfigurationError, match="key_bits"):
            KeyHolder.generate(bits)
    assert key_id(keys.public_key) == keys.key_id != other_keys.key_id


def test_one_decryption_per_session_and_round(keys):
    session = bytes(16)
    assert keys.claim(session, 1)
    assert not keys.claim(session, 1)
    assert keys.claim(session, 2) and keys.claim(bytes([1]) * 16, 1)


def test_ciphertext_codec_roundtrip_and_phe_objects(keys, other_keys):
    public = keys.public_key
    numbers = [public.encrypt(v) for v in (3, 5)]
    data = ciphertexts_to_bytes(numbers, public)
    assert len(data) == 2 * ciphertext_bytes(public) == 2 * 128
    parsed = ciphertexts_from_bytes(data, public, count=2, what="test")
    assert [int(c) for c in parsed] == [n.ciphertext(be_secure=False) for n in numbers]
    with pytest.raises(ConfigurationError, match="ciphertext 1 is under another public key"):
        ciphertexts_to_bytes([numbers[0], other_keys.public_key.encrypt(1)], public)
    with pytest.raises(ConfigurationError, match="outside"):
        ciphertexts_to_bytes([public.nsquare], public)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda data, keys: data[:-1], "255 bytes of ciphertexts; expected 2 x 128 = 256"),
        (lambda data, keys: data + b"\0", "257 bytes"),
        (lambda data, keys: data[:128] + bytes(128), "ciphertext 1 is outside"),
        (lambda data, keys: keys.public_key.nsquare.to_bytes(128, "big") + data[128:], "ciphertext 0 is outside"),
        (lambda data, keys: data[:128] + (keys.public_key.nsquare + 1).to_bytes(128, "big"), "ciphertext 1 is outside"),
        (lambda data, keys: data[:128] + keys._private_key.p.to_bytes(128, "big"), "ciphertext 1 is not coprime"),
        (lambda data, keys: (keys._private_key.q * 7).to_bytes(128, "big") + data[128:], "ciphertext 0 is not coprime"),
    ],
)
def test_malformed_ciphertexts_are_refused(keys, mutate, match):
    data = ciphertexts_to_bytes([keys.public_key.encrypt(v) for v in (1, 2)], keys.public_key)
    with pytest.raises(InvalidMessage, match=match):
        ciphertexts_from_bytes(mutate(data, keys), keys.public_key, count=2, what="upload")


# --- obfuscators ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obfuscation", ["standard", "short-exponent", Obfuscation("short-exponent", exponent_bits=600)]
)
def test_obfuscators_are_fresh_encryptions_of_zero(keys, obfuscation):
    pool = ObfuscatorPool(keys.public_key, obfuscation)
    pool.fill(6, workers=2)
    assert len(pool) == 6
    taken = pool.take(8)  # two more than filled: made inline
    assert len(taken) == 8 and len(pool) == 0
    assert len({int(y) for y in taken}) == 8
    assert keys.decrypt_raw(taken) == [0] * 8
    assert all(gmpy2.gcd(y, keys.public_key.n) == 1 for y in taken)


def test_obfuscators_do_not_come_from_seedable_generators(keys):
    draws = []
    for _ in range(2):
        random.seed(1)
        np.random.seed(1)
        draws.append([int(y) for y in ObfuscatorPool(keys.public_key).take(2)])
    assert draws[0] != draws[1]


def test_pool_hands_each_obfuscator_out_once(keys):
    pools = [ObfuscatorPool(keys.public_key) for _ in range(3)]
    ObfuscatorPool.fill_all(pools, 4, workers=2)
    taken = [int(y) for pool in pools for y in pool.take(4)]
    assert len(set(taken)) == 12
    assert all(len(pool) == 0 for pool in pools)


def test_fixed_base_comb_matches_exponentiation(keys):
    base = FixedBase(keys.public_key, exponent_bits=260)  # rounded up to whole bytes
    assert base.exponent_bits == 264
    nsquare = keys.public_key.nsquare
    for exponent in (0, 1, 255, 256, 2**263 + 12345, 2**264 - 1):
        assert base.power(exponent) == gmpy2.powmod(base.base, exponent, nsquare)
    with pytest.raises(ConfigurationError):
        base.power(2**264)
    assert keys.decrypt_raw([base.base]) == [0]  # h_s is an n-th residue


def test_obfuscation_options_are_checked(keys, other_keys):
    assert Obfuscation("short-exponent").exponent_bits_for(2048) == 1024
    assert Obfuscation("short-exponent").exponent_bits_for(512) == 256
    refused = (
        dict(kind="fast"), dict(kind="standard", exponent_bits=512), dict(kind="short-exponent", exponent_bits=128)
    )
    for options in refused:
        with pytest.raises(ConfigurationError):
            Obfuscation(**options)
    base = FixedBase(other_keys.public_key, exponent_bits=256)
    with pytest.raises(ConfigurationError, match="same key"):
        ObfuscatorPool(keys.public_key, "short-exponent", base=base)
    with pytest.raises(ConfigurationError, match="count"):
        ObfuscatorPool(keys.public_key).fill(-1)


# --- threads ----------------------------------------------------------------------------


def test_worker_resolution():
    assert resolve_workers(None, 0) == 1
    assert resolve_workers(None, 7) == 1
    assert resolve_workers(None, 10**6) == available_cores()
    assert resolve_workers(3, 2) == 2
    assert resolve_workers(3, 100) == 3
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigurationError, match="workers"):
            resolve_workers(bad, 10)


@pytest.mark.parametrize("workers", [1, 2, 3, None])
def test_threaded_exponentiation_matches_serial(workers):
    modulus = (2**127 - 1) * (2**89 - 1)
    bases = [gmpy2.mpz(b) for b in range(2, 40)]
    assert powmod_many(bases, 65537, modulus, workers=workers) == [pow(int(b), 65537, modulus) for b in bases]


def test_phe_is_accelerated_by_gmpy2():
    assert phe.util.HAVE_GMP


def test_a_public_only_holder_cannot_decrypt_and_factors_rebuild_the_pair(keys):
    public_only = KeyHolder.public_only(keys.public_key)
    assert not public_only.can_decrypt and public_only.key_id == keys.key_id
    ciphertext = keys.public_key.encrypt(7)
    with pytest.raises(ProtocolViolation):
        public_only.decrypt(ciphertext)
    with pytest.raises(ProtocolViolation):
        public_only.decrypt_raw([ciphertext.ciphertext(be_secure=False)])
    with pytest.raises(ProtocolViolation):
        _ = public_only.factors
    rebuilt = KeyHolder.from_factors(keys.public_key.n, *keys.factors)
    assert rebuilt.can_decrypt and rebuilt.decrypt(ciphertext) == 7
