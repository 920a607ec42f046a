"""Regenerate ``prv_reference.json``: opacus PRV-accountant epsilons on the test grid.

The soundness test (``test_accountant_reference.py``) checks that neither of our
accountants ever reports an epsilon below the *lower* estimate of the PRV
accountant of Gopi, Lee & Wutschitz (NeurIPS 2021, arXiv 2106.02848), as
implemented by opacus. opacus pulls in torch, so it is not a test dependency:
its figures are stored here instead, and this script (run by hand, with
``pip install opacus==1.6.0`` into the venv; it must not change torch) is how
they were made::

    .venv/bin/python tests/privacy/make_prv_reference.py

For every cell (q, z, T, delta) of the grid with q < 1 it records ``eps_lower``,
``eps_estimate`` and ``eps_upper`` from ``compute_epsilon(delta, delta_error,
eps_error)`` with ``eps_error = 0.01`` and ``delta_error = delta / 1000``
(opacus's defaults), or ``null`` with the reason when opacus fails on a cell.
Cells with q = 1 are left out: there T steps are exactly one Gaussian with
noise z / sqrt(T), and the tests use that exact epsilon instead (PRV would
also take minutes there, at epsilon ~ 2e4).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

SAMPLE_RATES = (0.001, 0.01, 0.1)  # q = 1: exact Gaussian reference instead
NOISE_MULTIPLIERS = (0.5, 1.0, 2.0, 5.0)
STEPS = (1, 100, 10_000)
DELTAS = (1e-5, 1e-7)
EPS_ERROR = 0.01


def prv_epsilons(q: float, z: float, steps: int, delta: float) -> dict:
    """Return opacus's (lower, estimate, upper) epsilon for one grid cell."""
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(z, q, steps)]
    delta_error = delta / 1000
    dprv = accountant._get_dprv(eps_error=EPS_ERROR, delta_error=delta_error)
    low, estimate, upper = dprv.compute_epsilon(delta, delta_error, EPS_ERROR)
    return {"eps_lower": float(low), "eps_estimate": float(estimate), "eps_upper": float(upper)}


def main() -> int:
    import opacus

    cells = []
    for q, z, steps, delta in itertools.product(SAMPLE_RATES, NOISE_MULTIPLIERS, STEPS, DELTAS):
        start = time.perf_counter()
        cell = {"sample_rate": q, "noise_multiplier": z, "steps": steps, "delta": delta}
        try:
            values = prv_epsilons(q, z, steps, delta)
            if not all(math.isfinite(v) for v in values.values()):
                raise ValueError(f"non-finite result {values}")
            cell.update(values)
        except Exception as exc:  # record the failure, keep going
            cell.update(eps_lower=None, eps_estimate=None, eps_upper=None, failure=repr(exc)[:200])
        cell["seconds"] = round(time.perf_counter() - start, 3)
        print(json.dumps(cell), file=sys.stderr)
        cells.append(cell)
    out = {
        "source": f"opacus {opacus.__version__} PRVAccountant (Gopi, Lee & Wutschitz 2021)",
        "eps_error": EPS_ERROR,
        "delta_error": "delta / 1000",
        "generator": "tests/privacy/make_prv_reference.py",
        "cells": cells,
    }
    path = Path(__file__).with_name("prv_reference.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({len(cells)} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
