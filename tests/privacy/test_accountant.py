"""The accountants' interface: ledger, state, warnings, validation, extensibility."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import FrozenInstanceError, dataclass
from typing import ClassVar

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant as dp_pld

from securefl.errors import ConfigurationError
from securefl.privacy.accountant import (
    GaussianEvent,
    PLDAccountant,
    PoissonSampledGaussianEvent,
    PrivacyAccountingWarning,
    PrivacyEvent,
    RDPAccountant,
    event_from_dict,
    gaussian_delta,
    gaussian_epsilon,
    rdp_of_event,
    register_event,
)

ACCOUNTANTS = [RDPAccountant, lambda: PLDAccountant(value_discretization_interval=1e-3), PLDAccountant]
IDS = ["rdp", "pld", "pld-adaptive"]


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
def test_no_events_means_no_privacy_loss(make) -> None:
    accountant = make()
    assert accountant.get_epsilon(1e-5) == 0.0
    assert accountant.get_delta(0.0) == 0.0
    assert len(accountant) == 0


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
def test_steps_merge_in_the_ledger_and_compose(make) -> None:
    one_call = make()
    one_call.step(noise_multiplier=1.0, sample_rate=0.01, steps=300)
    many_calls = make()
    for _ in range(3):
        many_calls.step(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    assert len(many_calls.ledger) == 1
    assert len(many_calls) == 300
    assert many_calls.get_epsilon(1e-5) == pytest.approx(one_call.get_epsilon(1e-5), rel=1e-12)


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
def test_state_dict_round_trips_through_json(make) -> None:
    accountant = make()
    accountant.step(noise_multiplier=1.1, sample_rate=0.02, steps=50)
    accountant.compose(GaussianEvent(noise_multiplier=3.0), count=2)
    state = json.loads(json.dumps(accountant.state_dict()))
    restored = make()
    restored.load_state_dict(state)
    assert restored.ledger == accountant.ledger
    assert restored.get_epsilon(1e-6) == accountant.get_epsilon(1e-6)


def test_state_dict_refuses_the_other_kind() -> None:
    state = RDPAccountant().state_dict()
    with pytest.raises(ConfigurationError, match="'rdp'"):
        PLDAccountant().load_state_dict(state)


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
def test_epsilon_and_delta_are_inverse(make) -> None:
    accountant = make()
    accountant.step(noise_multiplier=0.9, sample_rate=0.05, steps=200)
    for delta in (1e-3, 1e-6, 1e-9):
        epsilon = accountant.get_epsilon(delta)
        assert accountant.get_delta(epsilon) <= delta * (1 + 1e-6)
        assert accountant.get_delta(epsilon * 0.98) > delta


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
def test_zero_noise_is_not_private(make) -> None:
    accountant = make()
    accountant.step(noise_multiplier=0.0, sample_rate=0.5)
    assert accountant.get_epsilon(1e-5) == math.inf
    assert accountant.get_delta(10.0) == pytest.approx(1.0)


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_multiplier": -1.0, "sample_rate": 0.1}, "found -1.0"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0}, "found 0.0"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5}, "found 1.5"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}, "found 0"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 2.5}, "found 2.5"),
    ],
)
def test_bad_step_values_are_echoed(make, kwargs, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make().step(**kwargs)


@pytest.mark.parametrize("make", ACCOUNTANTS, ids=IDS)
@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, float("nan")])
def test_bad_delta_is_echoed(make, delta) -> None:
    with pytest.raises(ConfigurationError, match=r"delta must be a probability in \(0, 1\); found "):
        make().get_epsilon(delta)


def test_step_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        RDPAccountant().step(1.0, 0.1)  # type: ignore[misc]


def test_events_are_frozen_and_serialisable() -> None:
    event = PoissonSampledGaussianEvent(noise_multiplier=1.0, sample_rate=0.1)
    with pytest.raises(FrozenInstanceError):
        event.sample_rate = 0.2  # type: ignore[misc]
    assert event_from_dict(event.to_dict()) == event
    with pytest.raises(ConfigurationError, match="'nope'"):
        event_from_dict({"kind": "nope"})


def test_rdp_warns_at_the_edge_of_the_order_grid() -> None:
    accountant = RDPAccountant(orders=[2.0, 4.0, 8.0])
    accountant.step(noise_multiplier=5.0, sample_rate=0.01, steps=1)  # optimum far above 8
    with pytest.warns(PrivacyAccountingWarning, match="edge of the order grid"):
        epsilon, order = accountant.get_epsilon_and_order(1e-5)
    assert order == 8.0 and epsilon > 0
    default = RDPAccountant()
    default.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyAccountingWarning)
        epsilon, order = default.get_epsilon_and_order(1e-5)
    assert 1.02 < order < 4096


def test_rdp_heterogeneous_events_add_up() -> None:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=1.0, sample_rate=0.01, steps=10)
    accountant.step(noise_multiplier=2.0, sample_rate=0.1, steps=5)
    first, second = RDPAccountant(), RDPAccountant()
    first.step(noise_multiplier=1.0, sample_rate=0.01, steps=10)
    second.step(noise_multiplier=2.0, sample_rate=0.1, steps=5)
    np.testing.assert_allclose(accountant.rdp, first.rdp + second.rdp)


def test_pld_heterogeneous_events_match_dp_accounting() -> None:
    ours = PLDAccountant(value_discretization_interval=1e-3)
    ours.step(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    ours.step(noise_multiplier=2.0, sample_rate=0.1, steps=50)
    ours.compose(GaussianEvent(noise_multiplier=4.0), count=3)
    theirs = dp_pld.PLDAccountant(value_discretization_interval=1e-3)
    theirs.compose(dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)), 100)
    theirs.compose(dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(2.0)), 50)
    theirs.compose(dp_accounting.GaussianDpEvent(4.0), 3)
    for delta in (1e-5, 1e-7):
        assert ours.get_epsilon(delta) == pytest.approx(theirs.get_epsilon(delta), rel=1e-3)


@pytest.mark.parametrize(("q", "z", "steps"), [(0.01, 1.0, 1000), (0.001, 2.0, 10_000)])
def test_pld_at_dp_accounting_default_discretisation_matches_it(q, z, steps) -> None:
    ours = PLDAccountant(value_discretization_interval=1e-4)
    ours.step(noise_multiplier=z, sample_rate=q, steps=steps)
    theirs = dp_pld.PLDAccountant()  # value_discretization_interval=1e-4
    theirs.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    assert ours.get_epsilon(1e-5) == pytest.approx(theirs.get_epsilon(1e-5), rel=1e-4)
    # The adaptive default is never looser than the fixed 1e-4 grid (finer where the loss is small) ...
    adaptive = PLDAccountant()
    adaptive.step(noise_multiplier=z, sample_rate=q, steps=steps)
    assert adaptive.get_epsilon(1e-5) <= ours.get_epsilon(1e-5) * (1 + 1e-9)
    # ... and both are well below the RDP bound for the same run.
    rdp = RDPAccountant()
    rdp.step(noise_multiplier=z, sample_rate=q, steps=steps)
    assert ours.get_epsilon(1e-5) < rdp.get_epsilon(1e-5)


def test_pld_merges_gaussians_exactly() -> None:
    accountant = PLDAccountant()
    accountant.compose(GaussianEvent(noise_multiplier=2.0), count=4)
    accountant.step(noise_multiplier=2.0, sample_rate=1.0, steps=12)
    exact = gaussian_epsilon(delta=1e-6, noise_multiplier=2.0 / 4.0)  # 16 steps: z / sqrt(16)
    assert accountant.get_epsilon(1e-6) == pytest.approx(exact, rel=1e-12)


def test_pld_refuses_a_grid_too_large() -> None:
    accountant = PLDAccountant(value_discretization_interval=1e-4, max_points=10_000)
    accountant.step(noise_multiplier=1.0, sample_rate=0.5, steps=100)
    with pytest.raises(ConfigurationError, match="value_discretization_interval"):
        accountant.get_epsilon(1e-5)


def test_gaussian_curve_inverse() -> None:
    epsilon = gaussian_epsilon(delta=1e-5, noise_multiplier=1.5)
    assert gaussian_delta(epsilon=epsilon, noise_multiplier=1.5) == pytest.approx(1e-5, rel=1e-9)
    curve = gaussian_delta(epsilon=np.array([0.0, 1.0, 5.0]), noise_multiplier=1.5)
    assert np.all(np.diff(curve) < 0)


@register_event
@dataclass(frozen=True)
class ScaledGaussianEvent(PrivacyEvent):
    """Test-only event whose RDP is registered from outside the accountant module."""

    kind: ClassVar[str] = "test_scaled_gaussian"
    noise_multiplier: float


@rdp_of_event.register(ScaledGaussianEvent)
def _rdp_of_scaled_gaussian(event: ScaledGaussianEvent, orders: np.ndarray) -> np.ndarray:
    return orders / (2.0 * event.noise_multiplier**2)


def test_new_event_types_plug_in() -> None:
    accountant = RDPAccountant()
    accountant.compose(ScaledGaussianEvent(noise_multiplier=2.0), count=3)
    reference = RDPAccountant()
    reference.compose(GaussianEvent(noise_multiplier=2.0), count=3)
    assert accountant.get_epsilon(1e-5) == pytest.approx(reference.get_epsilon(1e-5))
    restored = RDPAccountant()
    restored.load_state_dict(json.loads(json.dumps(accountant.state_dict())))
    assert restored.get_epsilon(1e-5) == accountant.get_epsilon(1e-5)
    with pytest.raises(ConfigurationError, match="does not support"):
        PLDAccountant().compose(ScaledGaussianEvent(noise_multiplier=2.0))
