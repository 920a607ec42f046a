"""DP-FedAvg: user-level central differential privacy on top of secure aggregation.

Each round every client joins with probability q, clips its update to L2
norm C and submits it through secret sharing; the server adds Gaussian noise
N(0, (z C)^2) to the sum and divides by the expected number of clients. The
noise multiplier z is calibrated so that the released model is
(8, 1e-5)-DP after 20 rounds; the accountant reports epsilon as it goes.
DP is a plugin of the aggregation: ``FedAvg(protocol, config, dp=CentralDP(...))``.

    python examples/fedavg_central_dp.py
"""

from securefl.fl import FedAvg, FedAvgConfig, RoundRecord
from securefl.privacy.plugins import CentralDP
from securefl.protocols import SecretSharing


def report(record: RoundRecord) -> None:
    print(f"round {record.round:2d}  accuracy {record.accuracy:.3f}  clients {len(record.included):3d}  "
          f"epsilon {record.epsilon:.2f}")


def main() -> None:
    dp = CentralDP(target_epsilon=8.0, delta=1e-5, rounds=20, sample_rate=0.3, clip=1.0)
    config = FedAvgConfig(clients=100, rounds=20, hidden=16, seed=0)  # the seed also seeds the noise: simulation only
    trainer = FedAvg(SecretSharing(), config, dp=dp)
    history = trainer.run(progress=report)
    print(f"noise multiplier z = {dp.z:.4f}, clip C = {dp.clip}, sample rate q = {dp.sample_rate}")
    print(f"final test accuracy {history.final_accuracy:.3f}; epsilon {trainer.epsilon():.3f} at delta {dp.delta:g}")


if __name__ == "__main__":
    main()
