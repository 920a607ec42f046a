"""Secret-sharing sum at n clients, d parameters: encoding, protocol, bytes, Shamir.

Every figure is a ratio against a primitive measured side by side in the
same run, so machine noise cancels:

- encoding (clip, scale, stochastic rounding into the ring) vs numpy
  drawing the same number of float64 uniforms (target <= 2);
- protocol time after encoding vs generating the AES-CTR keystream of every
  byte the protocol expands (client shares + aggregator re-expansion) (target <= 2);
- upload bytes per client over 4 d (target <= 1.01).

The protocol is run four times; the first run (cold heap: every vector's
pages faulted in fresh) is reported apart from the median of the others.
The script re-executes itself with glibc's heap kept warm (see
``common.WARM_HEAP``); set SECUREFL_BENCH_COLD_HEAP=1 to measure without.

    python benchmarks/secret_sharing.py [--clients 100] [--dimension 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from securefl.protocols import SecretSharing  # noqa: E402
from securefl.simulation import run_protocol  # noqa: E402

from common import aes_ctr_keystream, emit, ensure_warm_heap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--dimension", type=int, default=1_000_000)
    parser.add_argument("--aggregators", type=int, default=2)
    args = parser.parse_args()
    heap = ensure_warm_heap()
    n, d = args.clients, args.dimension
    protocol = SecretSharing(aggregators=args.aggregators)
    encoding = protocol.encoding
    rng = np.random.default_rng(0)
    updates = [rng.normal(scale=0.3, size=d) for _ in range(n)]

    # Encoding vs drawing d uniforms, interleaved client by client.
    encode_seconds = uniform_seconds = 0.0
    encoded = []
    for update in updates:
        start = time.perf_counter()
        rng.random(d)
        uniform_seconds += time.perf_counter() - start
        start = time.perf_counter()
        encoded.append(encoding.encode(update, weight=1, rng=rng))
        encode_seconds += time.perf_counter() - start

    # Protocol vs the keystream it must expand: each seeded share is expanded
    # once by the client and once by its aggregator.
    expansions = 2 * n * (args.aggregators - 1)
    expanded_bytes = expansions * encoded[0].nbytes
    ratios, protocol_times, keystream_times = [], [], []
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(expansions):
            aes_ctr_keystream(encoded[0].nbytes)
        keystream_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        aggregate, _, ledger = run_protocol(protocol, encoded)
        protocol_times.append(time.perf_counter() - start)
        ratios.append(protocol_times[-1] / keystream_times[-1])
    expected = np.zeros_like(encoded[0])
    for vector in encoded:
        expected += vector
    exact = bool(np.array_equal(aggregate.total, expected))

    client_bytes = [ledger.bytes_sent[f"client/{i}"] for i in range(n)]
    from shamir import measure as shamir_measure

    emit({
        "benchmark": "secret_sharing",
        "clients": n,
        "dimension": d,
        "aggregators": args.aggregators,
        "ring_bits": encoding.ring_bits,
        "exact_sum": exact,
        "encode_seconds_per_client": encode_seconds / n,
        "numpy_uniform_seconds_per_client": uniform_seconds / n,
        "encode_over_uniform": encode_seconds / uniform_seconds,
        "protocol_seconds": float(np.median(protocol_times[1:])),
        "aes_ctr_keystream_seconds": float(np.median(keystream_times[1:])),
        "keystream_bytes": expanded_bytes,
        "protocol_over_keystream": float(np.median(ratios[1:])),
        "protocol_over_keystream_first_run": ratios[0],
        "heap": heap,
        "upload_bytes_per_client": float(np.mean(client_bytes)),
        "upload_over_4d": float(np.mean(client_bytes)) / (4 * d),
        "shamir": shamir_measure(),
        "targets": {"encode_over_uniform": 2.0, "protocol_over_keystream": 2.0, "upload_over_4d": 1.01},
    })


if __name__ == "__main__":
    main()
