"""The app's task, in the style of `flwr new`'s PyTorch template: a small CNN, one data partition per node.

The data are scikit-learn's 8x8 digits (no download); partition p of 5 holds
160 + 30 p samples, 80 % of them for training (128 ... 224: every node's
example count is below the encoding's max_weight 256, so the secure mean
weighs exactly by examples). Everything random is seeded from the run
config's ``seed``, so that two runs of the app at one seed train alike.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

#: What `[tool.flwr.app.config]` of pyproject.toml holds (``run_simulation`` passes no run config).
DEFAULT_CONFIG = {
    "num-server-rounds": 3,
    "fraction-train": 1.0,
    "local-epochs": 1,
    "lr": 0.05,
    "batch-size": 32,
    "seed": 0,
    "final-model": "final_model.pt",
    "final-metrics": "final_metrics.json",
}


def app_config(context) -> dict:
    """The run config over the defaults."""
    return {**DEFAULT_CONFIG, **dict(context.run_config)}


class Net(nn.Module):
    """A small CNN for 1x8x8 digits (3.7k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def new_model(seed: int) -> Net:
    """The initial global model, the same at the same seed."""
    torch.manual_seed(seed)
    return Net()


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(12345).permutation(len(digits.target))
    images = (digits.images[order] / 16.0).astype(np.float32)[:, None, :, :]
    return images, digits.target[order].astype(np.int64)


def load_data(partition_id: int, num_partitions: int, batch_size: int, seed: int = 0):
    """(train loader, validation loader) of this node's partition."""
    images, labels = _digits()
    sizes = [160 + 30 * p for p in range(num_partitions)]
    start = sum(sizes[:partition_id])
    part = slice(start, start + sizes[partition_id])
    x, y = torch.from_numpy(images[part]), torch.from_numpy(labels[part])
    cut = int(0.8 * len(y))
    generator = torch.Generator().manual_seed(seed * 1000 + partition_id)
    train = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=batch_size, shuffle=True, generator=generator)
    test = DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=batch_size)
    return train, test


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float, device: torch.device) -> float:
    """Train the model on the training set; the mean loss."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss().to(device)
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
    """(loss, accuracy) of the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for images, labels in testloader:
            outputs = net(images.to(device))
            loss += criterion(outputs, labels.to(device)).item()
            correct += (torch.max(outputs.data, 1)[1] == labels.to(device)).sum().item()
    return loss / len(testloader), correct / len(testloader.dataset)
