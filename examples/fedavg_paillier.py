"""FedAvg on the embedded digits, aggregated by packed Paillier encryption.

Clients encrypt their packed, quantised updates under the key holder's
Paillier public key (2048-bit); the server multiplies ciphertexts (adding
the plaintexts) without reading any, and the key holder decrypts only the
aggregate of at least two clients. Obfuscators r^n mod n^2 are computed
ahead of need, as a client would while it trains.

    python examples/fedavg_paillier.py
"""

from securefl.fl import FedAvg, FedAvgConfig, RoundRecord
from securefl.protocols import Paillier


def report(record: RoundRecord) -> None:
    print(f"round {record.round:2d}  accuracy {record.accuracy:.3f}  "
          f"upload {record.bytes_up_per_client:,.0f} B  {record.seconds:.1f} s")


def main() -> None:
    protocol = Paillier(min_clients=2)
    history = FedAvg(protocol, FedAvgConfig(clients=10, rounds=4, seed=0)).run(progress=report)
    saw = any(record.server_saw_individual_updates for record in history.records)
    print(protocol.describe())
    print(f"final test accuracy {history.final_accuracy:.3f}; server saw individual updates: {saw}")


if __name__ == "__main__":
    main()
