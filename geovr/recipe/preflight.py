"""Machine checks run by :func:`geovr.recipe.build` (so by ``geovr run``, ``eval``, ``cache``) and by
``geovr validate`` before any component is built.

Recipe validation is static (a shipped recipe validates on any machine); *preflight* looks at this
machine: data files, checkpoint paths, Hugging Face ids. A config class opts in with
``preflight(self) -> list[str]``; every problem of every component is reported at once, before a
multi-gigabyte model is loaded. The helpers below are torch-free and never touch the network: a
Hugging Face id is looked up in the local cache only (``huggingface_hub.try_to_load_from_cache``, or
``snapshot_download(local_files_only=True)`` when no file name is known), so an offline machine gets
the full list of missing checkpoints at once instead of a hub client's retries for the first one.
geovr does not download checkpoints while building a run: ``hf download ID`` fetches one beforehand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def looks_like_path(value: str) -> bool:
    """True for values that can only be a local path (``/x``, ``./x``, ``~/x``, ``a/b/c``, ``x.pt``)."""
    return (
        value.startswith(("/", ".", "~"))
        or value.count("/") > 1
        or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".json"))
    )


def missing_path(value: str | None, what: str, *, kind: str = "any") -> list[str]:
    """``[problem]`` when ``value`` is set but does not exist (``kind``: ``"file"``, ``"dir"`` or ``"any"``)."""
    if not value:
        return []
    p = Path(value).expanduser()
    ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
    noun = {"file": "file", "dir": "directory"}.get(kind, "path")
    return [] if ok else [f"{what}: {noun} not found: {p} (expected {what.split('.')[-1]} to name an existing {noun})"]


def hf_cached(
    repo_id: str,
    filename: str | Sequence[str] | None = "config.json",
    *,
    cache_dir: str | None = None,
    revision: str | None = None,
) -> bool:
    """True when the local Hugging Face cache holds ``repo_id`` (one of ``filename``, or any snapshot
    when ``filename`` is ``None``). Local look-up only: no network call, no retries.

    Raises ``ValueError`` when ``repo_id`` is not a valid hub id."""
    from huggingface_hub.errors import HFValidationError

    try:
        if filename is None:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError

            try:
                snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
            except (LocalEntryNotFoundError, FileNotFoundError):
                return False
            return True
        from huggingface_hub import try_to_load_from_cache

        names = [filename] if isinstance(filename, str) else list(filename)
        return any(
            isinstance(try_to_load_from_cache(repo_id, n, cache_dir=cache_dir, revision=revision), str) for n in names
        )
    except HFValidationError as exc:
        raise ValueError(str(exc)) from exc


def checkpoint_source(
    value: str | None,
    what: str,
    *,
    filename: str | Sequence[str] | None = "config.json",
    cache_dir: str | None = None,
    revision: str | None = None,
) -> list[str]:
    """A checkpoint given as a local path or a Hugging Face id (``owner/name``).

    A path must exist. An id must be in the local Hugging Face cache (one of ``filename``; any
    snapshot when ``filename`` is ``None``), checked without touching the network (see the module
    docstring): otherwise the problem says how to download it.
    """
    if not value:
        return []
    if Path(value).expanduser().exists():
        return []
    if looks_like_path(value):
        return [f"{what}: checkpoint path not found: {value}"]
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return []
    try:
        if hf_cached(value, filename, cache_dir=cache_dir, revision=revision):
            return []
    except ValueError:
        return [f"{what}: {value!r} is neither an existing local path nor a Hugging Face id (owner/name)"]
    cache = cache_dir or constants.HF_HUB_CACHE
    return [
        f"{what}: {value!r} is not a local path and the Hugging Face model {value!r} is not in the local "
        f"cache ({cache}); download it first (`hf download {value}`{' --cache-dir ' + cache_dir if cache_dir else ''}) "
        f"or name a local directory"
    ]


def run_preflight(choices) -> list[str]:
    """Problems of every ``ComponentChoice`` whose config defines ``preflight()``, prefixed by its place."""
    problems: list[str] = []
    for c in choices:
        fn = getattr(c.config, "preflight", None)
        if not callable(fn):
            continue
        try:
            found = list(fn())
        except Exception as exc:  # noqa: BLE001 - a plugin's check must not hide the other problems
            found = [f"{c.where}: preflight of {c.kind} {c.component!r} failed: {type(exc).__name__}: {exc}"]
        problems += [p if p.startswith(c.where) else f"{c.where}.{p}" for p in found]
    return problems
