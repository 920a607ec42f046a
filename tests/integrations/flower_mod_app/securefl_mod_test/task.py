"""What the app trains, fixed in code and known to the test: exact on the encoding's grid.

The encoding's clip is 2047 / 256, so that with value_bits = 12 its step is
clip / (2^11 - 1) = 2^-8 exactly and its scale 2^8. Every update coordinate
is k / 256 for an integer |k| <= 512 and every count n is an integer, so the
weighted quantisation n u 2^8 is an integer and stochastic rounding leaves it
as it is: the secure sum is exact. The counts (5, 11, 32, 16) make both the
full total (64) and the total without partition 2 (32) powers of two, so that the
mean sum_i n_i u_i / N is a float64 without rounding, as is every model
(initial arrays on the 2^-2 grid, float64 throughout).
"""

from __future__ import annotations

import numpy as np

from securefl.encoding import Encoding

ENCODING = Encoding(clip=2047 / 256)  # step 2^-8
SHAPES = ((3,), (2, 2))
EXAMPLES = (5, 11, 32, 16)  # num-examples of partition 0, 1, 2, 3


def initial_arrays() -> list[np.ndarray]:
    return [np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 4 - 0.5 for shape in SHAPES]


def update_for(partition: int) -> list[np.ndarray]:
    """Partition ``partition``'s update (trained - received), the same every round."""
    rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(partition,)))
    return [rng.integers(-512, 513, size=shape).astype(np.float64) / 256 for shape in SHAPES]


def examples_of(partition: int) -> int:
    return EXAMPLES[partition]


def train_loss_of(partition: int) -> float:
    return 1.0 + 0.375 * partition
