"""Build throw-away plugin distributions and run the CLI in a subprocess (for plugin tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def make_distribution(
    root: Path, dist: str, module: str, source: str, *, ep_name: str | None = None, version: str = "1.0"
) -> Path:
    """Write an installed-looking distribution (``module.py`` + ``.dist-info`` with a ``geovr`` entry
    point) under ``root`` and return ``root`` (put it on ``sys.path``/``PYTHONPATH`` to "install" it)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[geovr]\n{ep_name or module} = {module}\n")
    return root


def run_cli(*args: str, env: dict | None = None, paths=(), cwd=None, timeout: float = 300):
    """Run ``python -m geovr ARGS`` in a subprocess (``GEOVR_*`` variables cleared, ``paths`` prepended
    to ``PYTHONPATH``); returns the ``CompletedProcess`` with text stdout/stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GEOVR_")}
    full_env.update(env or {})
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "geovr", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout
    )
