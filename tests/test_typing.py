"""``mypy geovr`` is clean (settings in pyproject.toml ``[tool.mypy]``).

mypy is part of the test extra; the check is skipped only where it is not installed. It uses mypy's
incremental cache (``.mypy_cache/`` in the repository, git-ignored): the first run analyses the imported
libraries (about a minute of CPU), later runs take seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_is_clean():
    pytest.importorskip("mypy", reason="mypy is part of the test extra (pip install -r requirements-dev.txt)")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "geovr"], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, f"mypy geovr found problems:\n{proc.stdout}{proc.stderr}"
