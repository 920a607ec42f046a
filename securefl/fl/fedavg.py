"""Federated averaging over a secure-aggregation protocol.

Each round r the server samples a set S_r of clients; client i trains the
global model w for ``local_epochs`` of minibatch SGD on its own data
(optionally with the FedProx term (mu/2) ||w_i - w||^2, Li et al.,
arXiv 1812.06127) and submits its update

    u_i = clip(w_i - w, -c, c)      (coordinate-wise, c = protocol.encoding.clip)

with integer weight n_i (its sample count, see :func:`quantise_weights`)
through ``protocol`` via :func:`securefl.simulation.secure_sum`. The server
learns only sum_{i in I} n_i u_i and sum_{i in I} n_i over the clients I the
protocol included and applies

    w <- w + sum_{i in I} n_i u_i / sum_{i in I} n_i.

The coordinate clip is the one the encoding applies anyway (it clips to
[-c, c] before quantising); doing it here too makes the aggregated update
exactly the clipped update the client computed, whichever protocol runs,
and lets :class:`RoundRecord` report how many coordinates it touched.

Threat model: that of the protocol. With :class:`~securefl.protocols.Plaintext`
the server reads every u_i (``server_saw_individual_updates`` is True);
with a secure protocol it sees only the aggregate. The aggregate itself, the
set I and the round's sample-count total are not protected; differential
privacy (added by overriding :meth:`FedAvg._local_update`,
:meth:`FedAvg._aggregate` and :meth:`FedAvg._apply`) is what bounds what the
aggregate reveals.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from securefl import validation
from securefl.encoding import flatten_state, unflatten_state
from securefl.errors import ConfigurationError, ProtocolAbort, ProtocolViolation
from securefl.fl.data import SCHEMES, Dataset, Scheme, load_digits_data
from securefl.fl.data import partition as partition_indices
from securefl.fl.models import make_model
from securefl.protocols.base import Protocol
from securefl.simulation import AggregationResult, secure_sum, server_saw_individual_updates

__all__ = ["FedAvgConfig", "FedAvg", "RoundRecord", "History", "quantise_weights"]

#: A model's parameters by name, as ``state_dict()`` returns them.
State = Mapping[str, torch.Tensor]

# Independent random streams derived from the seed, so that e.g. turning
# dropouts on does not change which clients are sampled.
_STREAM_PARTITION, _STREAM_SAMPLING, _STREAM_DROPOUT, _STREAM_ROUNDING, _STREAM_LOCAL = range(5)


@dataclass(frozen=True)
class FedAvgConfig:
    """Hyperparameters of a federated run; every field is checked on creation.

    ``client_fraction`` of the ``clients`` are sampled each round (at least
    one); each sampled client independently drops out with probability
    ``dropout`` at a protocol phase chosen uniformly. ``partition`` is
    ``"iid"`` or ``"dirichlet"`` (label skew with concentration ``alpha``).
    ``mu`` > 0 adds the FedProx proximal term. The defaults reach about 0.95
    test accuracy on the digits in 20 rounds with 10 IID clients.
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
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("clients", "rounds", "local_epochs", "batch_size", "hidden"):
            validation.positive_int(getattr(self, name), name)
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


def quantise_weights(counts: Sequence[int], *, max_weight: int) -> list[int]:
    """Integer aggregation weights in [1, max_weight] proportional to sample counts.

    w_i = n_i when max_j n_j <= max_weight (exact FedAvg weighting);
    otherwise w_i = max(1, floor(n_i * max_weight / max_j n_j + 1/2)), so
    the largest client gets max_weight and each ratio w_i / w_j is within
    rounding of n_i / n_j (relative error <= 1 / (2 w_i)). The encoding
    refuses weights above max_weight because they could wrap the ring.
    """
    max_weight = validation.positive_int(max_weight, "max_weight")
    if len(counts) == 0:
        raise ConfigurationError("quantise_weights needs at least one sample count")
    for count in counts:
        if not validation.is_integer(count) or count < 1:
            raise ConfigurationError(f"sample counts must be positive integers; found {count!r}")
    largest = max(int(c) for c in counts)
    if largest <= max_weight:
        return [int(c) for c in counts]
    return [max(1, int(math.floor(int(c) * max_weight / largest + 0.5))) for c in counts]


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
    Under differential privacy, ``epsilon`` is the privacy spent so far and
    ``l2_clip_fraction`` the share of updates whose L2 norm was clipped.
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

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["sampled"] = list(self.sampled)
        record["included"] = list(self.included)
        record["weights"] = list(self.weights)
        record["dropouts"] = {str(client): phase for client, phase in self.dropouts.items()}
        return record


