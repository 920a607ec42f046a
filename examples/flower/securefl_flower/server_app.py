"""ServerApp: FedAvg rounds over the connected SuperNodes; only the secure aggregate reaches it.

Protocol, FedAvg and DP settings come from the run config (pyproject.toml);
the history is written to ``history-file`` when it is set.
"""

from securefl.integrations.flower.fedavg import fedavg_server_app

app = fedavg_server_app()
