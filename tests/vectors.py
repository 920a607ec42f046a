"""Load known-answer test vectors from ``protocols/vectors/<name>.json``.

Each file is a JSON object with a ``cases`` list (see protocols/vectors/README.md);
``load_vectors`` returns that list so tests can parametrise over it.
"""

from __future__ import annotations

import json
from pathlib import Path

VECTORS_DIR = Path(__file__).resolve().parent.parent / "protocols" / "vectors"


def load_vectors(name: str) -> list[dict]:
    """The ``cases`` of ``protocols/vectors/<name>.json`` (``name`` without the extension)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"vector set name must be a bare file stem like 'shamir'; found {name!r}")
    path = VECTORS_DIR / f"{name}.json"
    with path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    cases = document["cases"] if isinstance(document, dict) else document
    if not isinstance(cases, list) or not all(isinstance(case, dict) for case in cases):
        raise ValueError(f"{path} must hold a list of objects under 'cases'")
    return cases
