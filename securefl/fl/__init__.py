"""Federated learning on top of the protocols: FedAvg/FedProx, datasets, models."""

from securefl.fl.attacks import ModelReplacement
from securefl.fl.data import Dataset, label_skew, load_digits_data, partition
from securefl.fl.fedavg import FedAvg, FedAvgConfig, History, RoundRecord
from securefl.fl.models import MLP, make_model

__all__ = [
    "Dataset",
    "load_digits_data",
    "partition",
    "label_skew",
    "MLP",
    "make_model",
    "FedAvg",
    "FedAvgConfig",
    "History",
    "RoundRecord",
    "ModelReplacement",
]
