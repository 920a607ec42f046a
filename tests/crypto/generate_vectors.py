"""Regenerate protocols/vectors/prg.json and shamir.json from the current implementation.

    .venv/bin/python tests/crypto/generate_vectors.py

The vectors pin today's behaviour; tests/crypto re-derive every PRG case and
every Shamir case with an independent by-hand computation, so a vector that
merely echoed a bug would fail. Changing an output here is a wire-format change:
bump the version label (e.g. "securefl/prg/v1") instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from securefl.crypto import prg, shamir  # noqa: E402
from securefl.crypto.keys import context  # noqa: E402

VECTORS = ROOT / "protocols" / "vectors"


def _prg_cases() -> list[dict]:
    counting = bytes(range(32))
    hashed = hashlib.sha256(b"securefl prg vector seed").digest()
    specs = [
        ("8-bit ring", counting, b"securefl/test/mask", 8, 32),
        ("16-bit ring", counting, b"securefl/test/mask", 16, 24),
        ("20-bit ring: words masked to 20 bits", counting, b"securefl/test/mask", 20, 40),
        ("32-bit ring", counting, b"securefl/test/mask", 32, 16),
        ("64-bit ring", counting, b"securefl/test/mask", 64, 8),
        ("empty label", b"\xff" * 32, b"", 32, 8),
        ("context label, 300 coordinates across many AES blocks", hashed,
         context("secagg", "self-mask", 3), 20, 300),
        ("same seed and ring, other label", hashed, context("secagg", "pairwise", 3), 20, 12),
        ("zero length", counting, b"securefl/test/mask", 32, 0),
    ]
    cases = []
    for comment, seed, label, ring_bits, length in specs:
        vector = prg.expand(seed, label, length, ring_bits)
        cases.append(
            {
                "comment": comment,
                "seed": seed.hex(),
                "label": label.hex(),
                "ring_bits": ring_bits,
                "length": length,
                "expected": [int(v) for v in vector],
            }
        )
    return cases


def _coefficient(case: int, chunk: int, power: int) -> int:
    digest = hashlib.sha512(f"securefl shamir vector {case} {chunk} {power}".encode()).digest()
    return int.from_bytes(digest, "big") % shamir.PRIME


def _shamir_cases() -> list[dict]:
    p = shamir.PRIME
    specs = [
        ("t=1: every share holds the secret", bytes(range(32)), 1, 3, None),
        ("t=2 of 3, one chunk", hashlib.sha256(b"secret a").digest(), 2, 3, None),
        ("t=3 of 5, 40-byte secret: a full and an 8-byte chunk", hashlib.sha512(b"secret b").digest()[:40], 3, 5, None),
        ("t=3 of 4, 33-byte secret: last chunk is 1 byte", b"\x01" * 32 + b"\x80", 3, 4, None),
        ("t=5 of 7, 64-byte secret", hashlib.sha512(b"secret c").digest(), 5, 7, None),
        ("edge: secret 2^256-1, every coefficient p-1", b"\xff" * 32, 3, 4, p - 1),
        ("edge: zero secret, coefficients 1", bytes(32), 2, 3, 1),
    ]
    cases = []
    for index, (comment, secret, threshold, count, constant) in enumerate(specs):
        chunks = -(-len(secret) // shamir.CHUNK_BYTES)
        coefficients = [
            [constant if constant is not None else _coefficient(index, chunk, power) for power in range(1, threshold)]
            for chunk in range(chunks)
        ]
        shares = shamir._share_secrets(
            [secret], threshold=threshold, shares=count, higher_coefficients=coefficients
        )[0]
        encoded = [share.to_bytes().hex() for share in shares]
        cases.append(
            {
                "kind": "split",
                "comment": comment,
                "secret": secret.hex(),
                "threshold": threshold,
                "shares": count,
                "coefficients": [[f"{c:x}" for c in chunk] for chunk in coefficients],
                "expected_shares": encoded,
            }
        )
        # reconstruct from the last `threshold` shares, in reverse order
        subset = list(reversed(encoded))[:threshold]
        cases.append(
            {
                "kind": "reconstruct",
                "comment": f"{comment}; shares x={count}..{count - threshold + 1}",
                "threshold": threshold,
                "share_set": subset,
                "secret": secret.hex(),
            }
        )
    header = (1).to_bytes(2, "big") + (32).to_bytes(2, "big")
    element = (5).to_bytes(33, "big")
    invalid = [
        ("x = 0", (0).to_bytes(2, "big") + (32).to_bytes(2, "big") + element),
        ("secret length 31 (< 32)", (1).to_bytes(2, "big") + (31).to_bytes(2, "big") + element),
        ("element equal to p", header + p.to_bytes(33, "big")),
        ("element 2^264 - 1", header + b"\xff" * 33),
        ("one byte short", header + element[:-1]),
        ("one byte too long", header + element + b"\x00"),
        ("33-byte secret needs two elements, has one", (1).to_bytes(2, "big") + (33).to_bytes(2, "big") + element),
        ("header only", header),
        ("truncated header", header[:3]),
        ("empty", b""),
    ]
    cases.extend({"kind": "invalid_share", "comment": comment, "share": data.hex()} for comment, data in invalid)
    return cases


def _dumps(value: object, indent: int = 0) -> str:
    """JSON with objects one key per line and lists of scalars kept on one line."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {_dumps(item, indent + 2)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = [inner + _dumps(item, indent + 2) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value)


def _write(name: str, description: str, cases: list[dict]) -> None:
    document = {
        "description": description,
        "generated_by": "tests/crypto/generate_vectors.py",
        "cases": cases,
    }
    path = VECTORS / f"{name}.json"
    path.write_text(_dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {path.relative_to(ROOT)}")


def main() -> None:
    VECTORS.mkdir(parents=True, exist_ok=True)
    _write(
        "prg",
        "securefl.crypto.prg.expand(seed, label, length, ring_bits): key = HKDF-SHA256(seed, salt=none, "
        "info='securefl/prg/v1'||label); AES-256-CTR keystream from counter 0 read as little-endian words "
        "of 1/2/4/4/8 bytes (k = 8/16/20/32/64), reduced mod 2^k. seed and label are hex; expected holds "
        "every coordinate as an integer (64-bit values exceed IEEE doubles: parse as integers).",
        _prg_cases(),
    )
    _write(
        "shamir",
        "Shamir over F_p, p = 2^256 + 297. kind=split: chunk c of the secret (32-byte big-endian pieces) is "
        "the constant term and coefficients[c] (hex, powers 1..t-1) the rest; expected_shares are "
        "Share.to_bytes() for x = 1..shares. kind=reconstruct: any threshold shares give the secret. "
        "kind=invalid_share: Share.from_bytes must reject the bytes.",
        _shamir_cases(),
    )


if __name__ == "__main__":
    main()
