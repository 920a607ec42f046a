"""Regenerate protocols/vectors/validated_projection.json from the current implementation.

Run from the repository root: ``.venv/bin/python tests/protocols/generate_projection_vectors.py``.
The inputs are fixed (SHA-256 of fixed strings); changing an expected value is
a wire-format change: bump the validated-sharing label instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from securefl.protocols.validated import field, projection  # noqa: E402
from tests.crypto.generate_vectors import _dumps  # noqa: E402

VECTORS = ROOT / "protocols" / "vectors"


def _elements(name: str, count: int) -> list[int]:
    """``count`` fixed field elements (SHA-256 counter mode, words reduced mod p)."""
    out = []
    for index in range(count):
        word = int.from_bytes(hashlib.sha256(f"{name}/{index}".encode()).digest()[:8], "little")
        out.append(word % field.MODULUS)
    return out


def _cases() -> list[dict]:
    cases = []
    for comment, length, kind in (("one column", 1, "small"), ("five columns, small signed q", 5, "small"),
                                  ("three columns, q near p", 3, "large")):
        seed = hashlib.sha256(f"securefl projection vector seed/{comment}".encode()).digest()
        if kind == "small":
            q = [(v % 2001 - 1000) % field.MODULUS for v in _elements(f"q/{comment}", length)]
        else:
            q = [field.MODULUS - 1 - v % 1000 for v in _elements(f"q/{comment}", length)]
        gamma = _elements(f"gamma/{comment}", projection.ROWS)
        matrix = projection.matrix(seed, length)
        cases.append({
            "comment": comment,
            "seed": seed.hex(),
            "length": length,
            "q": q,
            "gamma": gamma,
            "matrix": [[int(v) for v in row] for row in matrix],
            "projection": [int(v) for v in projection.project(seed, np.array(q, dtype=field.DTYPE))],
            "transpose": [int(v) for v in projection.transpose_apply(seed, np.array(gamma, dtype=field.DTYPE),
                                                                     length)],
        })
    return cases


def main() -> None:
    document = {
        "description": (
            "validated sharing's projection R (securefl/protocols/validated/projection.py): ROWS = 256 rows; column "
            "i is bytes [64 i, 64 i + 64) of the PRG keystream of the seed under the label 'projection' (key = "
            "HKDF-SHA256(seed, salt=none, info='securefl/prg/v1'||'projection'), AES-256-CTR from counter 0); "
            "with bits read most significant first within each byte, bits 0..255 of the column are a_0..a_255 "
            "and bits 256..511 b_0..b_255, and R[j][i] = a_j - b_j. projection = R q mod p and transpose = "
            "R^T gamma mod p, p = 2^64 - 2^32 + 1; integers exceed IEEE doubles: parse them as integers."
        ),
        "generated_by": "tests/protocols/generate_projection_vectors.py",
        "cases": _cases(),
    }
    path = VECTORS / "validated_projection.json"
    path.write_text(_dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {len(document['cases'])} cases to {path.relative_to(ROOT)}")
    json.loads(path.read_text())


if __name__ == "__main__":
    main()
