"""FedAvg with the user's CNN (examples/own_model.py) through BFV, plaintext and Paillier; prints JSON.

    .venv/bin/python benchmarks/lattice_fedavg.py [--clients 10] [--rounds 5] [--paillier-rounds 1]

The example's model, non-IID split, local training and seed, unchanged;
only the protocol differs. Each round every client trains from the global
model and one ``SecureAggregator`` aggregates the client models. Per
protocol: test accuracy after every round, seconds per round (training
included) and seconds of aggregation per round (``aggregate_models``:
flatten, encode, every party's protocol work in process, decode). BFV and
plaintext run ``--rounds`` rounds; our default Paillier (2048-bit key)
runs ``--paillier-rounds`` rounds, for its time per round (its aggregate is
exact as BFV's is, so its accuracy follows the same path). Every
aggregator's stochastic rounding draws from ``numpy.random.default_rng(seed)``,
so the protocols see the same encoded updates and an exact protocol gives
plaintext's accuracy round for round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.own_model import accuracy, make_cnn, non_iid_loaders, train  # noqa: E402
from securefl import SecureAggregator  # noqa: E402
from securefl.protocols import BFV, Paillier, Plaintext  # noqa: E402


def federate(aggregator: SecureAggregator, loaders: list, test: Any, rounds: int, seed: int) -> dict:
    """The example's ``federate``, timed: the same model, seed, training and aggregation call."""
    torch.manual_seed(seed)
    global_model = make_cnn()
    local_model = make_cnn()
    history = []
    for _ in range(rounds):
        started = time.perf_counter()
        states, counts = [], []
        for loader in loaders:
            local_model.load_state_dict(global_model.state_dict())
            train(local_model, loader)
            states.append({k: v.clone() for k, v in local_model.state_dict().items()})
            counts.append(len(loader.dataset))
        aggregation_started = time.perf_counter()
        result = aggregator.aggregate_models(states, reference=global_model.state_dict(), weights=counts)
        aggregation = time.perf_counter() - aggregation_started
        global_model.load_state_dict(result.model)
        history.append({"accuracy": accuracy(global_model, test), "round_seconds": time.perf_counter() - started,
                        "aggregation_seconds": aggregation, "clients": len(result.included)})
    return {
        "accuracy": history[-1]["accuracy"],
        "accuracy_by_round": [entry["accuracy"] for entry in history],
        "seconds_per_round": sum(entry["round_seconds"] for entry in history) / rounds,
        "aggregation_seconds_per_round": sum(entry["aggregation_seconds"] for entry in history) / rounds,
        "rounds": rounds,
        "parameters": sum(p.numel() for p in global_model.parameters()),
        "state_values": sum(v.numel() for v in global_model.state_dict().values() if v.is_floating_point()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paillier-rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaders, test = non_iid_loaders(args.clients, args.seed)
    bfv = BFV()

    def aggregator(protocol: Any) -> SecureAggregator:
        return SecureAggregator(protocol, rng=np.random.default_rng(args.seed))  # the same rounding for every row

    report: dict[str, Any] = {
        "configuration": {"clients": len(loaders), "rounds": args.rounds, "seed": args.seed,
                          "cores": os.cpu_count(), "bfv": bfv.describe(), "torch_threads": 1},
        "plaintext": federate(aggregator(Plaintext()), loaders, test, args.rounds, args.seed),
        "bfv": federate(aggregator(bfv), loaders, test, args.rounds, args.seed),
    }
    if args.paillier_rounds:
        report["paillier_default"] = federate(aggregator(Paillier()), loaders, test, args.paillier_rounds, args.seed)
    plain, lattice = report["plaintext"], report["bfv"]
    report["bfv_reaches_plaintext_accuracy"] = lattice["accuracy"] >= plain["accuracy"] - 0.01
    report["bfv_accuracy_path_equals_plaintext"] = lattice["accuracy_by_round"] == plain["accuracy_by_round"]
    if "paillier_default" in report:
        report["aggregation_paillier_over_bfv"] = (report["paillier_default"]["aggregation_seconds_per_round"]
                                                   / lattice["aggregation_seconds_per_round"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
