"""Strict state-dict matching shared by every component that loads official weights by name (torch-free
at import: it only calls ``model.state_dict()`` and reads tensor shapes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from geovr.errors import CheckpointError


def summarise_keys(keys: Iterable[str], limit: int = 12) -> str:
    """``"a, b, c … (+N more)"``: the first ``limit`` keys in sorted order."""
    keys = sorted(keys)
    more = f" … (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def require_exact_match(model, state: Mapping, *, what: str, hint: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the names and shapes of
    ``model.state_dict()``: one message listing missing keys, unexpected keys and shape mismatches,
    headed by ``what`` (``"VGGT checkpoint 'x.safetensors'"``) and ending with ``hint`` (the fix)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{what} does not match the model configuration"]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {summarise_keys(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {summarise_keys(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes[:8]))
    parts.append(hint)
    raise CheckpointError("\n  ".join(parts))


def read_safetensors(path) -> dict | None:
    """``{name: tensor}`` of a ``.safetensors`` file or of every ``*.safetensors`` shard of a directory
    (in name order); ``None`` when ``path`` is neither (the caller reads its own other formats).
    Errors of the safetensors reader propagate to the caller, which names the checkpoint."""
    from pathlib import Path

    path = Path(path)
    if not (path.is_dir() or path.suffix == ".safetensors"):
        return None
    from safetensors.torch import load_file

    if path.suffix == ".safetensors" and not path.is_dir():
        return load_file(str(path))
    state: dict = {}
    for shard in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    return state
