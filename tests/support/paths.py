"""Where things are: the checkout and the virtualenv the tests run in."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout's root."""
VENV_BIN = Path(sys.executable).parent
"""The virtualenv's ``bin`` (``teddy``, ``teddy-cloud``)."""
TEST_DATA = ROOT / "tests" / "data"
"""The tests' data files."""
