"""Your own model, data and training loop; securefl only aggregates.

A CNN with BatchNorm (about 68,000 parameters) on the 8x8 digits, dealt to
clients by a label-skewed (non-IID) split into torch DataLoaders, trained by
a plain PyTorch loop (SGD with momentum). Each round the client models go
through one ``SecureAggregator`` per protocol: SecAgg, secret sharing,
Paillier, and SecAgg with central differential privacy (epsilon printed).
The lines that are securefl's are marked ``# securefl``.

    python examples/own_model.py                      # 10 clients, 5 rounds, every protocol
    python examples/own_model.py --clients 4 --rounds 1 --protocols secagg
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl import CentralDP, Paillier, SecAgg, SecretSharing, SecureAggregator  # securefl


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def non_iid_loaders(clients: int, seed: int) -> tuple[list[DataLoader], TensorDataset]:
    """Each client gets mostly two digit classes (Dirichlet label skew), as DataLoaders."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    test, train = order[:360], order[360:]
    shares = rng.dirichlet([0.3] * clients, size=10)  # class c -> how it is split among the clients
    parts: list[list[int]] = [[] for _ in range(clients)]
    for label in range(10):
        members = train[labels[train].numpy() == label]
        cuts = (np.cumsum(shares[label])[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(chunk.tolist())
    loaders = [DataLoader(TensorDataset(images[part], labels[part]), batch_size=16, shuffle=True)
               for part in parts if part]
    return loaders, TensorDataset(images[test], labels[test])


def train(model: nn.Module, loader: DataLoader, epochs: int = 1) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for features, targets in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(features), targets).backward()
            optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    features, targets = data.tensors
    return float((model(features).argmax(dim=1) == targets).float().mean())


def protocols(rounds: int, clients: int, key_bits: int) -> dict[str, SecureAggregator]:
    return {  # securefl
        "secagg": SecureAggregator(SecAgg()),  # securefl
        "secret-sharing": SecureAggregator(SecretSharing()),  # securefl
        "paillier": SecureAggregator(Paillier(key_bits=key_bits)),  # securefl
        "secagg + central DP": SecureAggregator(  # securefl
            SecAgg(), dp=CentralDP(target_epsilon=8.0, delta=1e-5, rounds=rounds, clip=2.0)),  # securefl
    }  # securefl


def federate(name: str, aggregator: SecureAggregator, loaders: list[DataLoader], test: TensorDataset,
             rounds: int, seed: int) -> dict:
    torch.manual_seed(seed)
    global_model = make_cnn()
    local_model = make_cnn()
    for round in range(rounds):
        states, counts = [], []
        for loader in loaders:
            local_model.load_state_dict(global_model.state_dict())
            train(local_model, loader)
            states.append({k: v.clone() for k, v in local_model.state_dict().items()})
            counts.append(len(loader.dataset))
        result = aggregator.aggregate_models(  # securefl
            states, reference=global_model.state_dict(),  # securefl
            weights=None if aggregator.dp else counts)  # securefl
        global_model.load_state_dict(result.model)
        epsilon = "" if result.epsilon is None else f"  epsilon {result.epsilon:.2f}"
        print(f"{name:>20}  round {round}  accuracy {accuracy(global_model, test):.3f}  "
              f"clients {len(result.included)}{epsilon}")
    return {"protocol": name, "accuracy": accuracy(global_model, test), "epsilon": result.epsilon,
            "parameters": sum(p.numel() for p in global_model.parameters())}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier key size")
    parser.add_argument("--protocols", nargs="*", default=None, help="a subset of the protocols to run")
    args = parser.parse_args(argv)
    loaders, test = non_iid_loaders(args.clients, args.seed)
    chosen = protocols(args.rounds, len(loaders), args.key_bits)
    names = args.protocols if args.protocols else list(chosen)
    return [federate(name, chosen[name], loaders, test, args.rounds, args.seed) for name in names]


if __name__ == "__main__":
    main()
