"""What a run leaves in its directory besides checkpoints.

* ``metrics.jsonl``: one JSON object per logged step (``step``, ``loss``, ``lm_loss``, every objective's
  ``<name>/loss`` and ``<name>/<metric>``, learning rates, grad norm, throughput, and the running data
  counts of :class:`geovr.data.counts.DataCounter`: ``data/<source>/samples``,
  ``data/skipped/<source>/<reason>``);
* ``recipe.toml``: the merged raw recipe (after ``extends`` and overrides) — :func:`geovr.recipe.dump.to_toml`;
* ``environment.json``: python/platform, package versions, loaded plugins, process count;
* ``tensorboard/`` (with ``trainer.log_with = ["tensorboard"]``): the same scalars, written by accelerate's
  tracker like any other ``log_with`` tracker (wandb, mlflow, ...).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "geovr",
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "timm",
    "safetensors",
    "numpy",
    "av",
    "pluggy",
    "attrs",
    "tqdm",
)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


def environment(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Python, platform, package versions and the plugin list (``load_plugins().plugin_infos(True)``)."""
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        from geovr.plugins import load_plugins

        plugins = load_plugins().plugin_infos(True)
    except Exception as exc:  # noqa: BLE001 (environment.json must never stop a run)
        plugins = [{"error": f"{type(exc).__name__}: {exc}"}]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": versions,
        "plugins": plugins,
        **(extra or {}),
    }


class MetricsLog:
    """Appends one JSON line per logged step to ``RUN_DIR/metrics.jsonl`` (flushed every line).

    ``resume_step``: keep only lines with ``step <= resume_step`` of an existing file (steps logged by
    an interrupted run after its last checkpoint are dropped); ``None`` starts a new file.
    """

    def __init__(self, run_dir: str | os.PathLike, *, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except ValueError:
                    continue
        atomic_write(self.path, "".join(f"{line}\n" for line in kept))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``step``)."""
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl`` in order."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
