"""Filesystem checks run by :func:`geovr.recipe.build` before any component is built.

Recipe validation is static (a shipped recipe validates on any machine); *preflight* looks at this
machine: data files, checkpoint paths, Hugging Face ids. A config class opts in with
``preflight(self) -> list[str]``; every problem of every component is reported at once, before a
multi-gigabyte model is loaded. The helpers below are torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in {"1", "true", "yes", "on"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(value: str) -> bool:
    """True for values that can only be a local path (``/x``, ``./x``, ``~/x``, ``a/b/c``, ``x.pt``)."""
    return (value.startswith(("/", ".", "~")) or value.count("/") > 1
            or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".json")))


def missing_path(value: str | None, what: str, *, kind: str = "any") -> list[str]:
    """``[problem]`` when ``value`` is set but does not exist (``kind``: ``"file"``, ``"dir"`` or ``"any"``)."""
    if not value:
        return []
    p = Path(value).expanduser()
    ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
    noun = {"file": "file", "dir": "directory"}.get(kind, "path")
    return [] if ok else [f"{what}: {noun} not found: {p} (expected {what.split('.')[-1]} to name an existing {noun})"]


def checkpoint_source(value: str | None, what: str, *, filename: str | None = "config.json") -> list[str]:
    """A checkpoint given as a local path or a Hugging Face id.

    A path must exist. An id must have ``filename`` in the local HF cache when the hub is configured
    offline (``HF_HUB_OFFLINE=1``); online (or with ``filename=None``) an uncached id is left to the
    loader, which downloads it or says why it cannot.
    """
    if not value:
        return []
    if Path(value).expanduser().exists():
        return []
    if looks_like_path(value):
        return [f"{what}: checkpoint path not found: {value}"]
    if filename is None or not _offline():
        return []
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return []
    if isinstance(try_to_load_from_cache(value, filename), str):
        return []
    return [f"{what}: {value!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE); download it first (`hf download {value}`) or name a local directory"]


def run_preflight(choices) -> list[str]:
    """Problems of every ``ComponentChoice`` whose config defines ``preflight()``, prefixed by its place."""
    problems: list[str] = []
    for c in choices:
        fn = getattr(c.config, "preflight", None)
        if callable(fn):
            problems += [p if p.startswith(c.where) else f"{c.where}.{p}" for p in fn()]
    return problems
