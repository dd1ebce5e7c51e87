"""Loading official DA3 weights strictly by name.

Sources: a local ``*.safetensors`` file, a weights-only PyTorch pickle (``*.pt``/``*.pth``/``*.bin``), a
directory holding ``model.safetensors`` (or shards), or a Hugging Face id such as
``depth-anything/DA3-GIANT-1.1`` resolved **from the local cache only**. The Hub checkpoints wrap the
network in ``model.``; that prefix is removed. Tensors of the 3-D Gaussian head (``gs_head.``,
``gs_adapter.``), which geovr never runs, are left out and counted in one log line; every other tensor
must match the model's names and shapes exactly (:class:`geovr.errors.CheckpointError` otherwise).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from geovr.errors import CheckpointError
from geovr.weights import read_safetensors, require_exact_match

log = logging.getLogger(__name__)
UNUSED_PREFIXES = ("gs_head.", "gs_adapter.")
CANDIDATES = ("model.safetensors", "model.pt", "model.pth")


def resolve(source: str | os.PathLike) -> Path:
    """File or shard directory for ``source`` (path or cached HF id) or raise :class:`CheckpointError`."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        return path
    if path.is_dir():
        for name in CANDIDATES:
            if (path / name).is_file():
                return path / name
        if any(path.glob("*.safetensors")):
            return path
        raise CheckpointError(
            f"DA3 checkpoint directory {str(path)!r} holds none of {', '.join(CANDIDATES)} or *.safetensors shards"
        )
    text = str(source)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            snap = Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - not cached
            raise CheckpointError(
                f"DA3 checkpoint {text!r} is not in the local Hugging Face cache (downloads are "
                f"disabled at run time); fetch it once with `hf download {text}` or pass a "
                f"local path"
            ) from exc
        return resolve(snap)
    raise CheckpointError(f"DA3 checkpoint {text!r} not found: not a file, a directory or an HF id ('owner/name')")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """``{name: tensor}`` of a checkpoint, with the Hub's ``model.`` (or ``module.``) prefix removed."""
    path = Path(path)
    try:
        state = read_safetensors(path)
        if state is None:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
    except Exception as exc:  # noqa: BLE001 - corrupt file, refused pickle, ...
        raise CheckpointError(f"cannot read DA3 checkpoint {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"DA3 checkpoint {str(path)!r} is not a state dict of tensors")
    for prefix in ("model.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def check_state_dict(model: nn.Module, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Drop the unused Gaussian-head tensors, then compare names and shapes with ``model`` strictly."""
    unused = [k for k in state if k.startswith(UNUSED_PREFIXES)]
    if unused:
        log.info(
            "DA3 checkpoint %s: %d tensors of the 3-D Gaussian head are not used by geovr and were skipped",
            source,
            len(unused),
        )
        state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    require_exact_match(
        model,
        state,
        what=f"DA3 checkpoint {source!r}",
        hint="check model_config ('giant', 'large', 'metric_large', 'tiny', 'tiny_metric' or a JSON file)",
    )
    return state


def load_weights(model: nn.Module, source: str | os.PathLike, *, assign: bool = False) -> Path:
    """Resolve, read and strictly load ``source`` into ``model``; returns the file used.
    ``assign=True`` adopts the checkpoint tensors (use with a model built on the meta device)."""
    path = resolve(source)
    state = check_state_dict(model, read_state_dict(path), str(source))
    model.load_state_dict(state, strict=True, assign=assign)
    return path


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint (an HF cache blob's name is its sha256 and is reused)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for shard in sorted(path.glob("*.safetensors")):
            h.update(shard.name.encode() + file_digest(shard).encode())
        return h.hexdigest()
    real = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", real.name) and real.parent.name == "blobs":
        return real.name
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, model_config: str = "giant") -> Path:
    """Write ``src`` as a safetensors file holding exactly the tensors geovr's ``model_config`` network
    uses (names checked on the meta device); written to a temporary name, then renamed."""
    from safetensors.torch import save_file

    from geovr_plugin_da3.arch import load_arch
    from geovr_plugin_da3.model import DA3Net

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"convert writes safetensors: {str(dst)!r} should end with .safetensors")
    path = resolve(src)
    with torch.device("meta"):
        model = DA3Net(load_arch(model_config))
    state = check_state_dict(model, read_state_dict(path), str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp),
            metadata={"format": "pt", "source": path.name, "model": f"da3:{model_config}"},
        )
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
