"""The PLD accountant's adaptive default grid: tight against prv-accountant, sound everywhere.

References: ``prv_accountant_reference.json`` (prv-accountant 0.2.0, Gopi, Lee
& Wutschitz 2021, with a fine ``eps_error``; made by
``make_prv_accountant_reference.py`` in this folder) and, for soundness on
the whole reference grid of ``test_accountant_reference.py``, opacus's PRV
lower bounds in ``prv_reference.json``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate

from securefl.errors import ConfigurationError
from securefl.privacy.accountant import PLDAccountant

FINE_REFERENCE = Path(__file__).with_name("prv_accountant_reference.json")
GRID_REFERENCE = Path(__file__).with_name("prv_reference.json")
#: The regimes where a fixed 1e-4 grid was 6-69 % above the PRV estimate.
SMALL_LOSS_CELLS = tuple((0.0003, z, steps, 1e-6) for z in (3.0, 10.0) for steps in (300, 3000))


@functools.lru_cache(maxsize=1)
def fine_reference() -> dict[tuple[float, float, int, float], dict[str, Any]]:
    data = json.loads(FINE_REFERENCE.read_text())
    return {(c["sample_rate"], c["noise_multiplier"], c["steps"], c["delta"]): c for c in data["cells"]}


@functools.lru_cache(maxsize=1)
def grid_reference() -> dict[tuple[float, float, int, float], dict[str, Any]]:
    data = json.loads(GRID_REFERENCE.read_text())
    return {(c["sample_rate"], c["noise_multiplier"], c["steps"], c["delta"]): c for c in data["cells"]}


def _default_epsilon(q: float, z: float, steps: int, delta: float) -> float:
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=steps)
    return accountant.get_epsilon(delta)


def _cell_id(cell: tuple[float, float, int, float]) -> str:
    q, z, steps, delta = cell
    return f"q={q}-z={z}-T={steps}-delta={delta}"


def _loss_std(q: float, z: float) -> float:
    """The smaller std of one step's privacy loss over both directions, by quadrature of the closed form.

    remove: ``L(x) = log(1 - q + q exp((2x - 1) / (2 z^2)))``, x ~ (1-q) N(0, z^2) + q N(1, z^2);
    add: ``-L(x)``, x ~ N(0, z^2).
    """

    def loss(x: float) -> float:
        return float(np.logaddexp(math.log1p(-q), math.log(q) + (2 * x - 1) / (2 * z * z)))

    def normal(x: float, mean: float) -> float:
        return math.exp(-((x - mean) ** 2) / (2 * z * z)) / (z * math.sqrt(2 * math.pi))

    def std(density) -> float:
        lo, hi = -40 * z, 40 * z + 1
        points = [0.0, 0.5, 1.0]
        m1 = integrate.quad(lambda x: loss(x) * density(x), lo, hi, points=points, limit=400)[0]
        m2 = integrate.quad(lambda x: (loss(x) - m1) ** 2 * density(x), lo, hi, points=points, limit=400)[0]
        return math.sqrt(m2)

    remove = std(lambda x: (1 - q) * normal(x, 0.0) + q * normal(x, 1.0))
    add = std(lambda x: normal(x, 0.0))
    return min(remove, add)


def test_fine_reference_covers_the_small_loss_regimes() -> None:
    reference = fine_reference()
    for cell in SMALL_LOSS_CELLS:
        entry = reference[cell]
        assert entry["eps_lower"] <= entry["eps_estimate"] <= entry["eps_upper"]
        assert entry["eps_error"] <= 1e-4


@pytest.mark.parametrize("cell", sorted(fine_reference()), ids=_cell_id)
def test_default_pld_is_within_one_percent_of_the_prv_estimate(cell: tuple[float, float, int, float]) -> None:
    reference = fine_reference()[cell]
    epsilon = _default_epsilon(*cell)
    assert epsilon >= reference["eps_lower"], (epsilon, reference)
    assert abs(epsilon / reference["eps_estimate"] - 1) <= 0.01, (epsilon, reference["eps_estimate"])


@pytest.mark.parametrize("cell", SMALL_LOSS_CELLS[2:], ids=_cell_id)
def test_a_fixed_1e4_grid_is_loose_where_the_loss_is_small(cell: tuple[float, float, int, float]) -> None:
    q, z, steps, delta = cell
    fixed = PLDAccountant(value_discretization_interval=1e-4)
    fixed.step(noise_multiplier=z, sample_rate=q, steps=steps)
    # z = 10: the per-step loss std is ~3e-5, under a third of the interval.
    assert fixed.get_epsilon(delta) > 1.5 * fine_reference()[cell]["eps_estimate"]


@pytest.mark.parametrize(("q", "z"), [(0.0003, 10.0), (0.0003, 3.0), (0.0003, 1.0), (0.001, 5.0)])
def test_adaptive_interval_is_a_tenth_of_the_loss_std(q: float, z: float) -> None:
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=100)
    interval = accountant.effective_interval
    assert interval is not None
    assert accountant.value_discretization_interval is None
    scale = _loss_std(q, z)
    assert interval <= 1e-4
    assert 0.08 * scale <= interval <= 0.12 * scale, (interval, scale)


@pytest.mark.parametrize(("q", "z"), [(0.01, 1.0), (0.1, 2.0), (0.001, 0.5), (1e-5, 0.5)])
def test_adaptive_interval_is_capped_at_1e4_where_the_loss_is_large(q: float, z: float) -> None:
    """Large per-step std, or (q = 1e-5) a std made by rare large losses over a range of ~15:
    refining would need > 2^18 points per step for ~0.2 %, so the grid stays at 1e-4."""
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=10)
    assert accountant.effective_interval == 1e-4
    fixed = PLDAccountant(value_discretization_interval=1e-4)
    fixed.step(noise_multiplier=z, sample_rate=q, steps=10)
    assert accountant.get_epsilon(1e-6) == fixed.get_epsilon(1e-6)


@pytest.mark.parametrize("cell", [(0.0003, 3.0, 3000, 1e-6), (0.0003, 10.0, 300, 1e-5), (0.001, 5.0, 10_000, 1e-7)],
                         ids=_cell_id)
def test_adaptive_epsilon_has_converged(cell: tuple[float, float, int, float]) -> None:
    q, z, steps, delta = cell
    adaptive = PLDAccountant()
    adaptive.step(noise_multiplier=z, sample_rate=q, steps=steps)
    interval = adaptive.effective_interval
    assert interval is not None
    finer = PLDAccountant(value_discretization_interval=interval / 4)
    finer.step(noise_multiplier=z, sample_rate=q, steps=steps)
    # Both are upper bounds; refining by 4 moves epsilon by well under 0.3 %.
    assert finer.get_epsilon(delta) <= adaptive.get_epsilon(delta) <= finer.get_epsilon(delta) * 1.003


def test_adaptive_grid_coarsens_to_fit_the_point_budget() -> None:
    q, z, steps, delta = 0.0003, 1.0, 3000, 1e-6
    free = PLDAccountant()
    free.step(noise_multiplier=z, sample_rate=q, steps=steps)
    tight = PLDAccountant(max_points=1 << 17)
    tight.step(noise_multiplier=z, sample_rate=q, steps=steps)
    assert free.effective_interval is not None and tight.effective_interval is not None
    assert free.effective_interval < tight.effective_interval <= 1e-4
    reference = fine_reference()[(q, z, steps, delta)]
    assert tight.get_epsilon(delta) >= reference["eps_lower"]
    assert tight.get_epsilon(delta) >= free.get_epsilon(delta) * (1 - 1e-9)
    hopeless = PLDAccountant(max_points=1000)
    hopeless.step(noise_multiplier=z, sample_rate=q, steps=steps)
    with pytest.raises(ConfigurationError, match="value_discretization_interval"):
        hopeless.get_epsilon(delta)


def test_adaptive_state_round_trips() -> None:
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=3.0, sample_rate=0.0003, steps=300)
    state = json.loads(json.dumps(accountant.state_dict()))
    assert state["value_discretization_interval"] is None
    restored = PLDAccountant(value_discretization_interval=1e-3)
    restored.load_state_dict(state)
    assert restored.value_discretization_interval is None
    assert restored.get_epsilon(1e-6) == accountant.get_epsilon(1e-6)
    with pytest.raises(ConfigurationError, match="value_discretization_interval"):
        PLDAccountant(value_discretization_interval=0.0)


_GRID = [
    cell
    for cell in itertools.product((0.001, 0.01, 0.1), (0.5, 1.0, 2.0, 5.0), (1, 100, 10_000))
    if any(grid_reference()[(*cell, delta)]["eps_lower"] is not None for delta in (1e-5, 1e-7))
]


@pytest.mark.parametrize("cell", _GRID, ids=lambda c: f"q={c[0]}-z={c[1]}-T={c[2]}")
def test_default_pld_is_sound_on_the_reference_grid(cell: tuple[float, float, int]) -> None:
    """Where the adaptive grid is finer than 1e-4, epsilon stays above opacus's PRV lower bound.

    Elsewhere the default *is* the fixed 1e-4 grid (checked on one step: the
    interval depends on the event, not on T), whose pessimism is checked in
    test_accountant_reference.py and test_accountant.py.
    """
    q, z, steps = cell
    one_step = PLDAccountant()
    one_step.step(noise_multiplier=z, sample_rate=q, steps=1)
    interval = one_step.effective_interval
    assert interval is not None and interval <= 1e-4
    if interval == 1e-4:
        return
    accountant = PLDAccountant()
    accountant.step(noise_multiplier=z, sample_rate=q, steps=steps)
    assert accountant.effective_interval == interval
    for delta in (1e-5, 1e-7):
        lower = grid_reference()[(q, z, steps, delta)]["eps_lower"]
        if lower is not None:
            assert accountant.get_epsilon(delta) >= lower
