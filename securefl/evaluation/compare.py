"""`securefl compare`: every protocol on the same federation, side by side, over several seeds.

Each contender runs ``FedAvg(protocol, config, dp=plugin)`` on the embedded
digits data once per seed, with identical splits, seeds and dropout draws
across rows (``plugin`` a :class:`~securefl.privacy.plugins.CentralDP`, a
:class:`~securefl.privacy.plugins.DistributedDP` or None), then takes part in
one probe round in which every client takes a single SGD step on one example
and a curious server runs the gradient-inversion attack of
:mod:`securefl.evaluation.probe` on exactly the messages it received, and on
the aggregate it releases. The probe round goes through a ``SecureAggregator``
with a fresh plugin of the same kind and parameters, so what is attacked is
what the server (or an observer of the release) sees.

The rows without DP run the small federation (``clients``, every client each
round); the DP rows run one where DP-FedAvg means something (``dp_clients``
Poisson-sampled at ``sample_rate``, a narrower model). Every figure is given
per seed and as a :func:`spread` over the seeds; every second of a row is
split into the parts of :data:`~securefl.fl.fedavg.TIME_PARTS` plus the
row's ``build`` (data, model, partition) and ``probe``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from securefl import validation
from securefl.errors import ConfigurationError
from securefl.evaluation.probe import ProbeResult, run_probe
from securefl.fl.attacks import ModelReplacement
from securefl.fl.fedavg import TIME_PARTS, FedAvg, FedAvgConfig, History, RoundRecord
from securefl.fl.models import hidden_for_parameters, make_model, mlp_parameters
from securefl.privacy.plugins import CentralDP, DifferentialPrivacy, DistributedDP
from securefl.protocols.base import Protocol
from securefl.protocols.catalog import available, make_protocol
from securefl.protocols.validated.protocol import DEFAULT_NORM_BOUND

__all__ = ["Contender", "CONTENDERS", "contender_names", "Federation", "SeedRun", "ContenderResult", "Comparison",
           "compare", "make_plugin", "make_contender_protocol", "poisoning", "protocol_run", "spread", "ROW_PARTS"]


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
        "validated-sharing", "validated-sharing",
        threat_model=(
            "Secret sharing to two aggregators, with a zero-knowledge proof from each client that its encoded "
            "update has L2 norm at most B (--norm-bound, default 10) and a weight in range; the aggregators "
            "verify it on their shares and exclude every client whose proof fails, so a boosted (poisoned) "
            "update is rejected without being seen. Private while one aggregator does not collude with the "
            "server; robust while both aggregators are honest; an update within B is not stopped."
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
        "bfv", "bfv",
        threat_model=(
            "Clients encrypt their updates with BFV lattice encryption (TenSEAL/SEAL, 128-bit parameters) under a "
            "key holder's public key; the server adds ciphertexts it cannot read and the key holder decrypts only "
            "the aggregate of at least min_clients clients. Secure while the server and key holder do not "
            "collude; a malicious server is not stopped. Needs the `lattice` extra (TenSEAL); the row is left "
            "out without it."
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
            "is already (epsilon, delta)-DP, against the server too. Each share's seed is Shamir-shared "
            "like the self-mask seed, and once the survivors are known the server removes the shares of "
            "all but SecAgg's threshold of them: every completed round carries exactly the target noise, "
            "whatever the dropouts (add-then-remove, after Dordis)."
        ),
    ),
)


#: The parts of a row's wall time: a round's (:data:`TIME_PARTS`), then the row's own.
ROW_PARTS: dict[str, str] = {
    **TIME_PARTS,
    "build": "the row's federation: data, partition, model, protocol, DP calibration",
    "probe": "the probe round and the attack on what the server saw",
}


def _available() -> list[Contender]:
    """The rows this install can run (a protocol needing a missing extra left out)."""
    return [c for c in CONTENDERS if available(c.protocol)]


def contender_names() -> list[str]:
    return [c.name for c in _available()]


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean and interval of one figure over the seeds (None where no seed has it).

    Five seeds or more: the 95% Student-t interval of the mean; two to four:
    the minimum and maximum; one: no interval (``low == high == mean``); an
    infinite value at any seed: an infinite mean.
    """
    given = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if given and not all(math.isfinite(v) for v in given):  # an infinite epsilon at some seed
        mean = float(np.mean(given))  # +inf, -inf, or nan when both appear
        return {"mean": mean, "low": min(given), "high": max(given), "interval": "infinite", "seeds": len(given)}
    finite = given
    if not finite:
        return None
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return {"mean": mean, "low": mean, "high": mean, "interval": "one seed", "seeds": 1}
    if len(finite) < 5:
        return {"mean": mean, "low": min(finite), "high": max(finite), "interval": "min-max", "seeds": len(finite)}
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(finite) - 1) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "interval": "95% t", "seeds": len(finite)}


