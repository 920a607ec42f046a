"""Float updates <-> elements of the ring Z_2^k, and torch state_dict flattening.

A client's float vector x with integer weight w (its sample count) becomes

    q = SR(w * clip(x, -c, c) * s),   s = (2^(b-1) - 1) / c

where SR is unbiased stochastic rounding (E[SR(v)] = v, |SR(v) - v| < 1)
driven by an explicit ``numpy.random.Generator``, and q is stored mod 2^k.
The weight itself travels as one extra coordinate of the same vector, so a
secure sum over clients yields both sum_i w_i x_i and sum_i w_i and the server
never sees a weight in the clear.

Headroom: every coordinate satisfies |q| <= w (2^(b-1) - 1) exactly. The
clip is applied as a clamp to [-w (2^(b-1) - 1), w (2^(b-1) - 1)] after the
rounding (the same q, since the bound is an integer), so the bound holds
whatever float64 rounding does. A sum of at most n_max clients is then exact
in the signed ring when

    n_max * w_max * (2^(b-1) - 1) <= 2^(k-1) - 1.

The quantisation runs in float64, so the bound must be an exact float64
integer: w_max (2^(b-1) - 1) < 2^53 and b <= 53. Both are checked in exact
integer arithmetic when the configuration is made (``ConfigurationError``
otherwise).

Clipping is counted, never silent: :meth:`Encoding.count_clipped` is the
number of coordinates with |x| > c, the ones the clip cuts; with
``strict_clip=True`` :meth:`Encoding.encode` refuses such an update
(``InvalidUpdate``) instead of cutting it, and :func:`warn_clipped` words
the one ``ClippingWarning`` an aggregation issues when anything was cut.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from securefl import ring
from securefl.errors import ClippingWarning, ConfigurationError, InvalidUpdate
from securefl.validation import boolean, positive_float, positive_int

if TYPE_CHECKING:
    import torch

__all__ = [
    "Encoding",
    "check_headroom",
    "warn_clipped",
    "flatten_state",
    "unflatten_state",
]

_ENCODE_CHUNK = 1 << 15  # coordinates per pass: 256 KiB of float64, cache-resident
_FLOAT64_EXACT = 1 << 53  # every integer of magnitude <= 2^53 is a float64; 2^53 + 1 is not
_MAX_VALUE_BITS = 53  # the float64 significand


def check_headroom(*, value_bits: int, ring_bits: int, max_clients: int, max_weight: int) -> None:
    """Raise ``ConfigurationError`` if a sum of ``max_clients`` inputs could wrap Z_2^k.

    With M = 2^(b-1) - 1 the bound of one weighted value is w_max M; it must
    be an exact float64 integer (w_max M < 2^53, b <= 53) so that float64
    quantisation cannot round past it, and n_max w_max M <= 2^(k-1) - 1.
    All arithmetic is on Python ints (numpy integers are converted), so
    nothing here overflows or rounds.
    """
    value_bits = positive_int(value_bits, "value_bits")
    max_clients = positive_int(max_clients, "max_clients")
    max_weight = positive_int(max_weight, "max_weight")
    ring.ring_dtype(ring_bits)
    ring_bits = int(ring_bits)
    if value_bits < 2:
        raise ConfigurationError(f"value_bits must be >= 2 (one sign bit); found {value_bits}")
    largest = (1 << (value_bits - 1)) - 1
    bound = max_weight * largest
    if value_bits > _MAX_VALUE_BITS:
        raise ConfigurationError(
            f"value_bits={value_bits} exceeds {_MAX_VALUE_BITS}, the significand of a float64: the "
            f"quantisation runs in float64 and would round the scale 2^(value_bits-1)-1={largest} "
            f"(e.g. (2^59-1)/1.0 becomes 2^59), so a sum could wrap the ring without an error; "
            f"lower value_bits to at most {_MAX_VALUE_BITS}"
        )
    if bound >= _FLOAT64_EXACT:
        raise ConfigurationError(
            f"max_weight={max_weight} x 2^(value_bits-1)-1={largest} = {bound} is not below 2^53 = "
            f"{_FLOAT64_EXACT}, so a weighted quantised value is not exact in float64 and rounding "
            f"could carry it past the headroom bound; lower max_weight or value_bits"
        )
    worst = max_clients * bound
    limit = (1 << (ring_bits - 1)) - 1
    weight_sum = max_clients * max_weight
    if worst > limit or weight_sum > limit:
        raise ConfigurationError(
            f"a sum can wrap the ring: max_clients={max_clients} x max_weight={max_weight} x "
            f"2^(value_bits-1)-1={largest} = {worst} exceeds 2^(ring_bits-1)-1 "
            f"= {limit} for ring_bits={ring_bits}; raise ring_bits or lower value_bits, "
            f"max_clients or max_weight"
        )


def warn_clipped(*, clipped: int, coordinates: int, clip: float, stacklevel: int = 2) -> None:
    """Issue one ``ClippingWarning`` when ``clipped > 0``; nothing otherwise.

    ``clipped`` and ``coordinates`` are totals over what was aggregated (one
    warning per aggregation, not one per client), as in "3 of 10 coordinates
    (30.0%) were cut to the clip 1.0; ...". ``stacklevel`` counts from the
    caller of this function, as in :func:`warnings.warn`.
    """
    if clipped > 0:
        fraction = clipped / coordinates if coordinates else 0.0
        warnings.warn(
            f"{clipped} of {coordinates} coordinates ({fraction:.1%}) were cut to the clip {clip}; "
            f"raise Encoding.clip or set strict_clip=True to refuse",
            ClippingWarning,
            stacklevel=stacklevel + 1,
        )


@dataclass(frozen=True)
class Encoding:
    """Quantisation of float updates into Z_2^k with a headroom guarantee.

    ``clip`` bounds every coordinate to [-clip, clip]; ``value_bits`` is the
    signed width of one unweighted clipped value; a sum over up to
    ``max_clients`` clients of weights up to ``max_weight`` never wraps.
    The quantisation step is clip / (2^(value_bits-1) - 1) per unit weight.
    ``strict_clip=True`` refuses an update with a coordinate beyond the clip
    (``InvalidUpdate``) instead of cutting it; either way
    :meth:`count_clipped` says how many coordinates the clip cuts.
    """

    clip: float = 1.0
    value_bits: int = 12
    ring_bits: int = 32
    max_clients: int = 1024
    max_weight: int = 256
    strict_clip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", positive_float(self.clip, "clip"))
        boolean(self.strict_clip, "strict_clip")
        check_headroom(
            value_bits=self.value_bits,
            ring_bits=self.ring_bits,
            max_clients=self.max_clients,
            max_weight=self.max_weight,
        )
        for name in ("value_bits", "ring_bits", "max_clients", "max_weight"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def scale(self) -> float:
        """Ring units per float unit: s = (2^(b-1) - 1) / c."""
        return ((1 << (self.value_bits - 1)) - 1) / self.clip

    @property
    def step(self) -> float:
        """One quantisation step in float units (at weight 1)."""
        return 1.0 / self.scale

    def check_weight(self, weight: int) -> int:
        """``weight`` as an int in [1, max_weight] (``ConfigurationError`` otherwise: a larger one could wrap)."""
        if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
            raise ConfigurationError(f"weight must be an integer; found {weight!r}")
        if not 1 <= weight <= self.max_weight:
            raise ConfigurationError(f"weight must be in [1, max_weight={self.max_weight}]; found {weight}")
        return int(weight)

    def check_clients(self, count: int) -> None:
        """``ConfigurationError`` when ``count`` clients exceed ``max_clients`` (their sum could wrap)."""
        if count > self.max_clients:
            raise ConfigurationError(
                f"{count} clients exceed max_clients={self.max_clients} of the encoding; "
                f"the sum could wrap the ring"
            )

    def count_clipped(self, update: np.ndarray) -> int:
        """The number of coordinates of a finite ``update`` with |x| > clip: those :meth:`encode` cuts."""
        values = np.asarray(update, dtype=np.float64).ravel()
        return int(np.count_nonzero(values > self.clip)) + int(np.count_nonzero(values < -self.clip))

    def encode(self, update: np.ndarray, *, weight: int = 1, rng: np.random.Generator) -> np.ndarray:
        """Quantise ``weight * clip(update)`` into Z_2^k and append ``weight``.

        Returns a ring vector of length ``update.size + 1``. Every coordinate
        q satisfies |q| <= weight (2^(b-1) - 1) exactly: the rounded value is
        clamped there, so float rounding of the scale cannot break the
        headroom. Raises ``InvalidUpdate`` for an update holding a NaN or an
        infinity, and under ``strict_clip`` for one with a coordinate beyond
        the clip (:meth:`count_clipped` counts those when they are cut).
        """
        weight = self.check_weight(weight)
        if not isinstance(rng, np.random.Generator):
            raise ConfigurationError(f"rng must be a numpy.random.Generator; found {type(rng).__name__}")
        values = np.asarray(update, dtype=np.float64).ravel()
        if self.strict_clip:
            clipped = self.count_clipped(values)
            if clipped:
                raise InvalidUpdate(
                    f"update has {clipped} of {values.size} coordinate(s) beyond the clip {self.clip} "
                    f"(|x| > clip); strict_clip=True refuses to cut them"
                )
        # SR(v) = floor(v + u), u ~ U[0, 1): P(round up) = frac(v), so E[SR(v)] = v.
        # Float32 uniforms keep the rounding unbiased up to 2^-24 of one step.
        # Work in cache-sized chunks: each pass over a chunk stays in L2.
        out = np.empty(values.size + 1, dtype=ring.ring_dtype(self.ring_bits))
        step = min(values.size, _ENCODE_CHUNK) or 1
        scaled = np.empty(step)
        uniforms = np.empty(step, dtype=np.float32)
        multiplier = weight * self.scale
        # w (2^(b-1) - 1) < 2^53 (check_headroom), so the bound is an exact float64.
        bound = float(weight * ((1 << (self.value_bits - 1)) - 1))
        # |x| far beyond the clip can overflow w s x to +-inf: the clamp still gives +-w M.
        with np.errstate(over="ignore"):
            for start in range(0, values.size, step):
                count = min(step, values.size - start)
                chunk = scaled[:count]
                source = values[start : start + count]
                if not np.isfinite(source).all():
                    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                    raise InvalidUpdate(f"update holds {bad} NaN or infinite value(s) out of {values.size}")
                np.multiply(source, multiplier, out=chunk)
                chunk += rng.random(count, dtype=np.float32, out=uniforms[:count])
                np.floor(chunk, out=chunk)
                # The clip, in ring units and after the rounding: w M is an integer, so
                # clamp(SR(w s x)) = SR(w s clip(x)) exactly, and |q| <= w M holds even
                # where c (w s) or v + u rounds above w M in float64.
                np.clip(chunk, -bound, bound, out=chunk)
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


def flatten_state(state: Mapping[str, object]) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...], str]]]:
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


def unflatten_state(
    vector: np.ndarray, layout: list[tuple[str, tuple[int, ...], str]]
) -> OrderedDict[str, torch.Tensor]:
    """Inverse of :func:`flatten_state`."""
    import torch

    expected = sum(int(np.prod(shape)) for _, shape, _ in layout)
    if vector.size != expected:
        raise ConfigurationError(f"vector has {vector.size} values; the layout needs {expected}")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    offset = 0
    for name, shape, dtype in layout:
        count = int(np.prod(shape))
        chunk = np.asarray(vector[offset : offset + count]).reshape(shape)
        state[name] = torch.from_numpy(chunk.copy()).to(getattr(torch, dtype))
        offset += count
    return state
