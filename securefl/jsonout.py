"""Strict JSON for every ``--json`` output: non-finite numbers become null."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["finite", "dumps"]


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` that never writes the non-standard NaN / Infinity tokens."""
    return json.dumps(finite(value), allow_nan=False, **options)
