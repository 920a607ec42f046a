"""Run securefl protocols over Flower (flwr): a ServerApp driver and a ClientApp node.

Install with ``pip install "securefl[flower]"``. The same sans-I/O engines as
the in-process simulator run here; Flower only carries their canonical
message bytes between the ServerApp and the SuperNodes.

* :class:`FlowerDriver` -- in a ServerApp's ``main(grid, context)``: discover
  the SuperNodes (clients and helper parties), run aggregations phase by
  phase, treat nodes that fail or time out as dropouts.
* :class:`SecureFLNode` / :func:`make_client_app` -- the ClientApp that plays
  one party per SuperNode and keeps its engine in the node's context.
* :func:`securefl_mod` / :class:`SecureAggregation` -- the drop-in for a
  standard Flower app: a mod for its ``ClientApp`` and a wrapper around its
  Message-API strategy (FedAvg, FedAdam, ...); the app's own model, data and
  ``@app.train`` stay as they are.
* :mod:`.fedavg` -- FedAvg of :mod:`securefl.fl` with local training on the
  nodes and the update through the protocol.

Guide: ``docs/flower.md``; a ready-to-run app: ``examples/flower/``.
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'securefl.integrations.flower needs Flower: pip install "securefl[flower]"'
    ) from error

from securefl.integrations.flower.binding import protocol_from_config
from securefl.integrations.flower.mod import SecureFLMod, securefl_mod
from securefl.integrations.flower.node import Contribution, Job, SecureFLNode, make_client_app
from securefl.integrations.flower.server import (
    Federation,
    FlowerAggregation,
    FlowerDriver,
    NodeInfo,
    PhaseReport,
)
from securefl.integrations.flower.strategy import RoundReport, SecureAggregation

__all__ = [
    "securefl_mod",
    "SecureFLMod",
    "SecureAggregation",
    "RoundReport",
    "FlowerDriver",
    "Federation",
    "NodeInfo",
    "PhaseReport",
    "FlowerAggregation",
    "SecureFLNode",
    "Job",
    "Contribution",
    "make_client_app",
    "protocol_from_config",
]
