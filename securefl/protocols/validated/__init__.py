"""Validated secret sharing: aggregators verify, without seeing it, that each update is norm-bounded."""

from securefl.protocols.validated.protocol import DEFAULT_NORM_BOUND, ValidatedSharing
from securefl.protocols.validated.statement import Rejection

__all__ = ["ValidatedSharing", "Rejection", "DEFAULT_NORM_BOUND"]
