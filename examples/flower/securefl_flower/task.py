"""securefl-flower: the task -- a small CNN, the data partitions, local training and evaluation.

Plain PyTorch, as in `flwr new`'s PyTorch template; nothing here knows about
secure aggregation. The data are scikit-learn's 8x8 handwritten digits (1,797
images, shipped with scikit-learn: no download). One fixed shuffle splits
them into a held-out test set (20 %, never on any SuperNode; the ServerApp
evaluates the global model on it) and a pool that is partitioned among the
SuperNodes by ``partition-id``: IID (equal shares) or with label skew
(Dirichlet). Each partition keeps 80 % of its share for training and 20 % for
the node's own evaluation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

#: Fraction of the digits held out for the ServerApp's evaluation of the global model.
TEST_FRACTION = 0.2
#: Fraction of each partition a node trains on (the rest is its validation set).
TRAIN_FRACTION = 0.8
_SHUFFLE_SEED = 2024  # the fixed order of the digits: the same split on every node and the server


class Net(nn.Module):
    """A small CNN for 1x8x8 digit images (13.7k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # 16 x 4 x 4
        x = self.pool(F.relu(self.conv2(x)))  # 32 x 2 x 2
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def new_model(seed: int = 0) -> Net:
    """The initial global model: the same at the same seed."""
    torch.manual_seed(seed)
    return Net()


# -- data -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All digits in the fixed order: images (n, 1, 8, 8) in [0, 1] as float32, labels as int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(_SHUFFLE_SEED).permutation(len(digits.target))
    images = (digits.images[order] / 16.0).astype(np.float32)[:, None, :, :]
    return images, digits.target[order].astype(np.int64)


def _pool_size() -> int:
    return len(_digits()[1]) - int(round(TEST_FRACTION * len(_digits()[1])))


@lru_cache(maxsize=8)
def _partitions(num_partitions: int, partitioning: str, alpha: float, seed: int) -> tuple[np.ndarray, ...]:
    """Indices into the pool of each partition."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1; found {num_partitions}")
    pool = np.arange(_pool_size())
    if partitioning == "iid":
        return tuple(np.array_split(pool, num_partitions))
    if partitioning != "dirichlet":
        raise ValueError(f'partitioning must be "iid" or "dirichlet"; found {partitioning!r}')
    if alpha <= 0:
        raise ValueError(f"dirichlet-alpha must be positive; found {alpha}")
    # Label skew: each class is split among the partitions in Dirichlet(alpha) proportions; drawn again
    # until every partition has enough examples to train and validate on.
    labels = _digits()[1][pool]
    rng = np.random.default_rng(seed)
    min_size = max(10, len(pool) // (10 * num_partitions))
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(num_partitions)]
        for label in range(10):
            members = pool[labels == label]
            shares = rng.dirichlet([alpha] * num_partitions)
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts)):
                part.extend(chunk.tolist())
        if min(len(part) for part in parts) >= min_size:
            return tuple(np.sort(np.asarray(part, dtype=np.int64)) for part in parts)
    raise ValueError(f"no Dirichlet({alpha}) split of {len(pool)} digits gives each of {num_partitions} partitions "
                     f"{min_size} examples; raise dirichlet-alpha or use fewer partitions")


def load_data(
    partition_id: int,
    num_partitions: int,
    batch_size: int = 32,
    partitioning: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """(train loader, validation loader) of partition ``partition_id`` of ``num_partitions``."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition_id must be in [0, {num_partitions}); found {partition_id}")
    images, labels = _digits()
    part = _partitions(int(num_partitions), str(partitioning), float(alpha), int(seed))[partition_id]
    x, y = torch.from_numpy(images[part]), torch.from_numpy(labels[part])
    cut = int(TRAIN_FRACTION * len(y))
    generator = torch.Generator().manual_seed(seed * 1000 + partition_id)
    train = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=batch_size, shuffle=True, generator=generator)
    validation = DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=batch_size)
    return train, validation


def load_centralized_testset(batch_size: int = 128) -> DataLoader:
    """The held-out digits, on no SuperNode: the ServerApp's test set."""
    images, labels = _digits()
    start = _pool_size()
    return DataLoader(TensorDataset(torch.from_numpy(images[start:]), torch.from_numpy(labels[start:])),
                      batch_size=batch_size)


# -- training and evaluation ------------------------------------------------------------------------


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float, device: torch.device) -> float:
    """Train the model on the training set; the mean training loss."""
    net.to(device)
    criterion = nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(images.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    return running_loss / (epochs * len(trainloader))


def test(net: Net, testloader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean loss, accuracy) of the model on ``testloader``."""
    net.to(device)
    net.eval()
    criterion = nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for images, labels in testloader:
            outputs = net(images.to(device))
            labels = labels.to(device)
            loss += criterion(outputs, labels).item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
    return loss / len(testloader), correct / len(testloader.dataset)
