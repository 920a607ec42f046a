"""securefl: privacy-preserving federated learning.

A FedAvg server aggregates client model updates while only ever seeing
aggregated or encrypted updates: additive secret sharing, pairwise-mask
secure aggregation, packed Paillier summation and differential privacy,
as sans-I/O protocol engines driven in process or over a network.

The user vocabulary is importable from here (``from securefl import SecAgg,
SecureAggregator``). It is loaded lazily (PEP 562): ``import securefl`` imports
none of torch, flwr, phe or scipy; a name's module is imported the first time
the name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from securefl.aggregator import Aggregate, SecureAggregator, quantise_weights
    from securefl.encoding import Encoding
    from securefl.errors import (
        AlreadyFinalized,
        ClippingWarning,
        ConfigurationError,
        InvalidMessage,
        InvalidUpdate,
        LocalProtocolError,
        ProtocolAbort,
        ProtocolViolation,
        SecureFLError,
        UnexpectedMessage,
        UnexpectedSender,
    )
    from securefl.fl import FedAvg, FedAvgConfig, History, RoundRecord
    from securefl.privacy import PLDAccountant, RDPAccountant, calibrate_noise_multiplier
    from securefl.privacy.plugins import CentralDP, DistributedDP
    from securefl.protocols import Paillier, Plaintext, SecAgg, SecretSharing
    from securefl.protocols.catalog import make_protocol
    from securefl.simulation import AggregationResult, secure_sum, server_saw_individual_updates

__version__ = "0.1.0"

# Each public name -> the module it is imported from on first use, by topic
# (the order of the API reference, docs/api.md).
_EXPORTS: dict[str, str] = {
    # protocols
    "Plaintext": "securefl.protocols",
    "SecretSharing": "securefl.protocols",
    "SecAgg": "securefl.protocols",
    "Paillier": "securefl.protocols",
    "make_protocol": "securefl.protocols.catalog",
    # aggregation
    "SecureAggregator": "securefl.aggregator",
    "Aggregate": "securefl.aggregator",
    "quantise_weights": "securefl.aggregator",
    # federated learning
    "FedAvg": "securefl.fl",
    "FedAvgConfig": "securefl.fl",
    "History": "securefl.fl",
    "RoundRecord": "securefl.fl",
    # differential privacy
    "CentralDP": "securefl.privacy.plugins",
    "DistributedDP": "securefl.privacy.plugins",
    "RDPAccountant": "securefl.privacy",
    "PLDAccountant": "securefl.privacy",
    "calibrate_noise_multiplier": "securefl.privacy",
    # encoding and simulation
    "Encoding": "securefl.encoding",
    "secure_sum": "securefl.simulation",
    "server_saw_individual_updates": "securefl.simulation",
    "AggregationResult": "securefl.simulation",
    # errors
    "SecureFLError": "securefl.errors",
    "ConfigurationError": "securefl.errors",
    "InvalidUpdate": "securefl.errors",
    "LocalProtocolError": "securefl.errors",
    "InvalidMessage": "securefl.errors",
    "UnexpectedMessage": "securefl.errors",
    "UnexpectedSender": "securefl.errors",
    "ProtocolAbort": "securefl.errors",
    "ProtocolViolation": "securefl.errors",
    "AlreadyFinalized": "securefl.errors",
    "ClippingWarning": "securefl.errors",
}

__all__ = [
    # protocols
    "Plaintext",
    "SecretSharing",
    "SecAgg",
    "Paillier",
    "make_protocol",
    # aggregation
    "SecureAggregator",
    "Aggregate",
    "quantise_weights",
    # federated learning
    "FedAvg",
    "FedAvgConfig",
    "History",
    "RoundRecord",
    # differential privacy
    "CentralDP",
    "DistributedDP",
    "RDPAccountant",
    "PLDAccountant",
    "calibrate_noise_multiplier",
    # encoding and simulation
    "Encoding",
    "secure_sum",
    "server_saw_individual_updates",
    "AggregationResult",
    # errors
    "SecureFLError",
    "ConfigurationError",
    "InvalidUpdate",
    "LocalProtocolError",
    "InvalidMessage",
    "UnexpectedMessage",
    "UnexpectedSender",
    "ProtocolAbort",
    "ProtocolViolation",
    "AlreadyFinalized",
    "ClippingWarning",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and cache the name here (PEP 562)."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names and the lazily loaded public names, without loading any."""
    return sorted(set(globals()) | set(__all__))
