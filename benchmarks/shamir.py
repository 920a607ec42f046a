"""Shamir sharing speed: prints one JSON object of median milliseconds.

    .venv/bin/python benchmarks/shamir.py [--n 100] [--t 51] [--repeats 15]

Figures: split and reconstruct of one 32-byte secret at n shares / threshold t
(reconstruct from the last t shares, Lagrange cache cleared so the coefficients
are paid for), and SecAgg's per-round load: 100 clients each sharing two
32-byte secrets (self-mask seed and key) to n neighbours, as 100 split_many calls.
Reference point: Flower's SecAgg+ Shamir (Python ints, pure-Python Lagrange)
takes about 190 ms to share and 270 ms to reconstruct at n=100, t=51.
Import ``measure`` from another script by putting this folder on sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(_ROOT))

from securefl.crypto import shamir  # noqa: E402


def _median_ms(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return round(statistics.median(timings) * 1e3, 3)


def measure(n: int = 100, t: int = 51, *, repeats: int = 15, clients: int = 100) -> dict:
    """Median milliseconds for split / reconstruct at (n, t) and for a round of split_many."""
    secret = os.urandom(32)
    shares = shamir.split(secret, threshold=t, shares=n)
    survivors = shares[n - t :]
    if shamir.reconstruct(survivors, threshold=t) != secret:  # pragma: no cover - a broken build
        raise RuntimeError("Shamir round trip failed")

    def reconstruct_cold() -> bytes:
        shamir._lagrange_at_zero.cache_clear()
        return shamir.reconstruct(survivors, threshold=t)

    client_secrets = [[os.urandom(32), os.urandom(32)] for _ in range(clients)]
    many = [row for pair in client_secrets for row in shamir.split_many(pair, threshold=t, shares=n)]
    flat_shares = [row[n - t :] for row in many]

    return {
        "n": n,
        "threshold": t,
        "secret_bytes": 32,
        "split_ms": _median_ms(lambda: shamir.split(secret, threshold=t, shares=n), repeats),
        "reconstruct_ms": _median_ms(reconstruct_cold, repeats),
        "reconstruct_cached_ms": _median_ms(lambda: shamir.reconstruct(survivors, threshold=t), repeats),
        "split_many_2_secrets_ms": _median_ms(
            lambda: shamir.split_many(client_secrets[0], threshold=t, shares=n), repeats
        ),
        f"split_many_2_secrets_x{clients}_clients_ms": _median_ms(
            lambda: [shamir.split_many(pair, threshold=t, shares=n) for pair in client_secrets],
            max(3, repeats // 5),
        ),
        f"reconstruct_many_{2 * clients}_secrets_ms": _median_ms(
            lambda: shamir.reconstruct_many(flat_shares, threshold=t), max(3, repeats // 5)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--t", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=15)
    arguments = parser.parse_args()
    print(json.dumps(measure(arguments.n, arguments.t, repeats=arguments.repeats)))


if __name__ == "__main__":
    main()