@dataclass(frozen=True)
class Federation:
    """The setting a row runs in: clients, rounds, the fraction sampled each round, the model's width."""

    clients: int
    rounds: int
    sample_rate: float
    hidden: int
    dropout: float

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model_parameters": mlp_parameters(hidden=self.hidden)}


@dataclass
class SeedRun:
    """One contender at one seed: its history, probe, privacy and every second it took."""

    seed: int
    history: History
    probe: ProbeResult
    epsilon: float | None
    server_epsilon: float | None
    noise_multiplier: float | None
    seconds: float
    seconds_by_part: dict[str, float]
    probe_examples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 64)))

    @property
    def unaccounted_seconds(self) -> float:
        """The row's wall time less every measured part."""
        return self.seconds - sum(self.seconds_by_part.values())

    def figures(self) -> dict[str, float | None]:
        """The numbers a row reports, for this seed (per round: means over the rounds that ran)."""
        records = self.history.records
        completed = [r for r in records if not r.aborted]

        def mean(values: Sequence[float]) -> float:
            return float(np.mean(values)) if len(values) else 0.0

        figures: dict[str, float | None] = {
            "final_accuracy": self.history.final_accuracy,
            "epsilon": self.epsilon,
            "server_epsilon": self.server_epsilon,
            "bytes_up_per_client_per_round": mean([r.bytes_up_per_client for r in completed]),
            "bytes_down_per_client_per_round": mean([r.bytes_down_per_client for r in completed]),
            "round_seconds": mean([r.seconds for r in records]),
            "client_seconds_per_round": mean([r.client_seconds for r in completed]),
            "dropped": float(sum(r.dropped for r in records)),
            "rounds_aborted": float(len(self.history.aborted_rounds)),
            "rejected": float(sum(len(r.rejected) for r in records)),
            "probe_messages": self.probe.messages.cosine if self.probe.vectors_attacked else None,
            "probe_aggregate": self.probe.aggregate.cosine,
            "probe_chance": self.probe.chance.cosine,
            "seconds": self.seconds,
        }
        for part, spent in self.history.seconds_by_part_per_round().items():
            figures[f"{part}_seconds_per_round"] = spent
        return figures

    def to_dict(self) -> dict[str, Any]:
        completed = [r for r in self.history.records if not r.aborted]
        figures = {name: value for name, value in self.figures().items() if name != "probe_messages"}
        return {  # probe_messages: in "probe", with its not_applicable where it has no score
            "seed": self.seed,
            **figures,
            "dropped": sum(r.dropped for r in self.history.records),
            "rounds_aborted": len(self.history.aborted_rounds),
            "rejected": sum(len(r.rejected) for r in self.history.records),
            "rejected_per_round": [{str(c): reason for c, reason in r.rejected.items()} for r in self.history.records],
            "rounds_completed": len(completed),
            "accuracy_per_round": self.history.accuracies,
            "noise_multiplier": self.noise_multiplier,
            "seconds_by_part": dict(self.seconds_by_part),
            "unaccounted_seconds": self.unaccounted_seconds,
            "server_saw_individual_updates": any(bool(r.server_saw_individual_updates) for r in completed),
            "probe": self.probe.to_dict(),
        }


@dataclass
class ContenderResult:
    """What one contender cost and protected, at every seed."""

    contender: Contender
    description: str
    secure: bool
    federation: Federation
    runs: list[SeedRun]

    def summary(self) -> dict[str, dict[str, Any] | None]:
        """Every figure of :meth:`SeedRun.figures` as a :func:`spread` over the seeds (in the JSON: a list of
        ``{"figure": name, "mean", "low", "high", "interval", "seeds"}``, figures that apply only)."""
        figures = [run.figures() for run in self.runs]
        return {name: spread([f[name] for f in figures]) for name in figures[0]}

    def to_dict(self) -> dict[str, Any]:
        runs = [run.to_dict() for run in self.runs]
        return {
            "name": self.contender.name,
            "protocol": self.contender.protocol,
            "description": self.description,
            "secure": self.secure,
            "dp": self.contender.dp,
            "threat_model": self.contender.threat_model,
            "federation": self.federation.to_dict(),
            "server_saw_individual_updates": any(run["server_saw_individual_updates"] for run in runs),
            "summary": [{"figure": figure, **stat} for figure, stat in self.summary().items() if stat is not None],
            "seeds": runs,
        }


