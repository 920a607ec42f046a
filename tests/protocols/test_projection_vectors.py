"""Validated sharing's projection R: known answers (protocols/vectors/validated_projection.json), re-derived by hand."""

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securefl.protocols.validated import field, projection
from tests.vectors import load_vectors

CASES = load_vectors("validated_projection")
P = field.MODULUS


def matrix_by_hand(seed: bytes, length: int) -> list[list[int]]:
    """R from `cryptography` alone: the keystream's column bytes, bits most significant first, a - b."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"securefl/prg/v1projection").derive(seed)
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(64 * length))
    rows = [[0] * length for _ in range(projection.ROWS)]
    for column in range(length):
        bits = [(byte >> (7 - k)) & 1 for byte in stream[64 * column : 64 * column + 64] for k in range(8)]
        for row in range(projection.ROWS):
            rows[row][column] = bits[row] - bits[projection.ROWS + row]
    return rows


@pytest.mark.parametrize("case", CASES, ids=[case["comment"] for case in CASES])
def test_known_answer(case):
    seed, length = bytes.fromhex(case["seed"]), case["length"]
    assert projection.matrix(seed, length).tolist() == case["matrix"]
    assert [int(v) for v in projection.project(seed, np.array(case["q"], dtype=field.DTYPE))] == case["projection"]
    gamma = np.array(case["gamma"], dtype=field.DTYPE)
    assert [int(v) for v in projection.transpose_apply(seed, gamma, length)] == case["transpose"]


@pytest.mark.parametrize("case", CASES, ids=[case["comment"] for case in CASES])
def test_vector_matches_independent_derivation(case):
    rows = matrix_by_hand(bytes.fromhex(case["seed"]), case["length"])
    assert rows == case["matrix"]
    assert [sum(r * q for r, q in zip(row, case["q"])) % P for row in rows] == case["projection"]
    assert [sum(rows[j][i] * case["gamma"][j] for j in range(projection.ROWS)) % P
            for i in range(case["length"])] == case["transpose"]
