"""Make the repository root importable so tests can ``from tests.vectors import load_vectors``.

(A no-op once the root is already on sys.path, e.g. via ``pythonpath`` in pytest config.)
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
