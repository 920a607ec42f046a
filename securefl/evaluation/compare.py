"""`securefl compare`: every protocol on the same federation, side by side.

Each contender runs ``FedAvg(protocol, config, dp=plugin)`` on the embedded
digits data with identical splits, seeds and dropout draws (``plugin`` a
:class:`~securefl.privacy.plugins.CentralDP`, a
:class:`~securefl.privacy.plugins.DistributedDP` or None), then takes part in
one probe round in which every client takes a single SGD step on one example
and a curious server runs the gradient-inversion attack of
:mod:`securefl.evaluation.probe` on exactly the messages it received, and on
the aggregate it releases. The probe round goes through a ``SecureAggregator``
with a fresh plugin of the same kind and parameters, so what is attacked is
what the server (or an observer of the release) sees.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from securefl.errors import ConfigurationError
from securefl.evaluation.probe import ProbeResult, run_probe
from securefl.fl.fedavg import FedAvg, FedAvgConfig, History
from securefl.fl.models import make_model
from securefl.privacy.plugins import CentralDP, DifferentialPrivacy, DistributedDP
from securefl.protocols.base import Protocol
from securefl.protocols.catalog import make_protocol

__all__ = ["Contender", "CONTENDERS", "contender_names", "ContenderResult", "Comparison", "compare",
           "make_plugin", "protocol_run"]


@dataclass(frozen=True)
class Contender:
    """One row of the comparison: a protocol, its options, and its privacy layer."""

    name: str
    protocol: str
    options: dict[str, Any] = field(default_factory=dict)
    dp: str = "none"  # "none" | "central" | "distributed"
    threat_model: str = ""


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "plaintext", "plaintext",
        threat_model=(
            "INSECURE baseline. The server receives every client's update in the clear and can "
            "read, store or invert it; nothing is protected. It is the reference for overhead."
        ),
    ),
    Contender(
        "secret-sharing", "secret-sharing",
        threat_model=(
            "Each update is split into additive shares for two non-colluding aggregators; the "
            "server receives only aggregated shares. Secure while at least one aggregator does not "
            "collude with the server; client-aggregator channels must be confidential (TLS)."
        ),
    ),
    Contender(
        "secagg", "secagg",
        threat_model=(
            "Pairwise masks (Bonawitz et al. 2017) over the complete graph: the server sees masked "
            "vectors that are uniform in the ring and learns only the sum of the survivors, even "
            "when clients drop out, as long as fewer than the threshold collude with it."
        ),
    ),
    Contender(
        "secagg+", "secagg+", options={"neighbors": 4},
        threat_model=(
            "SecAgg+ (Bell et al. 2020): masks over a sparse random k-regular graph, so client cost "
            "grows with log n instead of n; secure against a semi-honest server with a small "
            "fraction of corrupted clients, with high probability over the graph."
        ),
    ),
    Contender(
        "paillier", "paillier",
        threat_model=(
            "Clients encrypt packed updates under a key holder's Paillier public key; the server "
            "adds ciphertexts it cannot read and the key holder decrypts only the aggregate. "
            "Secure while the server and key holder do not collude."
        ),
    ),
    Contender(
        "secagg+central-dp", "secagg", dp="central",
        threat_model=(
            "SecAgg, then the server adds calibrated Gaussian noise to the sum (DP-FedAvg): the "
            "released model is (epsilon, delta)-DP at the user level against everyone who sees it. "
            "The server itself still sees the exact sum before the noise."
        ),
    ),
    Contender(
        "secagg+distributed-dp", "secagg", dp="distributed",
        threat_model=(
            "Distributed DP (Kairouz et al. 2021; Agarwal et al. 2021): each client rotates, rounds and "
            "adds a share of Skellam noise inside the 16-bit SecAgg ring, so the sum the server unmasks "
            "is already (epsilon, delta)-DP, against the server too. Noise is calibrated to the SecAgg "
            "threshold, so it holds in every round that completes."
        ),
    ),
)


def contender_names() -> list[str]:
    return [c.name for c in CONTENDERS]


@dataclass
class ContenderResult:
    """What one contender cost and protected."""

    contender: Contender
    description: str
    secure: bool
    history: History
    probe: ProbeResult
    epsilon: float | None
    noise_multiplier: float | None
    seconds: float
    server_epsilon: float | None = None
    probe_examples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 64)))

    def to_dict(self) -> dict[str, Any]:
        completed = [r for r in self.history.records if not r.aborted]

        def mean(attribute: str) -> float:
            values = [getattr(r, attribute) for r in completed]
            return float(np.mean(values)) if values else 0.0

        return {
            "name": self.contender.name,
            "protocol": self.contender.protocol,
            "description": self.description,
            "secure": self.secure,
            "dp": self.contender.dp,
            "threat_model": self.contender.threat_model,
            "final_accuracy": self.history.final_accuracy,
            "accuracy_per_round": self.history.accuracies,
            "epsilon": self.epsilon,
            "server_epsilon": self.server_epsilon,
            "noise_multiplier": self.noise_multiplier,
            "bytes_up_per_client_per_round": mean("bytes_up_per_client"),
            "bytes_down_per_client_per_round": mean("bytes_down_per_client"),
            "client_seconds_per_round": mean("client_seconds"),
            "server_seconds_per_round": mean("server_seconds"),
            "setup_seconds_per_round": mean("setup_seconds"),
            "dropped": sum(r.dropped for r in self.history.records),
            "rounds_aborted": len(self.history.aborted_rounds),
            "rounds_completed": len(completed),
            "server_saw_individual_updates": any(bool(r.server_saw_individual_updates) for r in completed),
            "probe": self.probe.to_dict(),
            "seconds": self.seconds,
        }


@dataclass
class Comparison:
    settings: dict[str, Any]
    results: list[ContenderResult]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "protocols": [r.to_dict() for r in self.results]}


def _select(names: Sequence[str] | None) -> list[Contender]:
    if not names:
        return list(CONTENDERS)
    by_name = {c.name: c for c in CONTENDERS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigurationError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names]


def _probe_inputs(trainer: FedAvg) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """The trainer's initial model and one training example per client (the first of each client's split)."""
    data = trainer.dataset
    if data is None:  # pragma: no cover - the comparison trains on the embedded digits
        raise ConfigurationError("the probe needs the trainer's embedded dataset")
    first = [int(part[0]) for part in trainer.client_indices]
    model = make_model(hidden=trainer.config.hidden, seed=trainer.config.seed or 0, inputs=data.features,
                       classes=data.classes)
    return model, np.asarray(data.train_x[first], dtype=np.float64), np.asarray(data.train_y[first])


def make_plugin(
    kind: str,
    *,
    epsilon: float,
    delta: float,
    rounds: int,
    clip: float,
    clients: int,
    rng: np.random.Generator | None = None,
) -> DifferentialPrivacy | None:
    """A fresh DP plugin of ``kind`` ("none", "central", "distributed") at epsilon over ``rounds`` rounds, q = 1.

    Every call gives a new instance of the same parameters: one for the
    trainer, one for the probe round (a plugin is bound to one aggregator).
    """
    if kind == "none":
        return None
    common: dict[str, Any] = dict(target_epsilon=epsilon, delta=delta, rounds=rounds, clip=clip,
                                  population=clients, rng=rng)
    if kind == "central":
        return CentralDP(**common)
    if kind == "distributed":
        return DistributedDP(**common)
    raise ConfigurationError(f"dp must be 'none', 'central' or 'distributed'; found {kind!r}")


def protocol_run(trainer: FedAvg) -> Protocol:
    """The protocol the trainer's rounds ran: under distributed DP the one rebuilt over the plugin's ring."""
    aggregator = trainer.aggregator
    try:
        return aggregator.bound_protocol(aggregator.layout.dimension, trainer.config.clients)
    except ConfigurationError:  # nothing was aggregated yet
        return trainer.protocol


def compare(
    *,
    clients: int = 10,
    rounds: int = 20,
    dropout: float = 0.0,
    protocols: Sequence[str] | None = None,
    seed: int = 0,
    epsilon: float = 8.0,
    delta: float = 1e-5,
    dp_clip: float = 1.0,
    progress: Callable[[str, Any], None] | None = None,
) -> Comparison:
    """Run every selected contender on the same federation and probe it.

    ``progress(name, record)`` is called after each round of each contender.
    Central and distributed DP are calibrated to ``epsilon`` at ``delta`` over
    ``rounds`` rounds with every client sampled each round (q = 1).
    """
    chosen = _select(protocols)
    config = FedAvgConfig(clients=clients, rounds=rounds, dropout=dropout, seed=seed)
    plugin = functools.partial(make_plugin, epsilon=epsilon, delta=delta, rounds=rounds, clip=dp_clip,
                               clients=clients)
    results = []
    for contender in chosen:
        started = time.perf_counter()
        protocol: Protocol = make_protocol(contender.protocol, **contender.options)
        trainer = FedAvg(protocol, config, dp=plugin(contender.dp))  # FedAvg seeds the plugin from config.seed
        history = trainer.run(progress=functools.partial(progress, contender.name) if progress else None)
        model, examples, labels = _probe_inputs(trainer)
        probe = run_probe(protocol, model, examples, labels, seed=seed,
                          dp=plugin(contender.dp, rng=np.random.default_rng([seed, 1])))
        figures = trainer.summary()
        results.append(ContenderResult(
            contender=contender,
            description=protocol_run(trainer).describe(),
            secure=bool(protocol.secure),
            history=history,
            probe=probe,
            epsilon=trainer.epsilon(),
            noise_multiplier=figures.get("noise_multiplier"),
            seconds=time.perf_counter() - started,
            server_epsilon=figures.get("server_epsilon"),
            probe_examples=examples,
        ))
    settings = {"clients": clients, "rounds": rounds, "dropout": dropout, "seed": seed,
                "epsilon_target": epsilon, "delta": delta, "dp_clip": dp_clip,
                "protocols": [c.name for c in chosen]}
    return Comparison(settings=settings, results=results)
