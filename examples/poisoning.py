"""Model-replacement poisoning: plain secret sharing averages it in, validated sharing rejects it.

    python examples/poisoning.py [--rounds 10] [--quick]

1 of 10 clients sends reference + 100 x (local - reference) (Bagdasaryan et
al. 2020). Three runs at one seed: clean secret sharing, poisoned secret
sharing (the server cannot see the boosted update, so it is averaged in) and
poisoned validated sharing (the aggregators verify ||x||_2 <= B on shares and
exclude the client). Prints a JSON object, then a short summary.
"""

from __future__ import annotations

import argparse
import json
import warnings

from securefl.errors import ClippingWarning
from securefl.fl import FedAvg, FedAvgConfig, ModelReplacement
from securefl.protocols.catalog import make_protocol

ATTACKER = 3
BOOST = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 rounds (for the tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norm-bound", type=float, default=10.0)
    args = parser.parse_args()
    config = FedAvgConfig(clients=10, rounds=5 if args.quick else args.rounds, seed=args.seed)
    attack = ModelReplacement(clients=(ATTACKER,), boost=BOOST)
    runs = {
        "clean": ("secret-sharing", None),
        "poisoned_secret_sharing": ("secret-sharing", attack),
        "poisoned_validated_sharing": ("validated-sharing", attack),
    }
    results = {}
    for name, (protocol_name, run_attack) in runs.items():
        options = {"norm_bound": args.norm_bound} if protocol_name == "validated-sharing" else {}
        with warnings.catch_warnings():  # the boosted update's cut coordinates, expected here
            warnings.simplefilter("ignore", ClippingWarning)
            history = FedAvg(make_protocol(protocol_name, **options), config, attack=run_attack).run()
        results[name] = {
            "protocol": protocol_name,
            "final_accuracy": history.final_accuracy,
            "rejected_rounds": sum(1 for r in history.records if r.rejected),
            "rejected": [{str(c): reason for c, reason in r.rejected.items()} for r in history.records],
            "rounds": len(history.records),
        }
    report = {"attack": attack.to_dict(), "clients": config.clients, "rounds": config.rounds, "seed": config.seed,
              "norm_bound": args.norm_bound, "runs": results}
    print(json.dumps(report, indent=2))
    clean = results["clean"]["final_accuracy"]
    plain = results["poisoned_secret_sharing"]["final_accuracy"]
    validated = results["poisoned_validated_sharing"]
    print(f"clean accuracy {clean:.4f}; poisoned secret-sharing {plain:.4f}; poisoned validated-sharing "
          f"{validated['final_accuracy']:.4f} with client {ATTACKER} rejected in {validated['rejected_rounds']} of "
          f"{validated['rounds']} rounds")


if __name__ == "__main__":
    main()
