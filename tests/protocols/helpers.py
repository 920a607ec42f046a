"""Shared helpers for protocol tests: random ring inputs and their exact sum."""

from __future__ import annotations

import numpy as np

from securefl import ring


def random_inputs(clients: int, length: int, ring_bits: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = ring.ring_dtype(ring_bits)
    high = 1 << ring_bits
    return [rng.integers(0, high, size=length, dtype=np.uint64).astype(dtype) for _ in range(clients)]


def ring_sum(inputs: list[np.ndarray], indices, ring_bits: int) -> np.ndarray:
    total = np.zeros_like(inputs[0])
    for index in indices:
        ring.add(total, inputs[index], ring_bits)
    return total
