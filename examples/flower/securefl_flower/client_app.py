"""ClientApp: trains on this SuperNode's partition (node config ``partition-id``) and answers the protocol.

A SuperNode started with ``--node-config 'securefl-role="decryptor"'`` (or
``"aggregator/0"``, ...) plays that helper party instead and holds no data.
"""

from securefl.integrations.flower.fedavg import fedavg_client_app

app = fedavg_client_app()  # protocol, FedAvg and DP settings from the run config
