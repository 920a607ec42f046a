"""The privacy probe: a curious server's input-reconstruction attack on what it received.

For a dense first layer z = W x + b, the gradient of one example's loss is
dL/dW_j = delta_j x and dL/db_j = delta_j for every hidden neuron j, so one
SGD step on a single example gives update rows with

    Delta W_j / Delta b_j = x        whenever delta_j != 0

(Phong et al., "Privacy-preserving deep learning via additively homomorphic
encryption", 2017; Geiping et al., "Inverting gradients", NeurIPS 2020).
The probe round is the worst case for a client: each client takes one step on
one example. It goes through a :class:`~securefl.aggregator.SecureAggregator`
with the federation's kind of DP plugin, like a round of training. The server
runs the attack on every vector in its transcript (what individual messages
reveal) and, separately, on the aggregate it releases (what the sum itself
reveals, e.g. a neuron that only one client's example activated). Scores are
the best cosine similarity and PSNR between any reconstruction and any
client's true example, next to the score of random candidates (chance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from securefl import ring
from securefl.aggregator import SecureAggregator
from securefl.errors import ConfigurationError
from securefl.privacy.plugins import DifferentialPrivacy
from securefl.protocols.base import Protocol
from securefl.protocols.wire import decode_message
from securefl.simulation import AggregationResult

__all__ = ["ProbeScore", "ProbeResult", "reconstruct_inputs", "score_reconstructions", "run_probe"]

_BIAS_FLOOR = 1e-12
_CANDIDATES_PER_VECTOR = 8  # the neurons with the largest |Delta b|: least quantisation noise


@dataclass(frozen=True)
class ProbeScore:
    """Best similarity between any reconstruction and any true example."""

    cosine: float
    psnr: float
    best_candidate: np.ndarray | None = field(default=None, repr=False, compare=False)
    best_target: int | None = None

    def to_dict(self) -> dict[str, float]:
        """The scores as plain data."""
        return {"cosine": self.cosine, "psnr": self.psnr}


@dataclass(frozen=True)
class ProbeResult:
    messages: ProbeScore
    aggregate: ProbeScore
    chance: ProbeScore
    vectors_attacked: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the message probe is null, with the reason, when no message could be read as numbers."""
        messages: dict[str, Any] = self.messages.to_dict()
        if self.vectors_attacked == 0:
            messages = {"cosine": None, "psnr": None,
                        "not_applicable": "the server received no vector it could read as numbers (only ciphertexts)"}
        return {
            "messages": messages,
            "aggregate": self.aggregate.to_dict(),
            "chance": self.chance.to_dict(),
            "vectors_attacked": self.vectors_attacked,
        }


def reconstruct_inputs(
    update: np.ndarray, *, inputs: int, hidden: int, candidates: int = _CANDIDATES_PER_VECTOR
) -> np.ndarray:
    """Rows Delta W_j / Delta b_j for the ``candidates`` neurons with the largest |Delta b_j|.

    ``update`` is a flattened parameter vector whose first ``hidden * inputs``
    values are the first layer's weights (row-major) followed by its biases.
    """
    needed = hidden * inputs + hidden
    if update.size < needed:
        raise ConfigurationError(f"update has {update.size} values; the first layer needs {needed}")
    weights = update[: hidden * inputs].reshape(hidden, inputs)
    biases = update[hidden * inputs : needed]
    order = np.argsort(-np.abs(biases))[:candidates]
    order = order[np.abs(biases[order]) > _BIAS_FLOOR]
    rows: np.ndarray = weights[order] / biases[order, None]
    return rows


_PSNR_CAP = 100.0  # dB: an exact reconstruction (zero error) reports the cap


