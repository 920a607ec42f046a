"""Evaluation: the side-by-side comparison, the privacy probe, and the report.

* :mod:`securefl.evaluation.compare` runs every protocol on one federation
  (``FedAvg`` with the contender's DP plugin) and probes it;
* :mod:`securefl.evaluation.probe` is the curious server's reconstruction
  attack on one round through a ``SecureAggregator``;
* :mod:`securefl.evaluation.report` renders a comparison (table, report.md,
  results.json, plots).

The modules import torch (and the report matplotlib); import them directly.
"""