@dataclass
class Comparison:
    settings: dict[str, Any]
    results: list[ContenderResult]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "protocols": [r.to_dict() for r in self.results]}


def _select(names: Sequence[str] | None) -> list[Contender]:
    if not names:
        return _available()
    by_name = {c.name: c for c in _available()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigurationError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names]


def _probe_inputs(trainer: FedAvg) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """The trainer's initial model and one training example per client of a cohort (the first of its split)."""
    data = trainer.dataset
    if data is None:  # pragma: no cover - the comparison trains on the embedded digits
        raise ConfigurationError("the probe needs the trainer's embedded dataset")
    # Under DP a round's cohort is a Poisson sample (the noise is designed for its size): probe a cohort of
    # the expected size q N.
    count = len(trainer.client_indices)
    if trainer.dp is not None:
        count = min(count, max(trainer.protocol.min_clients, round(trainer.dp.sample_rate * count)))
    clients = range(count)
    first = [int(trainer.client_indices[client][0]) for client in clients]
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
    sample_rate: float = 1.0,
    rng: np.random.Generator | None = None,
) -> DifferentialPrivacy | None:
    """A fresh DP plugin of ``kind`` ("none", "central", "distributed") at epsilon over ``rounds`` rounds.

    Every call gives a new instance of the same parameters: one for the
    trainer, one for the probe round (a plugin is bound to one aggregator).
    """
    if kind == "none":
        return None
    common: dict[str, Any] = dict(target_epsilon=epsilon, delta=delta, rounds=rounds, clip=clip,
                                  population=clients, sample_rate=sample_rate, rng=rng)
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


def make_contender_protocol(contender: Contender, *, norm_bound: float | None = None) -> Protocol:
    """The row's protocol, from the catalog with the row's options (``norm_bound``: validated-sharing's B)."""
    options = dict(contender.options)
    if norm_bound is not None and contender.protocol == "validated-sharing":
        options["norm_bound"] = norm_bound
    protocol: Protocol = make_protocol(contender.protocol, **options)
    return protocol


def poisoning(poison: int, boost: float, clients: int) -> ModelReplacement | None:
    """The attack of ``--poison K --boost F``: clients 0..K-1 boost their update by F (None for K = 0)."""
    poison = validation.non_negative_int(poison, "poison")
    if poison == 0:
        return None
    if poison >= clients:
        raise ConfigurationError(f"poison={poison} leaves no honest client among the {clients}")
    return ModelReplacement(clients=tuple(range(poison)), boost=boost)


def _run_seed(contender: Contender, federation: Federation, seed: int, *, epsilon: float, delta: float,
              dp_clip: float, progress: Callable[[RoundRecord], None] | None, attack: ModelReplacement | None = None,
              norm_bound: float | None = None) -> tuple[SeedRun, Protocol]:
    started = time.perf_counter()
    plugin = functools.partial(make_plugin, contender.dp, epsilon=epsilon, delta=delta, rounds=federation.rounds,
                               clip=dp_clip, clients=federation.clients, sample_rate=federation.sample_rate)
    protocol = make_contender_protocol(contender, norm_bound=norm_bound)
    config = FedAvgConfig(clients=federation.clients, rounds=federation.rounds, dropout=federation.dropout,
                          hidden=federation.hidden, seed=seed)
    trainer = FedAvg(protocol, config, dp=plugin(), attack=attack)  # FedAvg seeds the plugin from config.seed
    built = time.perf_counter() - started
    history = trainer.run(progress=progress)
    probing = time.perf_counter()
    model, examples, labels = _probe_inputs(trainer)
    probe = run_probe(protocol, model, examples, labels, seed=seed, dp=plugin(rng=np.random.default_rng([seed, 1])))
    probed = time.perf_counter() - probing
    accounted = time.perf_counter()
    figures = trainer.summary()
    released_epsilon = trainer.epsilon()
    parts = {part: 0.0 for part in TIME_PARTS}
    for record in history.records:
        for part, spent in record.seconds_by_part.items():
            parts[part] += spent
    parts["evaluation"] += history.initial_evaluation_seconds
    if contender.dp != "none":
        parts["accounting"] += time.perf_counter() - accounted
    parts.update(build=built + history.start_seconds, probe=probed)
    run = SeedRun(seed=seed, history=history, probe=probe, epsilon=released_epsilon,
                  server_epsilon=figures.get("server_epsilon"), noise_multiplier=figures.get("noise_multiplier"),
                  seconds=time.perf_counter() - started, seconds_by_part=parts, probe_examples=examples)
    return run, protocol_run(trainer)


