"""The one JSON convention of every ``--json`` output (``run``, ``compare``, ``epsilon``, ``calibrate``).

A document is one strict JSON object (RFC 8259: no ``NaN`` / ``Infinity``
tokens) whose first field is ``schema_version``. ``null`` means only "not
applicable" (no DP: ``"epsilon": null``; no seed: ``"seed": null``), never
"infinite" or "failed". A non-finite number is the string Python's
``float()`` reads back: ``"inf"``, ``"-inf"``, ``"nan"`` (``--noise-multiplier 0``
gives ``"epsilon": "inf"``). A count of clients that dropped is ``dropped``;
``dropouts`` is always the map client -> phase at which it stopped.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["SCHEMA_VERSION", "INFINITY", "encode", "document", "dumps", "loads", "number"]

#: Version of the documents' layout; raised when a field is renamed or changes meaning.
SCHEMA_VERSION = 1

#: How an infinite number is written (``float(INFINITY) == math.inf``).
INFINITY = "inf"

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return INFINITY if value > 0 else "-" + INFINITY


def encode(value: Any) -> Any:
    """``value`` as plain JSON data: non-finite floats as ``"inf"`` / ``"-inf"`` / ``"nan"``, tuples as lists.

    NumPy scalars become Python numbers; mapping keys become strings (as
    ``json.dumps`` would write them).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _float(float(value))
    if isinstance(value, Mapping):
        return {str(key): encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    return value


def document(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as a securefl JSON document: ``schema_version`` first, then the encoded fields."""
    if "schema_version" in fields and fields["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {SCHEMA_VERSION}; found {fields['schema_version']!r}")
    encoded = encode(fields)
    encoded.pop("schema_version", None)
    return {"schema_version": SCHEMA_VERSION, **encoded}


def dumps(fields: Mapping[str, Any], **options: Any) -> str:
    """The text of :func:`document` (``fields``): strict JSON, never a NaN / Infinity token."""
    return json.dumps(document(fields), allow_nan=False, **options)


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (RFC 8259); a securefl document writes it as a string")


def loads(text: str) -> Any:
    """Parse a document strictly: a ``NaN`` / ``Infinity`` token is a ``ValueError``."""
    return json.loads(text, parse_constant=_refuse_constant)


def number(value: float | str | None) -> float | None:
    """A number field read back: ``"inf"`` -> ``math.inf`` (and ``"-inf"``, ``"nan"``); None stays None."""
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, str):
        if value not in _NON_FINITE:
            raise ValueError(f"expected a number or one of {', '.join(_NON_FINITE)}; found {value!r}")
        return _NON_FINITE[value]
    return float(value)
