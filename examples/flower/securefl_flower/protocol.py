"""The secure aggregation protocol of this app: fixed in code, on the SuperNodes and on the server.

The ClientApp's ``securefl_mod`` and the ServerApp's ``SecureAggregation``
both get ``PROTOCOL``. It is deliberately not read from the run config: the
run config comes from whoever submits the run (``flwr run --run-config``), so
a server could use it to downgrade the nodes' protocol. A node answers only
the protocol its own ClientApp was built with; a server running another one
gets refusals, not updates.

Over Flower the protocol runs against a malicious server: signed keys, the
consistency check and a graph from the clients' committed coins (the mod and
the wrapper would switch a semi-honest ``SecAgg`` to it unless both are
given ``semi_honest_server=True``).

To switch protocols, change the one line below, e.g.

    PROTOCOL = SecAgg(malicious_server=True)   # SecAgg: every client masks with every other
    PROTOCOL = SecretSharing(aggregators=2)    # two aggregator SuperNodes (securefl-role="aggregator/<j>")
    PROTOCOL = Plaintext()                     # INSECURE baseline: the server sees every update
                                               # (from securefl.protocols import Plaintext, SecretSharing)
"""

from securefl.protocols.secagg import SecAgg

#: SecAgg+ (Bell et al. 2020): each client masks its update with 4 neighbours on a graph no party chooses.
PROTOCOL = SecAgg(neighbors=4, malicious_server=True)
