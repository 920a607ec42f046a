"""Drivers that carry securefl protocol messages over other federated-learning engines.

Each integration is optional (an extra of the package) and only moves the
canonical message bytes of the sans-I/O engines; no protocol logic lives here.

* :mod:`securefl.integrations.flower` -- Flower (``pip install "securefl[flower]"``).
"""
