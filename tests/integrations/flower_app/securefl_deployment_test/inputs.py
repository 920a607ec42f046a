"""The input of each client: a fixed ring vector derived from its partition id, known to the test."""

from __future__ import annotations

import numpy as np

from securefl import ring


def client_input(partition: int, *, length: int, ring_bits: int, seed: int) -> np.ndarray:
    """Coordinates uniform in [-1000, 1000], as a ring vector (small enough for every protocol's slots)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(partition,)))
    return ring.from_signed(rng.integers(-1000, 1001, size=length), ring_bits)
