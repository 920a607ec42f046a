"""Embedded datasets and their splits over federated clients.

The scikit-learn digits (1,797 8x8 grey images of 0-9, bundled with
scikit-learn, no download) with features scaled to [0, 1], a seeded
stratified held-out test split, and two ways of dealing the training set to
N clients:

- ``"iid"``: a uniform random permutation cut into N near-equal parts;
- ``"dirichlet"``: label skew after Hsu et al. (arXiv 1909.06335): for every
  class c, proportions p_c ~ Dir(alpha * 1_N) split the samples of class c
  over the clients. Small alpha gives each client few classes; alpha -> inf
  tends to IID.

Every function takes an explicit ``numpy.random.Generator`` (or a seed for
one); nothing touches numpy's global random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from securefl import validation
from securefl.errors import ConfigurationError

__all__ = [
    "Dataset",
    "load_digits_data",
    "stratified_split",
    "partition",
    "label_skew",
    "SCHEMES",
    "Scheme",
]

Scheme = Literal["iid", "dirichlet"]
SCHEMES = ("iid", "dirichlet")
_DIRICHLET_ATTEMPTS = 100


@dataclass(frozen=True)
class Dataset:
    """A train/test split as numpy arrays: features float32 in [0, 1], labels int64."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def features(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


def _generator(rng: np.random.Generator | int, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if validation.is_integer(rng) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ConfigurationError(f"{name} must be a numpy.random.Generator or a non-negative integer seed; found {rng!r}")


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise ConfigurationError(
            f"labels must be a non-empty 1-D integer array; found shape {labels.shape}, dtype {labels.dtype}"
        )
    if labels.min() < 0:
        raise ConfigurationError(f"labels must be non-negative class indices; found {labels.min()}")
    return labels


def stratified_split(
    labels: np.ndarray, *, test_fraction: float, rng: np.random.Generator | int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): round(test_fraction * n_c) samples of every class c go to test.

    Both index arrays are sorted; together they are a partition of
    ``range(len(labels))``.
    """
    labels = _check_labels(labels)
    if not validation.is_number(test_fraction) or not 0 < test_fraction < 1:
        raise ConfigurationError(f"test_fraction must be a number in (0, 1); found {test_fraction!r}")
    rng = _generator(rng)
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(round(test_fraction * members.size))
        test.append(rng.permutation(members)[:take])
    test_indices = np.sort(np.concatenate(test))
    train_mask = np.ones(labels.size, dtype=bool)
    train_mask[test_indices] = False
    train_indices = np.flatnonzero(train_mask)
    if train_indices.size == 0 or test_indices.size == 0:
        raise ConfigurationError(
            f"test_fraction={test_fraction} leaves {train_indices.size} training and {test_indices.size} test samples"
        )
    return train_indices, test_indices


def load_digits_data(*, test_fraction: float = 0.2, seed: int | np.random.Generator) -> Dataset:
    """The scikit-learn digits (64 features / 16, 10 classes) with a stratified test split.

    ``seed`` fixes which samples are held out; the split keeps the class
    proportions of the full set (to within one sample per class).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = (np.asarray(digits.data, dtype=np.float32) / 16.0).astype(np.float32)
    labels = np.asarray(digits.target, dtype=np.int64)
    train, test = stratified_split(labels, test_fraction=test_fraction, rng=_generator(seed, "seed"))
    return Dataset(
        train_x=np.ascontiguousarray(features[train]),
        train_y=labels[train],
        test_x=np.ascontiguousarray(features[test]),
        test_y=labels[test],
    )


def _repair(parts: list[list[int]], *, min_samples: int, rng: np.random.Generator) -> None:
    """Move random samples from the largest client to each client below ``min_samples``."""
    for client in range(len(parts)):
        while len(parts[client]) < min_samples:
            donor = max(range(len(parts)), key=lambda c: len(parts[c]))
            moved = parts[donor].pop(int(rng.integers(len(parts[donor]))))
            parts[client].append(moved)


def _dirichlet(
    labels: np.ndarray, *, clients: int, alpha: float, min_samples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == label) for label in classes]
    parts: list[list[int]] = []
    for _ in range(_DIRICHLET_ATTEMPTS):
        parts = [[] for _ in range(clients)]
        for indices in members:
            shuffled = rng.permutation(indices)
            proportions = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(proportions)[:-1] * shuffled.size).astype(np.int64)
            for client, chunk in enumerate(np.split(shuffled, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_samples:
            break
    else:
        # Very small alpha with many clients rarely meets the minimum by
        # rejection; top up the short clients from the largest one.
        _repair(parts, min_samples=min_samples, rng=rng)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition(
    labels: np.ndarray,
    *,
    clients: int,
    scheme: Scheme = "iid",
    alpha: float = 0.5,
    min_samples: int = 10,
    rng: np.random.Generator | int,
) -> list[np.ndarray]:
    """Deal the indices of ``labels`` to ``clients`` clients; returns one sorted index array per client.

    The parts are disjoint and cover ``range(len(labels))``; every client
    gets at least ``min_samples`` samples. ``"iid"`` cuts a random
    permutation into near-equal parts; ``"dirichlet"`` draws, per class,
    client proportions from Dir(alpha) (rejection-sampled up to 100 times
    until every client has ``min_samples``, then topped up from the largest
    client).
    """
    labels = _check_labels(labels)
    clients = validation.positive_int(clients, "clients")
    min_samples = validation.positive_int(min_samples, "min_samples")
    if scheme not in SCHEMES:
        raise ConfigurationError(f"scheme must be one of {', '.join(SCHEMES)}; found {scheme!r}")
    if clients * min_samples > labels.size:
        raise ConfigurationError(
            f"{labels.size} samples cannot give clients={clients} at least min_samples={min_samples} each"
        )
    rng = _generator(rng)
    if scheme == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(labels.size), clients)]
    alpha = validation.positive_float(alpha, "alpha")
    return _dirichlet(labels, clients=clients, alpha=alpha, min_samples=min_samples, rng=rng)


def label_skew(labels: np.ndarray, parts: Sequence[np.ndarray]) -> float:
    """Mean total-variation distance between each client's label histogram and the global one.

    TV(p, q) = 1/2 sum_c |p_c - q_c|, in [0, 1]; 0 for identical label
    mixes, close to 1 when each client holds one class the others lack.
    """
    labels = _check_labels(labels)
    classes = int(labels.max()) + 1
    overall = np.bincount(labels, minlength=classes) / labels.size
    distances = []
    for part in parts:
        counts = np.bincount(labels[np.asarray(part, dtype=np.int64)], minlength=classes)
        distances.append(0.5 * np.abs(counts / max(counts.sum(), 1) - overall).sum())
    return float(np.mean(distances))
