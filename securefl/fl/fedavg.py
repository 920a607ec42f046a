"""Federated averaging (FedAvg, FedProx) of any PyTorch model over a secure-aggregation protocol.

Each round r the server samples a set S_r of clients; client i trains the
global model w on its own data for ``local_epochs`` epochs (the user's
optimizer, SGD at ``lr`` by default; optionally with the FedProx term
(mu/2) ||w_i - w||^2, Li et al., arXiv 1812.06127) and the round goes through
one :class:`~securefl.aggregator.SecureAggregator`:

    w <- w + sum_{i in I} n_i (w_i - w) / sum_{i in I} n_i

over the clients I the protocol included, n_i their sample counts (scaled to
the encoding's integer weights inside the aggregator). With a DP plugin
(``dp=CentralDP(...)`` or ``DistributedDP(...)``) clients are Poisson-sampled
at its rate q, each weighs 1, and the step is the plugin's release divided by
q N; epsilon is reported every round.

Threat model: that of the protocol. With :class:`~securefl.protocols.Plaintext`
the server reads every update (``server_saw_individual_updates`` is True);
with a secure protocol it sees only the aggregate. The aggregate itself, the
set I and the round's weight total are not protected; differential privacy
bounds what the aggregate reveals. A simulation is reproducible when a seed
is given (``FedAvgConfig.seed``); without one every random choice (sampling,
rounding, noise) comes from the OS entropy pool.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from securefl import validation
from securefl.aggregator import Aggregate, SecureAggregator
from securefl.errors import ConfigurationError, ProtocolAbort, ProtocolViolation
from securefl.fl.attacks import ModelReplacement
from securefl.fl.data import SCHEMES, Dataset, Scheme, load_digits_data
from securefl.fl.data import partition as partition_indices
from securefl.fl.models import make_model
from securefl.privacy.plugins import DifferentialPrivacy
from securefl.protocols.base import Protocol
from securefl.simulation import server_saw_individual_updates

__all__ = ["FedAvgConfig", "FedAvg", "RoundRecord", "History", "InProcessClients", "ClientsOutcome", "TIME_PARTS"]

#: A model's parameters by name, as ``state_dict()`` returns them.
State = Mapping[str, torch.Tensor]

# Independent random streams derived from the seed, so that e.g. turning
# dropouts on does not change which clients are sampled.
_STREAM_PARTITION, _STREAM_SAMPLING, _STREAM_DROPOUT, _STREAM_ROUNDING, _STREAM_LOCAL = range(5)
_STREAM_NOISE = 7


@dataclass(frozen=True)
class FedAvgConfig:
    """Hyperparameters of a federated run; every field is checked on creation.

    ``client_fraction`` of the ``clients`` are sampled each round (at least
    one); each sampled client independently drops out with probability
    ``dropout`` at a protocol phase chosen uniformly. ``partition`` is
    ``"iid"`` or ``"dirichlet"`` (label skew with concentration ``alpha``).
    ``mu`` > 0 adds the FedProx proximal term. ``seed`` makes a simulation
    reproducible (partition, sampling, rounding, noise); None draws every
    random choice from the OS entropy pool. The defaults reach about 0.95 test
    accuracy on the digits in 20 rounds with 10 IID clients.
    """

    clients: int = 10
    rounds: int = 20
    local_epochs: int = 3
    batch_size: int = 16
    lr: float = 0.3
    client_fraction: float = 1.0
    dropout: float = 0.0
    partition: Scheme = "iid"
    alpha: float = 0.5
    mu: float = 0.0
    hidden: int = 64
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("clients", "rounds", "local_epochs", "batch_size", "hidden"):
            validation.positive_int(getattr(self, name), name)
        if self.seed is not None:
            validation.non_negative_int(self.seed, "seed")
        validation.positive_float(self.lr, "lr")
        validation.probability(self.client_fraction, "client_fraction", allow_zero=False)
        validation.probability(self.dropout, "dropout")
        if self.partition not in SCHEMES:
            raise ConfigurationError(f"partition must be one of {', '.join(SCHEMES)}; found {self.partition!r}")
        validation.positive_float(self.alpha, "alpha")
        validation.non_negative_float(self.mu, "mu")

    @property
    def clients_per_round(self) -> int:
        """max(1, round(client_fraction * clients))."""
        return max(1, int(math.floor(self.client_fraction * self.clients + 0.5)))


TIME_PARTS: dict[str, str] = {
    "client_train": "local training, every sampled client",
    "client_online": "the clients' protocol work once the update exists: flattening, clipping, DP noise, "
                     "encoding and every client engine's phases",
    "client_offline": "the protocol's setup, every party's: key generation, Paillier's obfuscators (a "
                      "deployment runs it while the clients train)",
    "server": "the server engine's phases, the round's plan and the release (decoding, central DP noise)",
    "helpers": "helper engines: secret sharing's aggregators, Paillier's decryptor",
    "simulator": "what only a simulation pays: sampling, dropout draws, message routing, the transcript audit",
    "evaluation": "the global model's test accuracy after the round",
    "accounting": "the privacy accountant (DP only): the noise's calibration when the first round designs it, "
                  "then epsilon spent after each round",
    "aborted": "a round the protocol aborted: the whole aggregation call (flattening, plan, encoding, the "
               "phases run) up to the abort",
}
"""The parts a round's wall time is split into (``RoundRecord.seconds_by_part``), totals over every party."""


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one round, as the simulator measured it.

    ``sampled`` are client indices; ``dropouts`` maps the sampled clients
    told to stop answering to the phase at which they stopped and ``dropped``
    counts them; ``included`` are the clients whose updates the protocol
    summed (a client dropping after its last message may still be included).
    ``weights`` are the sampled clients' aggregation weights. ``accuracy`` and
    ``loss`` are on the held-out test set after the round. Byte counts are
    per included client (0 for an aborted round, whose metrics the simulator
    does not return); ``client_seconds`` is the mean over sampled clients of local
    training plus encoding and protocol time; ``server_seconds`` is the
    server engine's time; ``seconds`` is the round's wall time.
    ``server_saw_individual_updates`` is the transcript audit (None for an
    aborted round, which leaves the model unchanged). ``clipped_fraction`` is
    the share of update coordinates that hit the encoding's clip bound.
    Under differential privacy, ``epsilon`` is the privacy spent so far;
    ``l2_clip_fraction`` is the share of updates whose L2 norm was clipped
    (under DP, or by honest clients under a protocol's norm bound, e.g.
    ``ValidatedSharing``). ``rejected`` maps each client the aggregators
    excluded after verification to the reason (``ValidatedSharing``:
    "proof-invalid", "out-of-range", "norm-exceeded").
    ``seconds_by_part`` splits ``seconds`` into totals over every party (see
    :data:`TIME_PARTS`); ``unaccounted_seconds`` is what no part measured.
    Over Flower the nodes work in parallel on machines of their own, so only
    the server's parts are measured here and ``unaccounted_seconds`` is the
    time the server waited on the nodes and the network.
    """

    round: int
    accuracy: float
    loss: float
    sampled: tuple[int, ...]
    included: tuple[int, ...]
    dropped: int
    dropouts: dict[int, str]
    aborted: bool
    abort_reason: str | None
    weights: tuple[int, ...]
    bytes_up_per_client: float
    bytes_down_per_client: float
    client_seconds: float
    client_train_seconds: float
    server_seconds: float
    seconds: float
    server_saw_individual_updates: bool | None
    clipped_fraction: float
    epsilon: float | None = None
    l2_clip_fraction: float | None = None
    setup_seconds: float = 0.0
    seconds_by_part: dict[str, float] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)

    @property
    def unaccounted_seconds(self) -> float:
        """The round's wall time less every measured part (the timers' own cost, loop bookkeeping)."""
        return self.seconds - sum(self.seconds_by_part.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (tuples as lists, client keys as strings)."""
        record = asdict(self)
        record["unaccounted_seconds"] = self.unaccounted_seconds
        record["sampled"] = list(self.sampled)
        record["included"] = list(self.included)
        record["weights"] = list(self.weights)
        record["dropouts"] = {str(client): phase for client, phase in self.dropouts.items()}
        record["rejected"] = {str(client): reason for client, reason in self.rejected.items()}
        return record