def _psnr(candidate: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of ``candidate`` clipped to the data range [0, 1] against ``target``, capped at 100."""
    error = float(np.mean((np.clip(candidate, 0.0, 1.0) - target) ** 2))
    return _PSNR_CAP if error <= 10 ** (-_PSNR_CAP / 10) else float(10.0 * np.log10(1.0 / error))


def score_reconstructions(candidates: np.ndarray, examples: np.ndarray) -> ProbeScore:
    """Best cosine similarity (and that pair's PSNR) over all candidates x examples."""
    if candidates.size == 0:
        return ProbeScore(cosine=0.0, psnr=0.0)
    a = candidates / np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-300)
    b = examples / np.maximum(np.linalg.norm(examples, axis=1, keepdims=True), 1e-300)
    similarity = a @ b.T
    best = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    candidate = candidates[best[0]]
    return ProbeScore(
        cosine=float(similarity[best]),
        psnr=_psnr(candidate, examples[best[1]]),
        best_candidate=candidate,
        best_target=int(best[1]),
    )


def single_example_updates(
    model: torch.nn.Module, examples: np.ndarray, labels: np.ndarray, *, clip: float
) -> list[np.ndarray]:
    """Each client's update after one SGD step on its single example.

    The step size is set per client so the largest coordinate is half the
    encoding's clip: the update uses the quantiser's range, the worst case
    for the client (the attack itself is invariant to the step size).
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    parameters = list(model.parameters())
    updates = []
    for example, label in zip(examples, labels):
        model.load_state_dict(state)
        features = torch.as_tensor(example[None, :], dtype=torch.float32)
        target = torch.as_tensor([int(label)])
        gradients = torch.autograd.grad(F.cross_entropy(model(features), target), parameters)
        flat = np.concatenate([g.detach().reshape(-1).double().numpy() for g in gradients])
        largest = float(np.max(np.abs(flat)))
        step = 0.5 * clip / largest if largest > 0 else 0.0
        updates.append(-step * flat)
    model.load_state_dict(state)
    return updates


def _signed_float(vector: np.ndarray, result: AggregationResult, scale: float, length: int) -> np.ndarray:
    return ring.to_signed(vector[:length], result.ring_bits).astype(np.float64) / scale


def run_probe(
    protocol: Protocol,
    model: torch.nn.Module,
    examples: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    dp: DifferentialPrivacy | None = None,
) -> ProbeResult:
    """One probe round through a :class:`SecureAggregator` over ``protocol``; attack what the server saw.

    ``examples`` is one input per client (rows in [0, 1]). ``dp`` is a fresh
    DP plugin of the kind and parameters the federation runs with (it is bound
    to this round, so not the trainer's own): the round then goes through its
    client stage (L2 clipping; distributed DP: rotation and noise shares in the
    ring) and its server stage (central DP: Gaussian noise on the sum), so the
    attack reads exactly the messages the server engine received and the
    total it releases. ``seed`` drives the rounding (and the clients' noise).
    """
    hidden_layer = next(module for module in model.modules() if isinstance(module, torch.nn.Linear))
    inputs, hidden = hidden_layer.in_features, hidden_layer.out_features
    if examples.ndim != 2 or examples.shape[1] != inputs:
        raise ConfigurationError(f"examples must be (clients, {inputs}); found {examples.shape}")
    updates = single_example_updates(model, examples, labels, clip=protocol.encoding.clip)
    aggregator = SecureAggregator(protocol, dp=dp, rng=np.random.default_rng(seed))
    aggregate = aggregator.aggregate_vectors(updates)
    result = aggregate.result
    length = updates[0].size
    scale = aggregator.bound_protocol(length, len(updates)).encoding.scale  # the encoding the messages carry

    found: list[np.ndarray] = []
    attacked = 0
    for entry in result.transcript:
        for vector in decode_message(entry.payload).vectors():
            if vector.size < length or np.array_equal(vector, result.ring_sum):
                continue  # too short, or the released aggregate itself (scored below)
            attacked += 1
            found.append(reconstruct_inputs(_signed_float(vector, result, scale, length), inputs=inputs, hidden=hidden))
    message_candidates = np.concatenate(found) if found else np.zeros((0, inputs))
    aggregate_candidates = reconstruct_inputs(np.asarray(aggregate.total, dtype=np.float64), inputs=inputs,
                                              hidden=hidden)

    chance_rng = np.random.default_rng([seed, 2])
    # One baseline for every protocol: as many random candidates as the attack on a plaintext transcript
    # makes (one vector per client), whatever this protocol's messages gave.
    chance_count = _CANDIDATES_PER_VECTOR * len(examples)
    chance_candidates = chance_rng.normal(size=(chance_count, inputs))
    return ProbeResult(
        messages=score_reconstructions(message_candidates, examples),
        aggregate=score_reconstructions(aggregate_candidates, examples),
        chance=score_reconstructions(chance_candidates, examples),
        vectors_attacked=attacked,
    )
