"""The cost of exact distributed noise over SecAgg: one round with and without it; prints JSON.

    python benchmarks/exact_noise.py            # n=100, d=100,000, complete graph, 16-bit ring (a few minutes)
    python benchmarks/exact_noise.py --quick    # n=20, d=10,000

Both rounds run side by side in one process, driven engine by engine (sans-I/O),
so every client's CPU seconds (``time.process_time`` around its own ``handle``
calls) and bytes (the canonical encoding of what it sends and receives) are
its own; the server's CPU is timed the same way, its unmasking included. With
exact noise each client Shamir-shares one extra seed (one 37-byte share per
neighbour, sealed with the others), expands and adds its whole Sk(V/t) share,
and reveals one extra share for each survivor in D(U) (the m - t whose noise
goes); the server reconstructs m - t seeds and expands m - t shares to remove
them. Each case checks the aggregate against the exact sum: the residue is
the t shares kept, Sk(V).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine  # noqa: E402
from securefl import ring  # noqa: E402
from securefl.encoding import Encoding  # noqa: E402
from securefl.protocols import SecAgg  # noqa: E402
from securefl.protocols.wire import client_index  # noqa: E402

BITS = 16
# The ring distributed DP runs SecAgg over (``DistributedDP.ring_encoding``): Z_2^16, values already encoded.
RING = Encoding(clip=1.0, value_bits=2, ring_bits=BITS, max_clients=(1 << (BITS - 1)) - 1, max_weight=1)


def one_round(protocol: SecAgg, *, clients: int, length: int, dropped: int) -> dict:
    """Run one round by hand; per-party CPU seconds and bytes."""
    session = os.urandom(16)
    parties = protocol.setup(clients=clients, vector_length=length, session=session, round=1)
    server, engines = parties.server, {engine.party: engine for engine in parties.clients}
    rng = np.random.default_rng(0)
    inputs = [ring.from_signed(rng.integers(-100, 100, size=length), BITS) for _ in range(clients)]
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    cpu = {party: 0.0 for party in engines}
    sent = {party: 0 for party in engines}
    received = {party: 0 for party in engines}
    server_cpu = 0.0
    silent = set(range(dropped))
    wall = time.perf_counter()
    for phase in protocol.phases:
        started = time.process_time()
        requests = server.begin_phase(phase)
        server_cpu += time.process_time() - started
        replies = []
        for request in requests:
            recipient = request.recipient
            if phase == "masked-input" and client_index(recipient) in silent:
                continue  # these drop after share-keys
            received[recipient] += len(request.to_bytes())
            started = time.process_time()
            answer = engines[recipient].handle(request)
            cpu[recipient] += time.process_time() - started
            for reply in answer:
                sent[recipient] += len(reply.to_bytes())
            replies.extend(answer)
        started = time.process_time()
        for reply in replies:
            server.handle(reply)
        server.end_phase(phase)
        server_cpu += time.process_time() - started
    wall = time.perf_counter() - wall
    result = server.result()
    survivors = [u for u in range(clients) if u not in silent]
    assert result.included == tuple(survivors)
    exact = np.sum([ring.to_signed(inputs[u], BITS) for u in survivors], axis=0)
    residue = ring.to_signed(ring.sub(result.total.copy(), ring.from_signed(exact, BITS), BITS), BITS)
    noise = server._parameters.noise
    if noise is None:
        assert not residue.any()
    else:  # what stays: the t shares of U \ D(U), Sk(V) in all
        assert abs(residue.var() - noise.variance) < 0.05 * noise.variance
    client_cpu = [cpu[party] for party in engines]
    return {
        "client_cpu_seconds_mean": float(np.mean(client_cpu)),
        "client_cpu_seconds_max": float(np.max(client_cpu)),
        "client_upload_bytes_mean": float(np.mean(list(sent.values()))),
        "client_download_bytes_mean": float(np.mean(list(received.values()))),
        "server_cpu_seconds": server_cpu,
        "round_wall_seconds": wall,
        "survivors": len(survivors),
        "noise_shares_removed": 0 if noise is None else len(survivors) - noise.kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=20, d=10,000")
    args = parser.parse_args()
    clients, length = (20, 10_000) if args.quick else (100, 100_000)
    variance = 4.0e6  # ring units; the cost does not depend on it
    figures: dict = {"machine": machine(), "clients": clients, "dimension": length, "ring_bits": BITS,
                     "threshold": SecAgg(encoding=RING).minimum_inputs(clients), "cases": {}}
    for dropped in (0, clients // 10):
        plain = one_round(SecAgg(encoding=RING), clients=clients, length=length, dropped=dropped)
        exact = one_round(SecAgg(encoding=RING, noise_variance=variance), clients=clients, length=length,
                          dropped=dropped)
        ratios = {f"{key}_ratio": exact[key] / plain[key] for key in
                  ("client_cpu_seconds_mean", "client_upload_bytes_mean", "client_download_bytes_mean",
                   "server_cpu_seconds") if plain[key]}
        figures["cases"][f"dropped_{dropped}"] = {"without_exact_noise": plain, "with_exact_noise": exact,
                                                  **ratios}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