@dataclass
class History:
    """The records of a run, with the configuration and protocol that produced them.

    ``start_seconds`` is the run's start (a fresh aggregator: DP calibration
    included) and ``initial_evaluation_seconds`` the initial model's evaluation.
    """

    config: FedAvgConfig
    protocol: str
    secure: bool
    initial_accuracy: float
    records: list[RoundRecord] = field(default_factory=list)
    initial_evaluation_seconds: float = 0.0
    start_seconds: float = 0.0

    @property
    def accuracies(self) -> list[float]:
        """Test accuracy after each round, in order."""
        return [record.accuracy for record in self.records]

    @property
    def final_accuracy(self) -> float:
        """Test accuracy of the global model after the last round."""
        return self.records[-1].accuracy if self.records else self.initial_accuracy

    def seconds_by_part_per_round(self) -> dict[str, float]:
        """Each part of :data:`TIME_PARTS`: its mean over the rounds run (0 for none)."""
        count = max(len(self.records), 1)
        return {part: sum(r.seconds_by_part.get(part, 0.0) for r in self.records) / count for part in TIME_PARTS}

    @property
    def aborted_rounds(self) -> list[int]:
        """The rounds the protocol aborted (the model stayed as it was)."""
        return [record.round for record in self.records if record.aborted]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (``json.dumps(history.to_dict())``)."""
        return {
            "config": asdict(self.config),
            "protocol": self.protocol,
            "secure": self.secure,
            "initial_accuracy": self.initial_accuracy,
            "final_accuracy": self.final_accuracy,
            "rounds": [record.to_dict() for record in self.records],
        }


def os_uniforms(count: int) -> np.ndarray:
    """``count`` uniforms in [0, 1) from the OS CSPRNG (53 random bits each)."""
    words = np.frombuffer(os.urandom(8 * count), dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _Batches:
    """The demo's minibatches of in-memory tensors: a fresh seeded permutation per epoch."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 rng: np.random.Generator) -> None:
        self.features, self.labels, self.batch_size, self.rng = features, labels, batch_size, rng
        self.dataset = labels  # len() is the sample count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = int(self.labels.shape[0])
        order = torch.from_numpy(self.rng.permutation(count))
        for start in range(0, count, self.batch_size):
            batch = order[start : start + self.batch_size]
            yield self.features[batch], self.labels[batch]


