"""The privacy probe runs one round through a SecureAggregator with the federation's DP plugin."""

import ast
from pathlib import Path

import numpy as np
import pytest

from securefl.evaluation.probe import run_probe
from securefl.fl.data import load_digits_data
from securefl.fl.models import make_model
from securefl.privacy.plugins import CentralDP, DistributedDP
from securefl.protocols import Plaintext, SecAgg

EVALUATION = Path(__file__).resolve().parents[2] / "securefl" / "evaluation"


@pytest.fixture(scope="module")
def federation():
    data = load_digits_data(seed=0)
    examples = np.asarray(data.train_x[:4], dtype=np.float64)
    labels = np.asarray(data.train_y[:4])
    return make_model(hidden=16, seed=0, inputs=data.features, classes=data.classes), examples, labels


def test_plaintext_messages_give_the_examples_away_even_when_clipped(federation):
    model, examples, labels = federation

    plain = run_probe(Plaintext(), model, examples, labels, seed=0)
    clipped = run_probe(Plaintext(), model, examples, labels, seed=0, dp=CentralDP(noise_multiplier=0.0, clip=0.5))

    # Delta W_j / Delta b_j is invariant to the scale L2 clipping applies.
    assert plain.messages.cosine > 0.99 and clipped.messages.cosine > 0.99
    assert plain.vectors_attacked == clipped.vectors_attacked == 4


def test_central_noise_on_the_released_sum_is_what_the_aggregate_probe_sees(federation):
    model, examples, labels = federation

    exact = run_probe(SecAgg(), model, examples, labels, seed=0)
    noised = run_probe(SecAgg(), model, examples, labels, seed=0, dp=CentralDP(noise_multiplier=5.0, clip=0.5))

    assert exact.aggregate.cosine > 0.99
    assert noised.aggregate.cosine < exact.aggregate.cosine - 0.3
    assert noised.messages.cosine < 0.7  # masked either way


def test_distributed_noise_is_in_the_sum_the_server_unmasks(federation):
    model, examples, labels = federation

    result = run_probe(SecAgg(), model, examples, labels, seed=0,
                       dp=DistributedDP(noise_multiplier=5.0, clip=0.5, rng=np.random.default_rng(1)))

    assert result.aggregate.cosine < 0.7 and result.messages.cosine < 0.7
    assert result.vectors_attacked >= 4


def test_the_probe_is_reproducible_with_its_seed(federation):
    model, examples, labels = federation

    first = run_probe(SecAgg(), model, examples, labels, seed=3, dp=CentralDP(noise_multiplier=1.0, clip=0.5,
                                                                             rng=np.random.default_rng(1)))
    second = run_probe(SecAgg(), model, examples, labels, seed=3, dp=CentralDP(noise_multiplier=1.0, clip=0.5,
                                                                              rng=np.random.default_rng(1)))

    assert first.aggregate.to_dict() == second.aggregate.to_dict()


@pytest.mark.parametrize("module", sorted(path.name for path in EVALUATION.glob("*.py")))
def test_evaluation_adds_no_noise_and_runs_no_round_of_its_own(module):
    """Noise, clipping and rounds come from the DP plugins and the aggregator; evaluation/ only calls them."""
    tree = ast.parse((EVALUATION / module).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}

    assert not imported & {"gaussian_noise", "clip_l2", "rotation_signs", "DistributedPipeline", "secure_sum",
                           "run_protocol"}
