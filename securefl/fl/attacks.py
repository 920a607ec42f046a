"""Poisoning attacks a simulation can give some of its clients (robustness experiments, never a deployment).

``ModelReplacement`` (Bagdasaryan et al. 2020, "How to backdoor federated
learning", AISTATS): a malicious client i sends r + gamma (w_i - r) instead of
its trained model w_i, r the round's global model and gamma the boost, so that
its update gamma (w_i - r) outweighs the honest ones in the mean. A malicious
client runs its own code: it skips the honest client's L2 clip and, under
``ValidatedSharing``, proves its boosted update anyway; the aggregators'
verification is what rejects it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from securefl import validation
from securefl.errors import ConfigurationError

__all__ = ["ModelReplacement"]


@dataclass(frozen=True)
class ModelReplacement:
    """Clients ``clients`` send reference + ``boost`` x (local - reference) (Bagdasaryan et al. 2020)."""

    clients: tuple[int, ...]
    boost: float = 100.0

    def __post_init__(self) -> None:
        clients = tuple(self.clients)
        if not clients:
            raise ConfigurationError("ModelReplacement needs at least one malicious client")
        for client in clients:
            if not validation.is_integer(client) or client < 0:
                raise ConfigurationError(f"malicious clients must be client indices >= 0; found {client!r}")
        if len(set(clients)) != len(clients):
            raise ConfigurationError(f"malicious clients listed twice: {clients}")
        object.__setattr__(self, "clients", tuple(int(c) for c in clients))
        object.__setattr__(self, "boost", validation.positive_float(self.boost, "boost"))

    def applies_to(self, client: int) -> bool:
        """Whether ``client`` is malicious."""
        return client in self.clients

    def poison(self, local: Mapping[str, torch.Tensor],
               reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """reference + boost (local - reference) for every floating entry (other entries as trained)."""
        poisoned: dict[str, torch.Tensor] = OrderedDict()
        for name, value in local.items():
            if value.is_floating_point():
                base = reference[name]
                poisoned[name] = base + self.boost * (value - base)
            else:
                poisoned[name] = value
        return poisoned

    def to_dict(self) -> dict[str, object]:
        return {"attack": "model-replacement", "clients": list(self.clients), "boost": self.boost}