def _is_loader(data: object) -> bool:
    return isinstance(data, torch.utils.data.DataLoader)


def _count(data: Any) -> int:
    try:
        count = len(data.dataset) if _is_loader(data) else len(data)
    except TypeError:
        raise ConfigurationError(f"client data of type {type(data).__name__} has no length (sample count)") from None
    return int(count)


@dataclass
class ClientsOutcome:
    """What the clients' side of one round produced, for the round's record.

    ``aggregate`` is None when the round aborted (``abort_reason`` says why);
    ``dropouts`` maps client index -> the phase it stopped at; seconds are
    means over the sampled clients; ``audit`` is the transcript audit (None
    where the individual updates are not at hand, e.g. on remote nodes).
    ``seconds_by_part`` holds the parts of :data:`TIME_PARTS` measured here.
    """

    aggregate: Aggregate | None
    abort_reason: str | None
    dropouts: dict[int, str]
    train_seconds: float
    protocol_seconds: float
    audit: bool | None
    seconds_by_part: dict[str, float] = field(default_factory=dict)


class InProcessClients:
    """The sampled clients of a simulation: trained here, one after the other, and aggregated in process.

    ``FedAvgConfig.dropout`` makes each one stop answering at a random
    protocol phase. Another deployment (e.g. Flower) provides its own object
    with the same :meth:`train_and_aggregate`.
    """

    def train_and_aggregate(self, fedavg: FedAvg, sampled: Sequence[int], *, round: int) -> ClientsOutcome:
        reference = fedavg.global_state
        drawn = time.perf_counter()
        dropouts = fedavg.sample_dropouts(sampled)
        simulator = time.perf_counter() - drawn
        states: list[State] = []
        counts: list[int] = []
        train_seconds: list[float] = []
        attack = fedavg.attack
        malicious = [position for position, client in enumerate(sampled)
                     if attack is not None and attack.applies_to(client)]
        for client in sampled:
            begin = time.perf_counter()
            state, count = fedavg.local_update(client, reference, round=round)
            if attack is not None and attack.applies_to(client):
                state = attack.poison(state, reference)
            train_seconds.append(time.perf_counter() - begin)
            states.append(state)
            counts.append(count)
        aggregate: Aggregate | None = None
        abort_reason: str | None = None
        aggregating = time.perf_counter()
        try:
            if not states and fedavg.dp is None:
                raise ProtocolAbort(f"round {round}: no client was sampled")
            aggregate = fedavg.aggregator.aggregate_models(
                states, reference=reference, weights=None if fedavg.dp is not None else counts,
                dropouts=dropouts, round=round, clients=sampled, dishonest=malicious)
        except (ProtocolAbort, ProtocolViolation) as abort:
            # A violation (a party refusing a malicious request) also ends the
            # round without an aggregate: the model stays as it was.
            abort_reason = f"{type(abort).__name__}: {abort}"
        aborted = time.perf_counter() - aggregating if aggregate is None else 0.0
        metrics = aggregate.metrics if aggregate is not None else {}
        audit: bool | None = None
        audited = time.perf_counter()
        if aggregate is not None and aggregate.included:
            layout = fedavg.aggregator.layout
            start = layout.flatten(reference, client=-1)
            audit = server_saw_individual_updates(
                aggregate.result, [layout.flatten(state, client=i) - start for i, state in enumerate(states)])
        simulator += time.perf_counter() - audited + float(metrics.get("routing_seconds", 0.0))
        parts = {
            "client_train": float(sum(train_seconds)),
            "client_online": float(metrics.get("client_online_seconds", 0.0)),
            "client_offline": float(metrics.get("setup_seconds", 0.0)),
            "server": float(metrics.get("server_seconds", 0.0)) + float(metrics.get("server_release_seconds", 0.0)),
            "helpers": float(sum(metrics.get("helper_seconds", {}).values())),
            "simulator": simulator,
        }
        if aborted:
            parts["aborted"] = aborted
        if fedavg.dp is not None and metrics.get("dp_design_seconds"):
            parts["accounting"] = float(metrics["dp_design_seconds"])
        return ClientsOutcome(
            aggregate=aggregate,
            abort_reason=abort_reason,
            dropouts={sampled[position]: phase for position, phase in dropouts.items()},
            train_seconds=float(np.mean(train_seconds)) if train_seconds else 0.0,
            protocol_seconds=float(metrics.get("client_seconds_mean", 0.0))
            + float(metrics.get("client_encode_seconds_mean", 0.0)),
            audit=audit,
            seconds_by_part=parts,
        )


