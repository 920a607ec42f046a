"""Float updates <-> elements of the ring Z_2^k, and torch state_dict flattening.

A client's float vector x with integer weight w (its sample count) becomes

    q = SR(w * clip(x, -c, c) * s),   s = (2^(b-1) - 1) / c

where SR is unbiased stochastic rounding (E[SR(v)] = v, |SR(v) - v| < 1)
driven by an explicit ``numpy.random.Generator``, and q is stored mod 2^k.
The weight itself travels as one extra coordinate of the same vector, so a
secure sum over clients yields both sum_i w_i x_i and sum_i w_i and the server
never sees a weight in the clear.

Headroom: every coordinate satisfies |q| <= w_max (2^(b-1) - 1), so a sum of
at most n_max clients is exact in the signed ring when

    n_max * w_max * (2^(b-1) - 1) <= 2^(k-1) - 1,

checked when the configuration is made (``ConfigurationError`` otherwise).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from securefl import ring
from securefl.errors import ConfigurationError

__all__ = ["Encoding", "check_headroom", "flatten_state", "unflatten_state"]

_ENCODE_CHUNK = 1 << 15  # coordinates per pass: 256 KiB of float64, cache-resident


def check_headroom(*, value_bits: int, ring_bits: int, max_clients: int, max_weight: int) -> None:
    """Raise ``ConfigurationError`` if a sum of ``max_clients`` inputs could wrap Z_2^k."""
    for name, value in (("value_bits", value_bits), ("max_clients", max_clients), ("max_weight", max_weight)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigurationError(f"{name} must be a positive integer; found {value!r}")
    ring.ring_dtype(ring_bits)
    if value_bits < 2:
        raise ConfigurationError(f"value_bits must be >= 2 (one sign bit); found {value_bits}")
    worst = max_clients * max_weight * ((1 << (value_bits - 1)) - 1)
    limit = (1 << (ring_bits - 1)) - 1
    weight_sum = max_clients * max_weight
    if worst > limit or weight_sum > limit:
        raise ConfigurationError(
            f"a sum can wrap the ring: max_clients={max_clients} x max_weight={max_weight} x "
            f"2^(value_bits-1)-1={(1 << (value_bits - 1)) - 1} = {worst} exceeds 2^(ring_bits-1)-1 "
            f"= {limit} for ring_bits={ring_bits}; raise ring_bits or lower value_bits, "
            f"max_clients or max_weight"
        )


@dataclass(frozen=True)
class Encoding:
    """Quantisation of float updates into Z_2^k with a headroom guarantee.

    ``clip`` bounds every coordinate to [-clip, clip]; ``value_bits`` is the
    signed width of one unweighted clipped value; a sum over up to
    ``max_clients`` clients of weights up to ``max_weight`` never wraps.
    The quantisation step is clip / (2^(value_bits-1) - 1) per unit weight.
    """

    clip: float = 1.0
    value_bits: int = 12
    ring_bits: int = 32
    max_clients: int = 1024
    max_weight: int = 256

    def __post_init__(self) -> None:
        if not np.isfinite(self.clip) or self.clip <= 0:
            raise ConfigurationError(f"clip must be a positive finite number; found {self.clip!r}")
        check_headroom(
            value_bits=self.value_bits,
            ring_bits=self.ring_bits,
            max_clients=self.max_clients,
            max_weight=self.max_weight,
        )

    @property
    def scale(self) -> float:
        """Ring units per float unit: s = (2^(b-1) - 1) / c."""
        return ((1 << (self.value_bits - 1)) - 1) / self.clip

    @property
    def step(self) -> float:
        """One quantisation step in float units (at weight 1)."""
        return 1.0 / self.scale

    def check_weight(self, weight: int) -> int:
        if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
            raise ConfigurationError(f"weight must be an integer; found {weight!r}")
        if not 1 <= weight <= self.max_weight:
            raise ConfigurationError(f"weight must be in [1, max_weight={self.max_weight}]; found {weight}")
        return int(weight)

    def check_clients(self, count: int) -> None:
        if count > self.max_clients:
            raise ConfigurationError(
                f"{count} clients exceed max_clients={self.max_clients} of the encoding; "
                f"the sum could wrap the ring"
            )

    def encode(self, update: np.ndarray, *, weight: int = 1, rng: np.random.Generator) -> np.ndarray:
        """Quantise ``weight * clip(update)`` into Z_2^k and append ``weight``.

        Returns a ring vector of length ``update.size + 1``.
        """
        weight = self.check_weight(weight)
        if not isinstance(rng, np.random.Generator):
            raise ConfigurationError(f"rng must be a numpy.random.Generator; found {type(rng).__name__}")
        values = np.asarray(update, dtype=np.float64).ravel()
        # SR(v) = floor(v + u), u ~ U[0, 1): P(round up) = frac(v), so E[SR(v)] = v.
        # Float32 uniforms keep the rounding unbiased up to 2^-24 of one step.
        # Work in cache-sized chunks: each pass over a chunk stays in L2.
        out = np.empty(values.size + 1, dtype=ring.ring_dtype(self.ring_bits))
        step = min(values.size, _ENCODE_CHUNK) or 1
        scaled = np.empty(step)
        uniforms = np.empty(step, dtype=np.float32)
        multiplier = weight * self.scale
        for start in range(0, values.size, step):
            count = min(step, values.size - start)
            chunk = scaled[:count]
            source = values[start : start + count]
            if not np.isfinite(source).all():
                bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                raise ValueError(f"update holds {bad} NaN or infinite value(s) out of {values.size}")
            np.clip(source, -self.clip, self.clip, out=chunk)
            chunk *= multiplier
            chunk += rng.random(count, dtype=np.float32, out=uniforms[:count])
            np.floor(chunk, out=chunk)
            out[start : start + count] = chunk.astype(np.int64)
        out[-1] = weight
        return ring.reduce(out, self.ring_bits)

    def decode_sum(self, ring_sum: np.ndarray) -> tuple[np.ndarray, int]:
        """(sum_i w_i x_i as float64, sum_i w_i) from an aggregated ring vector."""
        signed = ring.to_signed(np.asarray(ring_sum), self.ring_bits)
        if signed.size < 1:
            raise ConfigurationError("aggregate is empty; expected at least the weight coordinate")
        total_weight = int(signed[-1])
        return signed[:-1].astype(np.float64) / self.scale, total_weight


def flatten_state(state: Mapping[str, "object"]) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...], str]]]:
    """Concatenate a torch ``state_dict`` into one float64 vector and a layout to undo it."""
    import torch

    layout: list[tuple[str, tuple[int, ...], str]] = []
    pieces = []
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConfigurationError(f"state entry {name!r} is not a tensor")
        if not tensor.is_floating_point():
            raise ConfigurationError(f"state entry {name!r} has dtype {tensor.dtype}; only float tensors aggregate")
        layout.append((name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")))
        pieces.append(tensor.detach().cpu().reshape(-1).to(torch.float64).numpy())
    vector = np.concatenate(pieces) if pieces else np.zeros(0)
    return vector, layout


def unflatten_state(vector: np.ndarray, layout: list[tuple[str, tuple[int, ...], str]]) -> "OrderedDict[str, object]":
    """Inverse of :func:`flatten_state`."""
    import torch

    expected = sum(int(np.prod(shape)) for _, shape, _ in layout)
    if vector.size != expected:
        raise ConfigurationError(f"vector has {vector.size} values; the layout needs {expected}")
    state: "OrderedDict[str, object]" = OrderedDict()
    offset = 0
    for name, shape, dtype in layout:
        count = int(np.prod(shape))
        chunk = np.asarray(vector[offset : offset + count]).reshape(shape)
        state[name] = torch.from_numpy(chunk.copy()).to(getattr(torch, dtype))
        offset += count
    return state
