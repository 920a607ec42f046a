"""SecAgg / SecAgg+ benchmark: one full round in the in-process simulator; prints JSON.

    python benchmarks/secagg.py              # the published figures (about two minutes, plus Flower's rounds)
    python benchmarks/secagg.py --quick      # small sizes, a smoke test
    python benchmarks/secagg.py --sparse-only   # the two semi-honest SecAgg+ cases only (under a minute)

Measured side by side in one run, each case repeated ``--repeat`` times (default 5); the
machine is shared, so each figure is the best (least disturbed) of the repeats:

- complete graph (SecAgg), n=100, d=100,000, no dropout and 10% dropout after
  ShareKeys: full-round wall and CPU seconds, seconds per phase per party,
  bytes per client (target: wall <= 3 s);
- SecAgg+ with k=11 neighbours, same n and d (target: wall <= 0.75 s);
- malicious-server mode, same n and d, on the complete graph and with k=11
  (whose graph the clients' committed coins draw), beside the semi-honest
  cases above;
- the ratio of the round's CPU time to the CPU time of the primitive work it
  cannot avoid, timed right after in the same process: one AES-256-CTR
  keystream (fresh key, reused output buffer) per mask the round expanded,
  one X25519 exchange per agreement it performed and, in malicious-server
  mode, one Ed25519 signature per signature made and one Ed25519
  verification per signature checked, on statements of the round's mean
  length (target: <= 2). Reported for the whole round
  (``cpu_over_primitives``, which includes the simulator's message encoding)
  and for the engines alone (``engine_cpu_over_primitives``); the target
  figures are the worst semi-honest case and the worst malicious-server case
  of the former;
- upload bytes per client over 4 d at d=1,000,000, n=100, 32-bit ring,
  complete graph (target: <= 1.02; Bonawitz et al. report 1.73x).

The script re-executes itself with glibc's heap kept warm, as a long-running
client or aggregator process keeps it (``common.WARM_HEAP``); set
SECUREFL_BENCH_COLD_HEAP=1 to measure without. Every case checks the
aggregate against a numpy reference sum.

When ``flwr`` is importable the script also runs Flower's SecAgg+ on the same
workload (``"flower"``; ``"not installed"`` otherwise): one pairwise mask
expanded and accumulated, side by side; and, unless ``--skip-flower-round``,
full rounds of Flower's ``SecAggPlusWorkflow`` and of securefl's SecAgg+
(both n=100, d=100,000, the same k and threshold) in Flower's simulation
engine, each side in its own process (``benchmarks/flower.py``), with the
ratio of their warm round times. Flower's clients fail with an even number of
shares, so k=11 is compared at k=10 there. Flower's round is also set
against the in-process k=11 round above, the comparison the targets are
written for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from securefl import ring  # noqa: E402
from securefl.protocols import SecAgg  # noqa: E402
from securefl.protocols.secagg.config import resolve_threshold  # noqa: E402
from securefl.protocols.secagg.primitives import counters  # noqa: E402
from securefl.protocols.wire import SERVER, client_id  # noqa: E402
from securefl.simulation import run_protocol  # noqa: E402

from common import ensure_warm_heap  # noqa: E402

TARGETS = {
    "complete_wall_seconds": 3.0,
    "sparse_wall_seconds": 0.75,
    "cpu_over_primitives": 2.0,
    "malicious_cpu_over_primitives": 2.0,
    "upload_over_4d": 1.02,
}
WORK = ("agreements", "expansions", "keystream_bytes", "signatures", "verifications", "signed_bytes", "verified_bytes")


def _inputs(clients: int, length: int, ring_bits: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = ring.ring_dtype(ring_bits)
    return [rng.integers(0, 1 << ring_bits, size=length, dtype=np.uint64).astype(dtype) for _ in range(clients)]


def _reference(inputs: list[np.ndarray], included, ring_bits: int) -> np.ndarray:
    total = np.zeros_like(inputs[0])
    for index in included:
        np.add(total, inputs[index], out=total)
    return ring.reduce(total, ring_bits)


def time_primitives(*, agreements: int, expansions: int, keystream_bytes: int, signatures: int = 0,
                    verifications: int = 0, signed_bytes: int = 0, verified_bytes: int = 0) -> float:
    """CPU seconds of ``agreements`` X25519 exchanges, ``expansions`` AES-256-CTR keystreams (of
    ``keystream_bytes`` in all), ``signatures`` Ed25519 signatures and ``verifications`` Ed25519
    verifications (of ``signed_bytes`` and ``verified_bytes`` in all)."""
    signers = [Ed25519PrivateKey.generate() for _ in range(min(max(signatures, verifications), 16))]
    signed = os.urandom(signed_bytes // max(signatures, 1))
    verified = os.urandom(verified_bytes // max(verifications, 1))
    checks = [(signer.public_key(), signer.sign(verified)) for signer in signers]
    private = X25519PrivateKey.generate()
    publics = [X25519PublicKey.from_public_bytes(X25519PrivateKey.generate().public_key().public_bytes_raw())
               for _ in range(min(agreements, 256))]
    per_expansion = keystream_bytes // max(expansions, 1)
    zeros = np.zeros(per_expansion, dtype=np.uint8)
    out = np.empty(per_expansion + 15, dtype=np.uint8)
    keys = [os.urandom(32) for _ in range(min(expansions, 256))]
    counter = bytes(16)
    start = time.process_time()
    for i in range(agreements):
        private.exchange(publics[i % len(publics)])
    for i in range(expansions):
        Cipher(algorithms.AES(keys[i % len(keys)]), modes.CTR(counter)).encryptor().update_into(zeros, out)
    for i in range(signatures):
        signers[i % len(signers)].sign(signed)
    for i in range(verifications):
        public, signature = checks[i % len(checks)]
        public.verify(signature, verified)
    return time.process_time() - start


class _EngineClock:
    """Wraps a protocol so that the CPU time spent inside its engines is summed (the rest is transport)."""

    def __init__(self, protocol: SecAgg) -> None:
        self.protocol = protocol
        self.seconds = 0.0

    def __getattr__(self, name: str):
        return getattr(self.protocol, name)

    def _timed(self, method):
        def call(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start
        return call

    def setup(self, **arguments):
        parties = self.protocol.setup(**arguments)
        for engine in [parties.server, *parties.clients]:
            for name in ("handle", "begin_phase", "end_phase", "result", "provide_input"):
                if hasattr(engine, name):
                    setattr(engine, name, self._timed(getattr(engine, name)))
        return parties


def _phase_table(ledger, phases) -> dict:
    table = {}
    for phase in [*phases, "result"]:
        parties = ledger.seconds.get(phase, {})
        clients = [seconds for party, seconds in parties.items() if party != SERVER]
        table[phase] = {
            "server": round(parties.get(SERVER, 0.0), 5),
            "client_mean": round(float(np.mean(clients)), 5) if clients else 0.0,
            "client_max": round(float(np.max(clients)), 5) if clients else 0.0,
        }
    return table


def run_case(name: str, protocol: SecAgg, *, clients: int, length: int, dropouts: dict, repeat: int,
             seed: int, ratio: bool = True) -> dict:
    bits = protocol.encoding.ring_bits
    inputs = _inputs(clients, length, bits, seed)
    runs = []
    for _ in range(repeat):
        counters.reset()
        clock = _EngineClock(protocol)
        wall, cpu = time.perf_counter(), time.process_time()
        aggregate, _, ledger = run_protocol(clock, inputs, dropouts=dropouts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        work = {key: getattr(counters, key) for key in WORK}
        if not np.array_equal(aggregate.total, _reference(inputs, aggregate.included, bits)):
            raise AssertionError(f"{name}: the aggregate is not the exact sum of the survivors")
        # The bare primitive work of this very round, timed right after it (same conditions).
        primitive = time_primitives(**work) if ratio else None
        runs.append(dict(wall=wall, cpu=cpu, engine_cpu=clock.seconds, primitive=primitive, aggregate=aggregate,
                         ledger=ledger, work=work))
    # The machine is shared: report the best of the repeats for each figure (the least disturbed).
    fastest = min(runs, key=lambda run: run["wall"])
    wall, aggregate, ledger = fastest["wall"], fastest["aggregate"], fastest["ledger"]
    cpu = min(run["cpu"] for run in runs)
    engine_cpu = min(run["engine_cpu"] for run in runs)
    agreements, expansions, keystream_bytes = (fastest["work"][key] for key in
                                               ("agreements", "expansions", "keystream_bytes"))
    ids = [client_id(i) for i in range(clients)]
    up = [ledger.bytes_sent.get(c, 0) for c in ids if ledger.bytes_sent.get(c, 0)]
    down = [ledger.bytes_received.get(c, 0) for c in ids if ledger.bytes_received.get(c, 0)]
    survivors = [client_id(i) for i in aggregate.included]
    result = {
        "case": name,
        "protocol": protocol.describe(),
        "clients": clients,
        "vector_length": length,
        "ring_bits": bits,
        "dropped": len(dropouts),
        "survivors": len(aggregate.included),
        "wall_seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 4),
        "engine_cpu_seconds": round(engine_cpu, 4),
        "exact": True,
        "seconds_per_phase_per_party": _phase_table(ledger, protocol.phases),
        "bytes_up_per_client": round(float(np.mean(up)), 1),
        "bytes_up_per_surviving_client": round(float(np.mean([ledger.bytes_sent[c] for c in survivors])), 1),
        "bytes_down_per_client": round(float(np.mean(down)), 1),
        "upload_over_4d": round(float(np.mean([ledger.bytes_sent[c] for c in survivors])) / (4 * length), 5),
        "bytes_server_received": int(ledger.bytes_received.get(SERVER, 0)),
        "x25519_agreements": agreements,
        "mask_expansions": expansions,
        "keystream_bytes": keystream_bytes,
        "ed25519_signatures": fastest["work"]["signatures"],
        "ed25519_verifications": fastest["work"]["verifications"],
    }
    if ratio:
        primitive = min(run["primitive"] for run in runs)
        result["primitive_cpu_seconds"] = round(primitive, 4)
        result["cpu_over_primitives"] = round(cpu / primitive, 3)
        result["engine_cpu_over_primitives"] = round(engine_cpu / primitive, 3)
        result["cpu_over_primitives_each_repeat"] = [round(run["cpu"] / run["primitive"], 3) for run in runs]
    return result


def _flower_mask(length: int, masks: int = 50) -> dict:
    """One pairwise mask of ``length`` words expanded and accumulated: Flower's SecAgg+ and ours.

    Flower's ``pseudo_rand_gen`` is numpy's MT19937 seeded with 32 bits (not
    a cryptographic PRG); ours is AES-256-CTR under an HKDF key from 32 bytes.
    """
    import flwr
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    from securefl.protocols.secagg.primitives import MaskAccumulator

    seeds = [os.urandom(32) for _ in range(masks)]
    start = time.process_time()
    total = np.zeros(length, dtype=np.int64)
    for seed in seeds:
        total += pseudo_rand_gen(seed, 1 << 32, [(length,)])[0]
    flower = (time.process_time() - start) / masks
    accumulator = MaskAccumulator(np.zeros(length, dtype=np.uint32), 32)
    start = time.process_time()
    for seed in seeds:
        accumulator.add(seed, b"benchmark")
    accumulator.finish()  # add records each mask; finish expands and folds them all
    ours = (time.process_time() - start) / masks
    return {
        "version": flwr.__version__,
        "compared": f"one pairwise mask of {length} words, expanded and accumulated",
        "flower_seconds_per_mask": round(flower, 6),
        "securefl_seconds_per_mask": round(ours, 6),
        "flower_over_securefl": round(flower / ours, 2),
    }


def _flower_round(protocol: SecAgg, *, clients: int, length: int, in_process_seconds: float, rounds: int) -> dict:
    """Full rounds of Flower's SecAggPlusWorkflow and of our SecAgg+ in Flower's simulation engine.

    Flower's SecAgg+ clients fail with an even number of shares (k + 1), so an
    odd k is compared at k - 1 on both sides in the engine; the in-process
    figure keeps our round at k (more work for us).
    """
    import flower as flower_benchmark  # benchmarks/flower.py

    in_process_neighbors = protocol.neighbors
    protocol = protocol if protocol.neighbors % 2 == 0 else SecAgg(neighbors=protocol.neighbors - 1)
    group = protocol.neighbors + 1
    threshold = resolve_threshold(protocol.threshold, group, malicious_server=protocol.malicious_server)
    arguments = argparse.Namespace(clients=clients, parameters=length, rounds=rounds, neighbors=protocol.neighbors,
                                   threshold=threshold, timeout=1800.0)
    sides = {side: flower_benchmark.run_side(side, arguments) for side in ("securefl", "flower")}
    flower_seconds = sides["flower"]["median_warm_round_seconds"]
    securefl_seconds = sides["securefl"]["median_warm_round_seconds"]
    return {
        "compared": (f"one secure aggregation round, n={clients}, k={protocol.neighbors} ({group} shares each), "
                     f"threshold {threshold}, {length} parameters, in Flower's simulation engine (Ray), "
                     f"median of the warm rounds of {rounds}"),
        "flower_seconds": round(flower_seconds, 3),
        "securefl_seconds": round(securefl_seconds, 3),
        "flower_over_securefl": round(flower_seconds / securefl_seconds, 2),
        "securefl_in_process_seconds": round(in_process_seconds, 4),
        "in_process_neighbors": in_process_neighbors,
        "flower_over_securefl_in_process": round(flower_seconds / in_process_seconds, 1),
        "round_seconds": {side: [round(seconds, 3) for seconds in figures["round_seconds"]]
                          for side, figures in sides.items()},
    }


def _flower(protocol: SecAgg, *, clients: int, length: int, in_process_seconds: float, full_round: bool) -> dict | str:
    try:
        import flwr  # noqa: F401
    except ImportError:
        return "not installed"
    report: dict = {"mask": _flower_mask(length)}
    if full_round:
        report["round"] = _flower_round(protocol, clients=clients, length=length,
                                        in_process_seconds=in_process_seconds, rounds=3)
    return report


def _sparse_only(args: argparse.Namespace, heap: dict, *, clients: int, length: int, sparse: int,
                 dropped: dict) -> int:
    """``--sparse-only``: the two semi-honest SecAgg+ cases, with the figures they give."""
    cases = [
        run_case(f"secagg+ k={sparse}", SecAgg(neighbors=sparse), clients=clients, length=length, dropouts={},
                 repeat=args.repeat, seed=3),
        run_case(f"secagg+ k={sparse}, 10% dropout after share-keys", SecAgg(neighbors=sparse), clients=clients,
                 length=length, dropouts=dropped, repeat=args.repeat, seed=4),
    ]
    figures = {"sparse_wall_seconds": cases[0]["wall_seconds"],
               "cpu_over_primitives": max(case["cpu_over_primitives"] for case in cases)}
    report = {
        "benchmark": "secagg",
        "quick": args.quick,
        "sparse_only": True,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "heap": heap,
        "targets": {name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
                    for name, value in figures.items()} if not args.quick else {},
        "cases": cases,
    }
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not the figures)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per case; the best wall time is reported")
    parser.add_argument("--skip-upload", action="store_true", help="skip the d = 1,000,000 upload case")
    parser.add_argument("--skip-flower-round", action="store_true",
                        help="skip the full Flower SecAgg+ rounds (a few minutes; run only when flwr is installed)")
    parser.add_argument("--sparse-only", action="store_true",
                        help="only the semi-honest SecAgg+ cases (no dropout, 10%% dropout) and their figures")
    args = parser.parse_args(argv)
    heap = ensure_warm_heap()
    clients, length, big = (20, 2_000, 20_000) if args.quick else (100, 100_000, 1_000_000)
    sparse = 5 if args.quick else 11
    dropped = {i: "masked-input" for i in range(0, clients, 10)}  # 10% drop right after ShareKeys
    # Against a malicious server a neighbourhood of m tolerates fewer than m/3 dropouts, and the graph is
    # random: 10% could put too many in one neighbourhood of 12 (k=11), so drop what any graph survives.
    few = {i: "masked-input" for i in ((0,) if args.quick else (0, 33, 66))}
    malicious_repeat = min(args.repeat, 3)  # a malicious-server complete round is the dearest case
    if args.sparse_only:
        return _sparse_only(args, heap, clients=clients, length=length, sparse=sparse, dropped=dropped)
    cases = [
        run_case("complete", SecAgg(), clients=clients, length=length, dropouts={}, repeat=args.repeat, seed=1),
        run_case("complete, 10% dropout after share-keys", SecAgg(), clients=clients, length=length,
                 dropouts=dropped, repeat=args.repeat, seed=2),
        run_case(f"secagg+ k={sparse}", SecAgg(neighbors=sparse), clients=clients, length=length, dropouts={},
                 repeat=args.repeat, seed=3),
        run_case(f"secagg+ k={sparse}, 10% dropout after share-keys", SecAgg(neighbors=sparse), clients=clients,
                 length=length, dropouts=dropped, repeat=args.repeat, seed=4),
        run_case("complete, malicious server", SecAgg(malicious_server=True), clients=clients, length=length,
                 dropouts={}, repeat=malicious_repeat, seed=5),
        run_case(f"secagg+ k={sparse}, malicious server", SecAgg(neighbors=sparse, malicious_server=True),
                 clients=clients, length=length, dropouts={}, repeat=args.repeat, seed=7),
        run_case(f"secagg+ k={sparse}, malicious server, {len(few)} dropped after share-keys",
                 SecAgg(neighbors=sparse, malicious_server=True), clients=clients, length=length, dropouts=few,
                 repeat=args.repeat, seed=8),
    ]
    if not args.skip_upload:
        cases.append(run_case("upload, complete, 32-bit ring", SecAgg(), clients=clients, length=big, dropouts={},
                              repeat=1, seed=6, ratio=False))
    by_name = {case["case"]: case for case in cases}
    complete = [by_name["complete"], by_name["complete, 10% dropout after share-keys"]]
    semi_honest = [case for case in cases if "cpu_over_primitives" in case and "malicious" not in case["case"]]
    malicious = [case for case in cases if "cpu_over_primitives" in case and "malicious" in case["case"]]
    figures = {
        "complete_wall_seconds": max(case["wall_seconds"] for case in complete),
        "sparse_wall_seconds": by_name[f"secagg+ k={sparse}"]["wall_seconds"],
        # The whole round (engines and the simulator's message encoding), worst semi-honest case and
        # worst malicious-server case (whose primitives include its Ed25519 signatures and verifications).
        "cpu_over_primitives": max(case["cpu_over_primitives"] for case in semi_honest),
        "malicious_cpu_over_primitives": max(case["cpu_over_primitives"] for case in malicious),
    }
    if not args.skip_upload:
        figures["upload_over_4d"] = by_name["upload, complete, 32-bit ring"]["upload_over_4d"]
    report = {
        "benchmark": "secagg",
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "heap": heap,
        "targets": {name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
                    for name, value in figures.items()} if not args.quick else {},
        "cases": cases,
        "flower": _flower(SecAgg(neighbors=sparse), clients=clients, length=length,
                          in_process_seconds=by_name[f"secagg+ k={sparse}"]["wall_seconds"],
                          full_round=not (args.quick or args.skip_flower_round)),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