class FedAvg:
    """Federated averaging of the user's model on the user's per-client data, through ``protocol``.

    ``model`` is a ``torch.nn.Module`` (or a function making one);
    ``client_data`` one torch ``Dataset`` or ``DataLoader`` per client
    (Datasets are batched at ``config.batch_size`` and shuffled); ``test_data``
    a Dataset or DataLoader for the accuracy and loss after each round;
    ``optimizer`` a function of the parameters making a ``torch.optim``
    optimizer (plain SGD at ``config.lr`` by default); ``loss`` a function of
    (outputs, targets) (cross-entropy by default). With none of model and
    data given it trains a small MLP on the digits split (``dataset``).
    ``dp`` is an optional DP plugin. ``clients`` runs the clients' side of
    each round (:class:`InProcessClients` by default: local training and one
    :meth:`SecureAggregator.aggregate_models` call). ``fresh_local_order=True``
    draws the local minibatch order from the OS rather than from
    ``config.seed`` (a node of a deployment: the seed is public, and two
    trainings of one round that come out identical let a server that asks
    twice subtract one sum from another); see the module docstring for the
    math and the threat model. ``attack`` (a simulation's robustness
    experiment, e.g. :class:`~securefl.fl.attacks.ModelReplacement`) makes
    the clients it names send poisoned models.
    """

    def __init__(
        self,
        protocol: Protocol,
        config: FedAvgConfig | None = None,
        *,
        model: torch.nn.Module | Callable[[], torch.nn.Module] | None = None,
        client_data: Sequence[Any] | None = None,
        test_data: Any = None,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        dp: DifferentialPrivacy | None = None,
        dataset: Dataset | None = None,
        clients: InProcessClients | Any = None,
        fresh_local_order: bool = False,
        attack: ModelReplacement | None = None,
    ) -> None:
        if not isinstance(protocol, Protocol):
            raise ConfigurationError(f"protocol must be a securefl Protocol; found {type(protocol).__name__}")
        config = FedAvgConfig() if config is None else config
        if not isinstance(config, FedAvgConfig):
            raise ConfigurationError(f"config must be a FedAvgConfig; found {type(config).__name__}")
        if dp is not None and not isinstance(dp, DifferentialPrivacy):
            raise ConfigurationError(f"dp must be CentralDP, DistributedDP or None; found {type(dp).__name__}")
        if attack is not None:
            if not isinstance(attack, ModelReplacement):
                raise ConfigurationError(f"attack must be a ModelReplacement or None; found {type(attack).__name__}")
            outside = [client for client in attack.clients if client >= config.clients]
            if outside:
                raise ConfigurationError(f"malicious client(s) {outside} are not among the {config.clients} clients")
        self.attack = attack
        self.protocol = protocol
        self.config = config
        self._entropy = config.seed if config.seed is not None else int.from_bytes(os.urandom(16), "little")
        fresh = validation.boolean(fresh_local_order, "fresh_local_order")
        self._local_entropy = int.from_bytes(os.urandom(16), "little") if fresh else self._entropy
        self.dp = self._population_dp(dp, config) if dp is not None else None
        if self.dp is None:
            protocol.check_clients(config.clients_per_round)
        elif config.client_fraction != 1.0:
            raise ConfigurationError(
                "DP-FedAvg samples clients by Poisson sampling at dp.sample_rate; "
                f"leave client_fraction at 1.0 (found {config.client_fraction})"
            )
        self.clients = InProcessClients() if clients is None else clients
        self.loss = F.cross_entropy if loss is None else loss
        self.make_optimizer = optimizer
        self._setup_data(model, client_data, test_data, dataset)
        self.initial_state: State = OrderedDict((k, v.detach().clone()) for k, v in self._model.state_dict().items())
        self._restart()

    @staticmethod
    def _population_dp(dp: DifferentialPrivacy, config: FedAvgConfig) -> DifferentialPrivacy:
        """The plugin with N = ``config.clients`` (the population the sampling rate applies to)."""
        if dp.population is not None and dp.population != config.clients:
            raise ConfigurationError(f"dp.population={dp.population} but the federation has {config.clients} clients")
        return dataclasses.replace(dp, population=config.clients)  # type: ignore[type-var]

    def _setup_data(self, model: Any, client_data: Sequence[Any] | None, test_data: Any,
                    dataset: Dataset | None) -> None:
        config = self.config
        demo = model is None and client_data is None
        self.dataset: Dataset | None
        if demo or dataset is not None:
            self.dataset = load_digits_data(seed=self._entropy % 2**63) if dataset is None else dataset
            if not isinstance(self.dataset, Dataset):
                raise ConfigurationError(
                    f"dataset must be a securefl.fl.data.Dataset; found {type(self.dataset).__name__}")
        else:
            self.dataset = None
        if client_data is None:
            if self.dataset is None:  # pragma: no cover - demo implies a dataset
                raise ConfigurationError("client_data is needed with a model of your own")
            self.client_indices = partition_indices(
                self.dataset.train_y, clients=config.clients, scheme=config.partition, alpha=config.alpha,
                rng=self._stream(_STREAM_PARTITION))
            train_x = torch.from_numpy(np.asarray(self.dataset.train_x, dtype=np.float32))
            train_y = torch.from_numpy(np.asarray(self.dataset.train_y, dtype=np.int64))
            self._tensors: list[tuple[torch.Tensor, torch.Tensor]] | None = [
                (train_x[torch.from_numpy(part)], train_y[torch.from_numpy(part)]) for part in self.client_indices]
            self._client_data: list[Any] = []
        else:
            if len(client_data) != config.clients:
                raise ConfigurationError(f"{len(client_data)} client datasets for config.clients={config.clients}")
            self._tensors = None
            self._client_data = list(client_data)
            for index, data in enumerate(self._client_data):
                if _count(data) < 1:
                    raise ConfigurationError(f"client {index} has no data")
        if test_data is None and self.dataset is not None:
            test_data = (torch.from_numpy(np.asarray(self.dataset.test_x, dtype=np.float32)),
                         torch.from_numpy(np.asarray(self.dataset.test_y, dtype=np.int64)))
        self._test_data = test_data
        if model is None:
            if self.dataset is None:
                raise ConfigurationError("a model is needed with client_data of your own")
            model = make_model(hidden=config.hidden, seed=self._entropy % 2**63, inputs=self.dataset.features,
                               classes=self.dataset.classes)
        elif not isinstance(model, torch.nn.Module):
            if not callable(model):
                raise ConfigurationError(f"model must be a torch.nn.Module or a function making one; found "
                                         f"{type(model).__name__}")
            model = model()
            if not isinstance(model, torch.nn.Module):
                raise ConfigurationError(f"the model factory returned a {type(model).__name__}, not a Module")
        self._model: torch.nn.Module = model

    def _restart(self) -> None:
        """Back to the initial model, a fresh aggregator and the start of every random stream."""
        self.global_state = self.initial_state
        self._sampling_rng = self._stream(_STREAM_SAMPLING)
        self._dropout_rng = self._stream(_STREAM_DROPOUT)
        dp = self.dp
        if dp is not None:  # a fresh plugin: its noise and rotation streams start over as well
            noise = self._stream(_STREAM_NOISE) if self.config.seed is not None else None
            dp = dataclasses.replace(dp, rng=noise)  # type: ignore[type-var]
        self.aggregator = SecureAggregator(self.protocol, dp=dp, rng=self._stream(_STREAM_ROUNDING))
        self._wrap_probabilities: list[float] = []

    # -- random streams ---------------------------------------------------

    def _stream(self, *key: int) -> np.random.Generator:
        """An independent generator for one purpose (and round/client), derived from the seed or the OS."""
        return np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=tuple(key)))

    def _local_stream(self, round: int, client: int) -> np.random.Generator:
        """The generator of ``client``'s minibatch order in ``round``."""
        return np.random.default_rng(np.random.SeedSequence(self._local_entropy, spawn_key=(_STREAM_LOCAL, round,
                                                                                              client)))

    # -- the steps of a round ---------------------------------------------

    def sample_clients(self, round: int) -> list[int]:
        """Sorted indices of the clients taking part in ``round``.

        Uniform without replacement (``clients_per_round`` of them); under DP
        each client joins independently with probability q (Poisson), drawn
        from the OS CSPRNG unless ``config.seed`` makes a reproducible
        simulation: a sample predictable from a known seed would void the
        amplification by sampling the accountant counts on.
        """
        if self.dp is not None:
            count = self.config.clients
            uniforms = self._sampling_rng.random(count) if self.config.seed is not None else os_uniforms(count)
            return [int(c) for c in np.flatnonzero(uniforms < self.dp.sample_rate)]
        chosen = self._sampling_rng.choice(self.config.clients, size=self.config.clients_per_round, replace=False)
        return sorted(int(c) for c in chosen)

    def sample_dropouts(self, sampled: Sequence[int]) -> dict[int, str]:
        """Position in ``sampled`` -> phase at which that client stops answering."""
        if self.config.dropout == 0:
            return {}
        phases = list(self.protocol.phases)
        # Two uniforms per client whatever the protocol (integers(1) would draw nothing for a one-phase
        # protocol and shift the stream): the same clients drop in every protocol at one seed.
        drops = self._dropout_rng.random(len(sampled)) < self.config.dropout
        chosen = np.minimum((self._dropout_rng.random(len(sampled)) * len(phases)).astype(np.int64), len(phases) - 1)
        return {position: phases[int(chosen[position])] for position in np.flatnonzero(drops).tolist()}

    def client_batches(self, client: int, *, round: int) -> Iterable[Any]:
        """The minibatches of ``client`` for one local epoch (a DataLoader, or the demo's shuffled tensors)."""
        if self._tensors is not None:
            features, labels = self._tensors[client]
            return _Batches(features, labels, batch_size=self.config.batch_size,
                            rng=self._local_stream(round, client))
        data = self._client_data[client]
        if _is_loader(data):
            return data
        generator = torch.Generator().manual_seed(int(self._local_stream(round, client).integers(2**62)))
        return torch.utils.data.DataLoader(data, batch_size=self.config.batch_size, shuffle=True, generator=generator)

    def sample_count(self, client: int) -> int:
        """n_i, the number of training samples of ``client``."""
        if self._tensors is not None:
            return int(self._tensors[client][1].shape[0])
        return _count(self._client_data[client])

    def local_update(self, client: int, global_state: State, *, round: int) -> tuple[State, int]:
        """Train from ``global_state`` on ``client``'s data; (the local model's state, its sample count)."""
        config = self.config
        model = self._model
        model.load_state_dict(global_state)
        model.train()
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = None if self.make_optimizer is None else self.make_optimizer(parameters)
        anchors = [p.detach().clone() for p in parameters] if config.mu > 0 else []
        batches = self.client_batches(client, round=round)
        for _ in range(config.local_epochs):
            for features, labels in batches:
                loss = self.loss(model(features), labels)
                if anchors:
                    proximal = sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchors, strict=True))
                    loss = loss + 0.5 * config.mu * proximal
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    continue
                # Plain SGD, w <- w - lr grad, without torch.optim's import and per-step overhead.
                gradients = torch.autograd.grad(loss, parameters)
                with torch.no_grad():
                    for parameter, gradient in zip(parameters, gradients, strict=True):
                        parameter.add_(gradient, alpha=-config.lr)
        state = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
        return state, self.sample_count(client)

    @torch.no_grad()
    def evaluate(self, global_state: State) -> tuple[float, float]:
        """(accuracy, mean loss) of ``global_state`` on the test data; (nan, nan) without test data."""
        if self._test_data is None:
            return math.nan, math.nan
        model = self._model
        model.load_state_dict(global_state)
        model.eval()
        if isinstance(self._test_data, tuple):
            batches: Iterable[Any] = [self._test_data]
        elif _is_loader(self._test_data):
            batches = self._test_data
        else:
            batches = torch.utils.data.DataLoader(self._test_data, batch_size=256)
        correct, total, loss_sum = 0, 0, 0.0
        for features, labels in batches:
            logits = model(features)
            loss_sum += float(self.loss(logits, labels)) * int(labels.shape[0])
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += int(labels.shape[0])
        return (correct / total, loss_sum / total) if total else (math.nan, math.nan)

    def epsilon(self) -> float | None:
        """Privacy spent so far at ``dp.delta`` against observers of the model (None without DP)."""
        return self.aggregator.epsilon

    def summary(self) -> dict[str, Any]:
        """The DP figures of a run (plugin parameters, epsilon so far, against the server too)."""
        if self.dp is None:
            return {"dp": None}
        plugin = self.aggregator.dp
        summary = plugin.summary() if plugin is not None else {}
        summary["epsilon"] = self.epsilon()
        summary["client_sampling"] = "seeded" if self.config.seed is not None else "os-csprng"
        if self.aggregator.server_epsilon is not None:
            summary["server_epsilon"] = self.aggregator.server_epsilon
            summary["wrap_probability_max"] = max(self._wrap_probabilities, default=0.0)
        return summary

    # -- the loop ---------------------------------------------------------

    def _round(self, round: int) -> RoundRecord:
        started = time.perf_counter()
        sampled = self.sample_clients(round)
        sampling = time.perf_counter() - started
        outcome = self.clients.train_and_aggregate(self, sampled, round=round)
        aggregate = outcome.aggregate
        if aggregate is not None and (aggregate.included or self.dp is not None and self.dp.kind == "central"):
            self.global_state = aggregate.model
        evaluated = time.perf_counter()
        accuracy, loss = self.evaluate(self.global_state)
        parts = dict(outcome.seconds_by_part)
        parts["simulator"] = parts.get("simulator", 0.0) + sampling
        parts["evaluation"] = time.perf_counter() - evaluated
        accounted = time.perf_counter()
        epsilon = self.epsilon()
        if self.dp is not None:
            parts["accounting"] = parts.get("accounting", 0.0) + time.perf_counter() - accounted
        metrics = aggregate.metrics if aggregate is not None else {}
        self._wrap_probabilities.append(float(metrics.get("wrap_probability", 0.0)))
        return RoundRecord(
            round=round,
            accuracy=accuracy,
            loss=loss,
            sampled=tuple(sampled),
            included=tuple(sampled[i] for i in aggregate.included) if aggregate is not None else (),
            dropped=len(outcome.dropouts),
            dropouts=dict(sorted(outcome.dropouts.items())),
            aborted=outcome.abort_reason is not None,
            abort_reason=outcome.abort_reason,
            weights=tuple(metrics.get("weights", ())),
            bytes_up_per_client=float(metrics.get("bytes_up_per_client", 0.0)),
            bytes_down_per_client=float(metrics.get("bytes_down_per_client", 0.0)),
            client_seconds=outcome.train_seconds + outcome.protocol_seconds,
            client_train_seconds=outcome.train_seconds,
            server_seconds=float(metrics.get("server_seconds", 0.0)),
            seconds=time.perf_counter() - started,
            server_saw_individual_updates=outcome.audit,
            clipped_fraction=float(metrics.get("clipped_fraction", math.nan)),
            epsilon=epsilon,
            l2_clip_fraction=float(metrics["l2_clip_fraction"]) if "l2_clip_fraction" in metrics else None,
            setup_seconds=float(metrics.get("setup_seconds", 0.0)),
            seconds_by_part=parts,
            rejected={sampled[int(position)]: str(reason)
                      for position, reason in metrics.get("rejected", {}).items()},
        )

    def run(self, *, progress: Callable[[RoundRecord], None] | None = None) -> History:
        """Train for ``config.rounds`` rounds from the seeded initial model; call ``progress`` after each.

        Rounds the protocol aborts (``ProtocolAbort``) are recorded with
        ``aborted=True`` and leave the global model unchanged. Calling
        ``run`` again starts over and gives the same history.
        """
        started = time.perf_counter()
        self._restart()
        start_seconds = time.perf_counter() - started
        threads = torch.get_num_threads()
        # The model is tiny: one thread is faster than several and keeps
        # float reductions in one fixed order.
        torch.set_num_threads(1)
        try:
            evaluated = time.perf_counter()
            initial_accuracy = self.evaluate(self.global_state)[0]
            history = History(
                config=self.config,
                protocol=self.protocol.describe(),
                secure=bool(self.protocol.secure),
                initial_accuracy=initial_accuracy,
                initial_evaluation_seconds=time.perf_counter() - evaluated,
                start_seconds=start_seconds,
            )
            for round in range(self.config.rounds):
                record = self._round(round)
                history.records.append(record)
                if progress is not None:
                    progress(record)
        finally:
            torch.set_num_threads(threads)
        return history
