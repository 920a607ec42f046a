"""Small PyTorch models for the embedded datasets.

Initialisation is a pure function of the seed: parameters are drawn from a
local ``torch.Generator`` (PyTorch's default ``nn.Linear`` scheme,
Kaiming-uniform weights with a = sqrt(5) and U(-1/sqrt(fan_in),
1/sqrt(fan_in)) biases), so making a model never reads or advances the global
torch RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from securefl import validation

__all__ = ["MLP", "make_model", "mlp_parameters", "hidden_for_parameters"]


class MLP(nn.Module):
    """inputs -> hidden (ReLU) -> classes logits."""

    def __init__(self, *, inputs: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.hidden = nn.utils.skip_init(nn.Linear, inputs, hidden)
        self.output = nn.utils.skip_init(nn.Linear, hidden, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(features)))


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def make_model(*, hidden: int = 64, seed: int, inputs: int = 64, classes: int = 10) -> MLP:
    """An MLP (inputs -> hidden -> classes) whose float32 parameters depend only on ``seed``."""
    inputs = validation.positive_int(inputs, "inputs")
    hidden = validation.positive_int(hidden, "hidden")
    classes = validation.positive_int(classes, "classes")
    seed = validation.non_negative_int(seed, "seed")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    model = MLP(inputs=inputs, hidden=hidden, classes=classes)
    _init_linear(model.hidden, generator)
    _init_linear(model.output, generator)
    return model


def mlp_parameters(*, hidden: int, inputs: int = 64, classes: int = 10) -> int:
    """The MLP's parameter count: (inputs + 1) hidden + (hidden + 1) classes."""
    return (inputs + 1) * hidden + (hidden + 1) * classes


def hidden_for_parameters(parameters: int, *, inputs: int = 64, classes: int = 10) -> int:
    """The hidden width whose MLP has the parameter count nearest ``parameters`` (at least 1)."""
    parameters = validation.positive_int(parameters, "parameters")
    return max(1, round((parameters - classes) / (inputs + 1 + classes)))
