"""FedAvg on the embedded digits with the plaintext baseline.

INSECURE BY DESIGN: the server reads every client's update. This is the
reference point for accuracy and overhead; see fedavg_secret_sharing.py for
the same run where the server only sees the sum.

    python examples/fedavg_plaintext.py
"""

from securefl.fl import FedAvg, FedAvgConfig, RoundRecord
from securefl.protocols import Plaintext


def report(record: RoundRecord) -> None:
    print(
        f"round {record.round:2d}  accuracy {record.accuracy:.3f}  loss {record.loss:.3f}  "
        f"clients {len(record.included)}/{len(record.sampled)}  upload {record.bytes_up_per_client:,.0f} B"
    )


def main() -> None:
    protocol = Plaintext()
    config = FedAvgConfig(clients=10, rounds=20, partition="iid", seed=0)
    history = FedAvg(protocol, config).run(progress=report)
    saw = any(record.server_saw_individual_updates for record in history.records)
    print(f"{protocol.describe()}")
    print(f"final test accuracy {history.final_accuracy:.3f}; server saw individual updates: {saw}")


if __name__ == "__main__":
    main()
