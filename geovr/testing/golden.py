"""Locate the shared reference ("golden") data used by parity tests.

Search order: ``$GEOVR_GOLDEN_DIR/<name>``, then ``shared/golden/<name>`` in the repository's parent
directory and its ancestors. The data is read in place and never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path


def find_golden(name: str) -> Path | None:
    """Directory of golden data set ``name`` (``"vggt"``, ``"dust3r"``) or ``None``."""
    env = os.environ.get("GEOVR_GOLDEN_DIR")
    if env and (Path(env) / name).is_dir():
        return Path(env) / name
    for base in [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2],
                 *Path(__file__).resolve().parents[2].parents]:
        cand = base / "shared" / "golden" / name
        if cand.is_dir():
            return cand
    return None


def golden_dir(name: str) -> Path:
    """Like :func:`find_golden` inside a test: under CI (``CI`` set) missing data fails the test,
    elsewhere it skips with the reason."""
    import pytest

    path = find_golden(name)
    if path is None:
        msg = f"golden data {name!r} not found (set GEOVR_GOLDEN_DIR or place shared/golden beside the repo)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
