"""Validated sharing vs plain secret sharing on one workload: client proof time, verification time, upload.

Prints one JSON object. Both protocols run in the same process on the same
encoded updates (d coordinates, n clients, 2 aggregators). Upload is the
bytes a client sends (all its messages), over 4 d (a 32-bit ring vector).
Times are wall seconds on one core: the script pins BLAS (the projection's
matrix products) to one thread before numpy loads.

    python benchmarks/validated_sharing.py --length 100000 --clients 100
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

from securefl.encoding import Encoding  # noqa: E402
from securefl.protocols import SecretSharing, ValidatedSharing  # noqa: E402
from securefl.simulation import run_protocol  # noqa: E402


def _workload(encoding: Encoding, clients: int, length: int, bound: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(clients):
        update = rng.normal(scale=0.01, size=length)
        update *= min(1.0, 0.9 * bound / float(np.linalg.norm(update)))
        inputs.append(encoding.encode(update, rng=rng))
    return inputs


def _client_bytes(ledger, clients: int) -> float:
    return float(np.mean([ledger.bytes_sent[f"client/{i}"] for i in range(clients)]))


def _seconds(ledger, party_prefix: str, phases: tuple[str, ...]) -> float:
    return float(sum(seconds for phase in phases for party, seconds in ledger.seconds[phase].items()
                     if party.startswith(party_prefix)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--norm-bound", type=float, default=1.0)
    parser.add_argument("--digit-bits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--value-bits", type=int, default=12)
    args = parser.parse_args()
    encoding = Encoding(value_bits=args.value_bits, max_weight=1, max_clients=max(args.clients, 2))
    inputs = _workload(encoding, args.clients, args.length, args.norm_bound, seed=0)
    plain = SecretSharing(encoding=encoding)
    aggregate, _, ledger = run_protocol(plain, inputs, session=os.urandom(16))
    plain_upload = _client_bytes(ledger, args.clients)
    report: dict = {
        "length": args.length, "clients": args.clients, "value_bits": args.value_bits,
        "norm_bound": args.norm_bound, "cores": os.cpu_count(),
        "secret_sharing": {
            "client_seconds_per_round": _seconds(ledger, "client/", plain.phases) / args.clients,
            "upload_bytes": plain_upload, "upload_over_4d": plain_upload / (4 * args.length),
        },
        "validated_sharing": {},
    }
    for digit_bits in args.digit_bits:
        protocol = ValidatedSharing(norm_bound=args.norm_bound, digit_bits=digit_bits, encoding=encoding)
        started = time.perf_counter()
        result, _, ledger = run_protocol(protocol, inputs, session=os.urandom(16))
        wall = time.perf_counter() - started
        if result.rejected or not np.array_equal(result.total, aggregate.total):
            raise SystemExit("validated sharing did not return the exact sum of every honest client")
        upload = _client_bytes(ledger, args.clients)
        statement = protocol.statement(args.length + 1)
        helper = _seconds(ledger, "aggregator/", ("verify", "exchange"))
        report["validated_sharing"][f"base-{1 << digit_bits}"] = {
            "client_proof_seconds_per_round": _seconds(ledger, "client/", protocol.phases) / args.clients,
            "verification_seconds_per_client_per_aggregator": helper / (2 * args.clients),
            "aggregate_seconds_per_client_per_aggregator":
                _seconds(ledger, "aggregator/", ("aggregate",)) / (2 * args.clients),
            "upload_bytes": upload,
            "upload_over_4d": upload / (4 * args.length),
            "upload_over_secret_sharing": upload / plain_upload,
            "witness_elements": statement.witness_length,
            "proof_elements": statement.proof_length,
            "verifier_share_elements": statement.verifier_length,
            "soundness_error_log2": float(np.log2(statement.soundness_error)),
            "round_wall_seconds": wall,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
