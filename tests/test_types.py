"""The package type-checks (mypy, configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_mypy_finds_no_errors(root: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