def compare(
    *,
    clients: int = 10,
    rounds: int = 10,
    dropout: float = 0.0,
    protocols: Sequence[str] | None = None,
    seed: int = 0,
    seeds: int = 3,
    epsilon: float = 8.0,
    delta: float = 1e-5,
    dp_clip: float = 1.0,
    dp_clients: int = 100,
    dp_rounds: int = 20,
    sample_rate: float = 0.3,
    model_parameters: int | None = None,
    progress: Callable[[str, int, RoundRecord], None] | None = None,
    poison: int = 0,
    boost: float = 100.0,
    norm_bound: float | None = None,
) -> Comparison:
    """Run every selected contender at seeds ``seed .. seed + seeds - 1`` and probe it.

    Rows without DP: ``clients`` clients, all in every round, ``rounds``
    rounds, the default model (64 hidden units). DP rows: ``dp_clients``
    Poisson-sampled at ``sample_rate``, ``dp_rounds`` rounds, 16 hidden
    units, central and distributed DP calibrated to ``epsilon`` at ``delta``
    over those rounds. ``model_parameters``
    sizes every row's model to about that many parameters. ``progress(name,
    seed, record)`` is called after each round. ``poison`` K > 0: clients
    0..K-1 of every row are model-replacement attackers boosting their
    update by ``boost`` (:class:`~securefl.fl.attacks.ModelReplacement`;
    under DP they skip the DP stage, its clip included, as a malicious client
    would); ``norm_bound`` is validated-sharing's B (None: the catalog's default).
    """
    chosen = _select(protocols)
    smallest = min(clients if contender.dp == "none" else dp_clients for contender in chosen)
    attack = poisoning(poison, boost, smallest)
    seeds = validation.positive_int(seeds, "seeds")
    plain_hidden = FedAvgConfig.hidden if model_parameters is None else hidden_for_parameters(model_parameters)
    dp_hidden = 16 if model_parameters is None else plain_hidden
    federations = {
        "none": Federation(clients=clients, rounds=rounds, sample_rate=1.0, hidden=plain_hidden, dropout=dropout),
        "dp": Federation(clients=dp_clients, rounds=dp_rounds, sample_rate=sample_rate, hidden=dp_hidden,
                         dropout=dropout),
    }
    results = []
    for contender in chosen:
        federation = federations["none" if contender.dp == "none" else "dp"]
        runs: list[SeedRun] = []
        trainer_protocol: Protocol | None = None
        for offset in range(seeds):
            at = seed + offset
            callback = functools.partial(progress, contender.name, at) if progress else None
            run, trainer_protocol = _run_seed(contender, federation, at, epsilon=epsilon, delta=delta,
                                              dp_clip=dp_clip, progress=callback, attack=attack,
                                              norm_bound=norm_bound)
            runs.append(run)
        if trainer_protocol is None:  # seeds >= 1 is checked above; a row without a run has nothing to report
            raise ConfigurationError(f"row {contender.name!r} ran no seed")
        results.append(ContenderResult(contender=contender, description=trainer_protocol.describe(),
                                       secure=bool(trainer_protocol.secure), federation=federation, runs=runs))
    settings = {"clients": clients, "rounds": rounds, "dropout": dropout, "seed": seed, "seeds": seeds,
                "epsilon_target": epsilon, "delta": delta, "dp_clip": dp_clip, "dp_clients": dp_clients,
                "dp_rounds": dp_rounds, "sample_rate": sample_rate, "model_parameters": model_parameters,
                "federations": {name: federation.to_dict() for name, federation in federations.items()},
                "protocols": [c.name for c in chosen],
                "poison": attack.to_dict() if attack is not None else {"attack": "none", "clients": []},
                "norm_bound": DEFAULT_NORM_BOUND if norm_bound is None else norm_bound}
    return Comparison(settings=settings, results=results)