@dataclass
class History:
    """The records of a run, with the configuration and protocol that produced them."""

    config: FedAvgConfig
    protocol: str
    secure: bool
    initial_accuracy: float
    records: list[RoundRecord] = field(default_factory=list)

    @property
    def accuracies(self) -> list[float]:
        return [record.accuracy for record in self.records]

    @property
    def final_accuracy(self) -> float:
        """Test accuracy of the global model after the last round."""
        return self.records[-1].accuracy if self.records else self.initial_accuracy

    @property
    def aborted_rounds(self) -> list[int]:
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


class FedAvg:
    """Federated averaging of a small MLP on a dataset dealt to simulated clients.

    ``protocol`` aggregates the updates (see the module docstring for the
    math and threat model); ``dataset`` defaults to the digits split with
    ``config.seed``. A run is a pure function of (protocol, config, dataset):
    the same seed gives the same accuracies, whatever the protocol, as long
    as the protocol sums exactly (randomness inside protocols, such as
    masks and session ids, cancels out of the aggregate).

    The round is cut into small overridable steps so that a differentially
    private variant can clip each update's L2 norm in
    :meth:`_local_update`, add noise to the sum and divide by a fixed
    denominator in :meth:`_aggregate`, without touching the rest.
    """

    def __init__(
        self, protocol: Protocol, config: FedAvgConfig | None = None, *, dataset: Dataset | None = None
    ) -> None:
        if not isinstance(protocol, Protocol):
            raise ConfigurationError(f"protocol must be a securefl Protocol; found {type(protocol).__name__}")
        config = FedAvgConfig() if config is None else config
        if not isinstance(config, FedAvgConfig):
            raise ConfigurationError(f"config must be a FedAvgConfig; found {type(config).__name__}")
        protocol.check_clients(config.clients_per_round)
        self.protocol = protocol
        self.config = config
        self.dataset = load_digits_data(seed=config.seed) if dataset is None else dataset
        if not isinstance(self.dataset, Dataset):
            raise ConfigurationError(f"dataset must be a securefl.fl.data.Dataset; found {type(self.dataset).__name__}")
        self.client_indices = partition_indices(
            self.dataset.train_y,
            clients=config.clients,
            scheme=config.partition,
            alpha=config.alpha,
            rng=self._stream(_STREAM_PARTITION),
        )
        train_x = torch.from_numpy(np.asarray(self.dataset.train_x, dtype=np.float32))
        train_y = torch.from_numpy(np.asarray(self.dataset.train_y, dtype=np.int64))
        self._client_data = [
            (train_x[torch.from_numpy(part)], train_y[torch.from_numpy(part)]) for part in self.client_indices
        ]
        self._test_x = torch.from_numpy(np.asarray(self.dataset.test_x, dtype=np.float32))
        self._test_y = torch.from_numpy(np.asarray(self.dataset.test_y, dtype=np.int64))
        self._model = make_model(
            hidden=config.hidden, seed=config.seed, inputs=self.dataset.features, classes=self.dataset.classes
        )
        self.initial_state: State = OrderedDict((k, v.detach().clone()) for k, v in self._model.state_dict().items())
        self._restart()

    def _restart(self) -> None:
        """Back to the seeded initial model and the start of every random stream."""
        self.global_state = self.initial_state
        self._sampling_rng = self._stream(_STREAM_SAMPLING)
        self._dropout_rng = self._stream(_STREAM_DROPOUT)
        self._rounding_rng = self._stream(_STREAM_ROUNDING)

    # -- random streams ---------------------------------------------------

    def _stream(self, *key: int) -> np.random.Generator:
        """An independent generator for one purpose (and round/client), derived from the seed."""
        return np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=tuple(key)))

    # -- the steps of a round ---------------------------------------------

    def _sample_clients(self, round: int) -> list[int]:
        """Sorted indices of the clients taking part in ``round`` (uniform, without replacement)."""
        chosen = self._sampling_rng.choice(self.config.clients, size=self.config.clients_per_round, replace=False)
        return sorted(int(c) for c in chosen)

    def _sample_dropouts(self, sampled: Sequence[int]) -> dict[int, str]:
        """Position in ``sampled`` -> phase at which that client stops answering."""
        if self.config.dropout == 0:
            return {}
        phases = list(self.protocol.phases)
        drops = self._dropout_rng.random(len(sampled)) < self.config.dropout
        chosen = self._dropout_rng.integers(len(phases), size=len(sampled))
        return {position: phases[int(chosen[position])] for position in np.flatnonzero(drops).tolist()}

    def _local_update(self, client: int, global_state: State, *, round: int) -> tuple[np.ndarray, int]:
        """Train from ``global_state`` on ``client``'s data; return (clipped update, sample count).

        The update is clip(w_local - w_global, -c, c) flattened with
        :func:`securefl.encoding.flatten_state` (float64), c the encoding's clip.
        """
        config = self.config
        model = self._model
        model.load_state_dict(global_state)
        model.train()
        features, labels = self._client_data[client]
        count = int(labels.shape[0])
        parameters = list(model.parameters())
        anchors = [p.detach().clone() for p in parameters] if config.mu > 0 else []
        shuffle = self._stream(_STREAM_LOCAL, round, client)
        for _ in range(config.local_epochs):
            order = torch.from_numpy(shuffle.permutation(count))
            for start in range(0, count, config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = F.cross_entropy(model(features[batch]), labels[batch])
                if anchors:
                    proximal = sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchors))
                    loss = loss + 0.5 * config.mu * proximal
                # Plain SGD, w <- w - lr * grad, without torch.optim's per-step overhead.
                gradients = torch.autograd.grad(loss, parameters)
                with torch.no_grad():
                    for parameter, gradient in zip(parameters, gradients):
                        parameter.add_(gradient, alpha=-config.lr)
        local, _ = flatten_state(model.state_dict())
        start_point, _ = flatten_state(global_state)
        clip = self.protocol.encoding.clip
        return np.clip(local - start_point, -clip, clip), count

    def _weights(self, counts: Sequence[int]) -> list[int]:
        """Aggregation weights from sample counts (:func:`quantise_weights` to the encoding's max_weight)."""
        return quantise_weights(counts, max_weight=self.protocol.encoding.max_weight)

    def _secure_sum(
        self, updates: Sequence[np.ndarray], weights: Sequence[int], round: int, *, dropouts: Mapping[int, str]
    ) -> AggregationResult:
        """Run the protocol on the round's updates; ``ProtocolAbort`` if it cannot complete."""
        return secure_sum(
            self.protocol, updates, weights=weights, dropouts=dropouts, seed=self._rounding_rng, round=round
        )

    def _aggregate(
        self,
        updates: Sequence[np.ndarray],
        weights: Sequence[int],
        round: int,
        *,
        dropouts: Mapping[int, str] | None = None,
    ) -> tuple[np.ndarray, AggregationResult | None]:
        """(sum_I w_i u_i / sum_I w_i, the protocol's result) over the included clients I."""
        if not updates:
            raise ProtocolAbort(f"round {round}: no client was sampled")
        result = self._secure_sum(updates, weights, round, dropouts=dropouts or {})
        if result.weight_total < 1:
            raise ProtocolAbort(f"round {round}: the aggregate carries no weight")
        return result.total / result.weight_total, result

    def _apply(self, global_state: State, mean_update: np.ndarray) -> State:
        """w + mean_update, as a new state (float arithmetic in float64, stored in the model's dtype)."""
        vector, layout = flatten_state(global_state)
        return unflatten_state(vector + mean_update, layout)

    @torch.no_grad()
    def _evaluate(self, global_state: State) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of ``global_state`` on the held-out test set."""
        model = self._model
        model.load_state_dict(global_state)
        model.eval()
        logits = model(self._test_x)
        loss = float(F.cross_entropy(logits, self._test_y))
        accuracy = float((logits.argmax(dim=1) == self._test_y).double().mean())
        return accuracy, loss

    # -- the loop ---------------------------------------------------------

    def _round(self, round: int) -> RoundRecord:
        started = time.perf_counter()
        sampled = self._sample_clients(round)
        dropouts = self._sample_dropouts(sampled)
        updates: list[np.ndarray] = []
        counts: list[int] = []
        train_seconds: list[float] = []
        for client in sampled:
            begin = time.perf_counter()
            update, count = self._local_update(client, self.global_state, round=round)
            train_seconds.append(time.perf_counter() - begin)
            updates.append(update)
            counts.append(count)
        weights = self._weights(counts)
        clip = self.protocol.encoding.clip
        clipped = float(np.mean([np.mean(np.abs(u) >= clip) for u in updates])) if updates else 0.0

        result: AggregationResult | None = None
        abort_reason: str | None = None
        try:
            mean_update, result = self._aggregate(updates, weights, round, dropouts=dropouts)
        except (ProtocolAbort, ProtocolViolation) as abort:
            # A violation (a party refusing a malicious request) also ends the
            # round without an aggregate: the model stays as it was.
            abort_reason = f"{type(abort).__name__}: {abort}"
        else:
            self.global_state = self._apply(self.global_state, mean_update)
        accuracy, loss = self._evaluate(self.global_state)

        train_mean = float(np.mean(train_seconds)) if train_seconds else 0.0
        metrics = result.metrics if result is not None else {}
        protocol_seconds = metrics.get("client_seconds_mean", 0.0) + metrics.get("client_encode_seconds_mean", 0.0)
        return RoundRecord(
            round=round,
            accuracy=accuracy,
            loss=loss,
            sampled=tuple(sampled),
            included=tuple(sampled[i] for i in result.included) if result is not None else (),
            dropped=len(dropouts),
            dropouts={sampled[position]: phase for position, phase in sorted(dropouts.items())},
            aborted=abort_reason is not None,
            abort_reason=abort_reason,
            weights=tuple(weights),
            bytes_up_per_client=float(metrics.get("bytes_up_per_client", 0.0)),
            bytes_down_per_client=float(metrics.get("bytes_down_per_client", 0.0)),
            client_seconds=train_mean + float(protocol_seconds),
            client_train_seconds=train_mean,
            server_seconds=float(metrics.get("server_seconds", 0.0)),
            seconds=time.perf_counter() - started,
            server_saw_individual_updates=(
                server_saw_individual_updates(result, updates) if result is not None else None
            ),
            clipped_fraction=clipped,
            **self._round_extras(),
        )

    def _round_extras(self) -> dict[str, Any]:
        """Extra RoundRecord fields a variant reports (DP: epsilon so far)."""
        return {}

    def run(self, *, progress: Callable[[RoundRecord], None] | None = None) -> History:
        """Train for ``config.rounds`` rounds from the seeded initial model; call ``progress`` after each.

        Rounds the protocol aborts (``ProtocolAbort``) are recorded with
        ``aborted=True`` and leave the global model unchanged. Calling
        ``run`` again starts over and gives the same history.
        """
        self._restart()
        threads = torch.get_num_threads()
        # The model is tiny: one thread is faster than several and keeps
        # float reductions in one fixed order.
        torch.set_num_threads(1)
        try:
            history = History(
                config=self.config,
                protocol=self.protocol.describe(),
                secure=bool(self.protocol.secure),
                initial_accuracy=self._evaluate(self.global_state)[0],
            )
            for round in range(self.config.rounds):
                record = self._round(round)
                history.records.append(record)
                if progress is not None:
                    progress(record)
        finally:
            torch.set_num_threads(threads)
        return history
