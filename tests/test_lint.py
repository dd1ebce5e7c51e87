"""Static check of the whole repository with the rules and format pyproject.toml selects (pyflakes,
syntax, import sorting, bugbear, pyupgrade, complexity ≤ 15) — the same ruff the pre-commit hooks run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "--quiet"], ["format", "--check", "--quiet"]], ids=["check", "format"])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed; it is part of the test extra (pip install -r requirements-dev.txt)")
    proc = subprocess.run([ruff, *command, str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pre_commit_pins_the_suite_ruff():
    """The pre-commit hooks run the ruff version the test extra pins (so both agree on the rules)."""
    import re

    config = (REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    rev = re.search(r"astral-sh/ruff-pre-commit\s+rev:\s*v(\S+)", config)
    pin = re.search(r'"ruff==([^"]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert rev and pin and rev.group(1) == pin.group(1), (rev and rev.group(1), pin and pin.group(1))
    assert "id: ruff-check" in config and "id: ruff-format" in config
