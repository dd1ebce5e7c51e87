"""Locate the reference ("golden") data that parity tests compare against.

The data lives in the repository beside the tests that read it:

* a plugin's tests: ``plugins/<plugin>/tests/golden/`` (e.g. ``plugins/geovr-plugin-vggt/tests/golden``);
* core tests: ``tests/golden/<name>/`` (e.g. ``tests/golden/vggt``).

A test names its directory relative to its own file (``golden_dir("vggt", Path(__file__).parent /
"golden")``) or lets it default to ``<directory of the calling file>/golden/<name>``.
``$GEOVR_GOLDEN_DIR/<name>`` overrides that location when the variable is set (e.g. to check a
regenerated data set before committing it). Nothing outside the repository is searched, and missing
data fails the test: it never skips.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "GEOVR_GOLDEN_DIR"


def resolve_golden(name: str, where: str | Path | None = None, *, _depth: int = 1) -> Path:
    """The directory of golden data set ``name`` without checking that it exists.

    ``where``: the directory beside the tests (default ``<calling file's directory>/golden/<name>``);
    ``$GEOVR_GOLDEN_DIR/<name>`` wins when the variable is set and non-empty.
    """
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser() / name
    if where is not None:
        return Path(where)
    caller = sys._getframe(_depth).f_code.co_filename
    return Path(caller).resolve().parent / "golden" / name


def golden_dir(name: str, where: str | Path | None = None, *, files: tuple[str, ...] = ()) -> Path:
    """Inside a test: the directory of golden data set ``name`` (see :func:`resolve_golden`).

    Fails the test (never skips) when the directory, or one of ``files`` in it, is missing: the data
    is part of the repository, so its absence is a broken checkout.
    """
    import pytest

    path = resolve_golden(name, where, _depth=2)
    source = f"${ENV}={os.environ[ENV]!r}" if os.environ.get(ENV) else "the repository"
    if not path.is_dir():
        pytest.fail(
            f"golden data {name!r} missing: {str(path)!r} is not a directory (looked in {source}; "
            f"the data is committed beside the tests that read it)",
            pytrace=False,
        )
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        pytest.fail(f"golden data {name!r} in {str(path)!r} lacks {missing}", pytrace=False)
    return path
