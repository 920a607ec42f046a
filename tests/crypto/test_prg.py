"""securefl.crypto.prg: known answers (re-derived by hand), uniformity, domain separation."""

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from scipy import stats

from securefl import ring
from securefl.crypto import prg
from securefl.errors import ConfigurationError
from tests.vectors import load_vectors

PRG_CASES = load_vectors("prg")
WORD_BYTES = {8: 1, 16: 2, 20: 4, 32: 4, 64: 8}
SEED = bytes(range(32))


def expand_by_hand(seed: bytes, label: bytes, length: int, ring_bits: int) -> list[int]:
    """The construction of protocols/crypto.md, straight from `cryptography`, no numpy."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"securefl/prg/v1" + label).derive(seed)
    width = WORD_BYTES[ring_bits]
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(width * length))
    return [int.from_bytes(stream[i * width : (i + 1) * width], "little") % (1 << ring_bits) for i in range(length)]


@pytest.mark.parametrize("case", PRG_CASES, ids=[case["comment"] for case in PRG_CASES])
def test_known_answer(case):
    seed, label = bytes.fromhex(case["seed"]), bytes.fromhex(case["label"])

    vector = prg.expand(seed, label, case["length"], case["ring_bits"])

    assert vector.dtype == np.dtype(f"uint{8 * WORD_BYTES[case['ring_bits']]}")
    assert [int(v) for v in vector] == case["expected"]


@pytest.mark.parametrize("case", PRG_CASES, ids=[case["comment"] for case in PRG_CASES])
def test_vector_matches_independent_derivation(case):
    seed, label = bytes.fromhex(case["seed"]), bytes.fromhex(case["label"])

    assert expand_by_hand(seed, label, case["length"], case["ring_bits"]) == case["expected"]


def test_vectors_cover_every_ring_width():
    assert {case["ring_bits"] for case in PRG_CASES} >= {8, 16, 20, 32, 64}


def test_uniform_bytes_for_8_bit_ring():
    vector = prg.expand(SEED, b"uniformity/8", 256 * 400, 8)

    counts = np.bincount(vector, minlength=256)

    assert stats.chisquare(counts).pvalue > 1e-4


def test_20_bit_ring_low_and_high_bits_uniform_and_in_range():
    vector = prg.expand(SEED, b"uniformity/20", 1 << 16, 20)

    assert int(vector.max()) < 1 << 20
    low_nibble = np.bincount(vector & 0xF, minlength=16)
    top_nibble = np.bincount(vector >> 16, minlength=16)
    assert stats.chisquare(low_nibble).pvalue > 1e-4
    assert stats.chisquare(top_nibble).pvalue > 1e-4
    for bit in range(20):
        ones = int(((vector >> bit) & 1).sum())
        assert stats.binomtest(ones, vector.size).pvalue > 1e-4, bit


def test_deterministic_and_prefix_stable():
    first = prg.expand(SEED, b"label", 100, 32)

    np.testing.assert_array_equal(first, prg.expand(SEED, b"label", 100, 32))
    np.testing.assert_array_equal(first[:10], prg.expand(SEED, b"label", 10, 32))


@pytest.mark.parametrize(
    "other_seed, other_label",
    [(SEED, b"label2"), (SEED, b""), (bytes(31) + b"\x01", b"label"), (SEED[::-1], b"label")],
)
def test_different_seed_or_label_gives_unrelated_vector(other_seed, other_label):
    base = prg.expand(SEED, b"label", 64, 32)

    other = prg.expand(other_seed, other_label, 64, 32)

    assert np.count_nonzero(base == other) < 4


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_seed_length_refused(length):
    with pytest.raises(ConfigurationError, match=f"found {length}"):
        prg.expand(bytes(length), b"label", 4, 32)


def test_non_bytes_label_and_negative_length_refused():
    with pytest.raises(ConfigurationError, match="label must be bytes"):
        prg.expand(SEED, "label", 4, 32)
    with pytest.raises(ConfigurationError, match="found -1"):
        prg.expand(SEED, b"label", -1, 32)


@pytest.mark.parametrize("case", PRG_CASES, ids=[case["comment"] for case in PRG_CASES])
def test_accumulate_matches_known_answer(case):
    """Chunked accumulation (added, subtracted, from a start vector) agrees with the vectors."""
    seed, label = bytes.fromhex(case["seed"]), bytes.fromhex(case["label"])
    bits, length = case["ring_bits"], case["length"]
    expected = np.array(case["expected"], dtype=np.uint64).astype(ring.ring_dtype(bits))
    added = prg.accumulate(np.zeros(length, dtype=ring.ring_dtype(bits)), [(seed, label)], bits)
    assert [int(v) for v in added] == case["expected"]
    start = np.arange(length, dtype=np.uint64).astype(ring.ring_dtype(bits))
    ring.reduce(start, bits)
    out = np.empty_like(start)
    prg.accumulate(out, [(seed, label), (seed, label)], bits, signs=-1, start_from=start)
    twice = ring.add(expected.copy(), expected, bits)
    np.testing.assert_array_equal(out, ring.sub(start.copy(), twice, bits))
    prg.accumulate(out, [(seed, label), (seed, label), (seed, label)], bits, signs=[1, -1, 1])
    np.testing.assert_array_equal(out, ring.sub(start.copy(), expected, bits))


def test_accumulate_over_many_windows_and_stream_batches(monkeypatch):
    """Mixed signs across several cache windows and more streams than are kept open at once."""
    monkeypatch.setattr(prg, "CHUNK_BYTES", 64)  # windows of 16 words: a ragged last window
    monkeypatch.setattr(prg, "_OPEN_STREAMS", 3)
    length, bits = 1001, 32
    streams = [(bytes([index]) * 32, b"window/%d" % index) for index in range(8)]
    signs = [1, -1, -1, 1, 1, -1, 1, 1]
    start = np.arange(length, dtype=np.uint32)
    expected = start.copy()
    for (seed, label), sign in zip(streams, signs):
        (ring.add if sign > 0 else ring.sub)(expected, prg.expand(seed, label, length, bits), bits)

    out = prg.accumulate(np.empty_like(start), streams, bits, signs=signs, start_from=start)

    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(start, np.arange(length))


def test_accumulate_with_no_streams_copies_the_start():
    start = np.arange(5, dtype=np.uint16)
    np.testing.assert_array_equal(prg.accumulate(np.zeros(5, np.uint16), [], 12, start_from=start), start)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(out=np.zeros(4, np.uint64)), "contiguous 1-D uint32"),
        (dict(signs=[1]), "one per stream"),
        (dict(signs=0), "found 0"),
        (dict(signs=[True, 1]), "must be \\+1 or -1"),
        (dict(signs=True), "must be \\+1 or -1"),
        (dict(signs=[1.0, 1]), "must be \\+1 or -1"),
        (dict(start_from=np.zeros(3, np.uint32)), "start_from must be"),
        (dict(streams=[(bytes(31), b"l"), (bytes(32), b"l")]), "found 31 bytes"),
    ],
)
def test_accumulate_refuses_bad_arguments(arguments, message):
    call = dict(out=np.zeros(4, np.uint32), streams=[(SEED, b"a"), (SEED, b"b")], ring_bits=32)
    call.update(arguments)
    with pytest.raises(ConfigurationError, match=message):
        prg.accumulate(call.pop("out"), call.pop("streams"), call.pop("ring_bits"), **call)
