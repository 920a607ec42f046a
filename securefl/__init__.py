"""securefl: privacy-preserving federated learning.

A FedAvg server aggregates client model updates while only ever seeing
aggregated or encrypted updates: additive secret sharing, pairwise-mask
secure aggregation, packed Paillier summation and differential privacy,
as sans-I/O protocol engines driven in process or over a network.
"""

__version__ = "0.1.0"
