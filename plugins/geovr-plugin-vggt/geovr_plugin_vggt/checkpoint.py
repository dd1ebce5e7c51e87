"""Loading VGGT weights: the official ``model.pt``, a safetensors conversion, or a Hugging Face id.

Sources (:func:`resolve_checkpoint`):

* a local file: ``*.safetensors`` or a PyTorch pickle (``*.pt``/``*.pth``/``*.bin``, read with
  ``torch.load(weights_only=True)``);
* a local directory holding ``model.safetensors`` (or ``*.safetensors`` shards) or ``model.pt``;
* a Hugging Face model id such as ``facebook/VGGT-1B``, resolved **from the local HF cache only**
  (``huggingface_hub`` with ``local_files_only=True``); nothing is downloaded at train time.

Key matching is strict: a missing, unexpected or wrongly shaped tensor raises
:class:`geovr.errors.CheckpointError` listing them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from geovr.errors import CheckpointError
from geovr.weights import read_safetensors, require_exact_match, summarise_keys

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: files looked up, in order, in a local directory or an HF snapshot
CANDIDATE_FILES = ("model.safetensors", "model.pt")

_HEADS = ("camera_head", "depth_head", "point_head", "track_head")


def _download_hint(repo_id: str) -> str:
    return (
        f"download it once with `huggingface-cli download {repo_id} model.pt` (or "
        f"`huggingface_hub.snapshot_download({repo_id!r})`), or pass a local path; optionally convert it "
        f"with `geovr vggt convert model.pt model.safetensors`"
    )


def _pick_in_dir(directory: Path) -> Path | None:
    for name in CANDIDATE_FILES:
        if (directory / name).is_file():
            return directory / name
    shards = sorted(directory.glob("*.safetensors"))
    if shards:
        return directory
    pickles = sorted(p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    return pickles[0] if len(pickles) == 1 else None


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """Local file or directory for ``source`` (path or HF id) or raise :class:`CheckpointError`."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        return path
    if path.is_dir():
        found = _pick_in_dir(path)
        if found is None:
            raise CheckpointError(
                f"VGGT checkpoint directory {str(path)!r} holds none of {', '.join(CANDIDATE_FILES)} or *.safetensors"
            )
        return found
    text = str(source)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
            raise CheckpointError(
                f"resolving the HF id {text!r} needs huggingface_hub; pass a local path instead"
            ) from exc
        for name in CANDIDATE_FILES:
            try:
                return Path(hf_hub_download(text, name, local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache under this name
                continue
        raise CheckpointError(
            f"VGGT checkpoint {text!r} is not in the local Hugging Face cache "
            f"(looked for {', '.join(CANDIDATE_FILES)}; HF_HOME="
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}); {_download_hint(text)}"
        )
    raise CheckpointError(
        f"VGGT checkpoint {text!r} not found: not a file, a directory or an HF id "
        f"('owner/name'); {_download_hint('facebook/VGGT-1B')}"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """``{name: tensor}`` from a safetensors file/shard directory or a weights-only PyTorch pickle."""
    path = Path(path)
    try:
        state = read_safetensors(path)
        if state is not None:
            return state
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt file, refused pickle, ...
        raise CheckpointError(f"cannot read VGGT checkpoint {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and len(obj) <= 4:
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"VGGT checkpoint {str(path)!r} is not a state dict of tensors")
    return dict(obj)


def check_state_dict(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Strictly compare ``state`` with ``model.state_dict()`` (names and shapes).

    Tensors of heads the model was built without (``camera_head``… set to ``None``) are dropped first.
    Returns the filtered dict; raises :class:`CheckpointError` listing missing, unexpected and
    mis-shaped keys.
    """
    absent = tuple(f"{h}." for h in _HEADS if hasattr(model, h) and getattr(model, h) is None)
    state = {k: v for k, v in state.items() if not k.startswith(absent)} if absent else state
    require_exact_match(
        model,
        state,
        what=f"VGGT checkpoint {source!r}",
        hint="check model_config ('1b', 'tiny' or a JSON config) against the checkpoint",
    )
    return state


def load_weights(model: nn.Module, source: str | os.PathLike, *, assign: bool = False) -> Path:
    """Resolve ``source``, read it and load it strictly into ``model``; returns the file used.

    ``assign=True`` replaces the parameters by the checkpoint tensors instead of copying into them:
    use it with a model built on the meta device (no random initialisation, no second copy of the
    weights in memory). Constant buffers are then recreated with ``reset_constants()``.
    """
    path = resolve_checkpoint(source)
    state = check_state_dict(model, read_state_dict(path), str(source))
    model.load_state_dict(state, strict=True, assign=assign)
    if assign:
        for module in model.modules():
            if hasattr(module, "reset_constants"):
                module.reset_constants()
        still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if still_meta:
            raise CheckpointError(
                f"after loading {str(source)!r}, tensors are still on the meta device: {summarise_keys(still_meta)}"
            )
    return path


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file (or of a shard directory's files in name order).

    Files in the HF cache are stored under their sha256 (``blobs/<sha256>``); that name is reused
    instead of re-hashing gigabytes.
    """
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for shard in sorted(path.glob("*.safetensors")):
            h.update(shard.name.encode())
            h.update(file_digest(shard).encode())
        return h.hexdigest()
    real = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", real.name) and real.parent.name == "blobs":
        return real.name
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _writable_destination(dst: str | os.PathLike) -> Path:
    """``dst`` as a path once it is known to be writable (checked before the source is read)."""
    import tempfile

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"convert writes safetensors: {str(dst)!r} should end with .safetensors")
    if dst.is_dir():
        raise CheckpointError(f"cannot write {dst}: it is a directory (give a .safetensors file path)")
    blocker = next((a for a in dst.parents if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise CheckpointError(f"cannot write {dst}: {blocker} is a file, not a directory")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dst.parent, prefix=f".{dst.name}.probe-"):
            pass
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {dst}: {exc.strerror or type(exc).__name__} ({exc.filename or dst.parent})"
        ) from exc
    return dst


def convert_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, *, model_config="1b", verify: bool = True
) -> Path:
    """Write ``src`` (pickle, safetensors or HF id) as a safetensors file ``dst``.

    With ``verify`` the keys are checked against the given model configuration (built on the meta
    device, no memory used). The file is written to a temporary name next to ``dst`` and renamed, so a
    crash never leaves a half-written checkpoint.
    """
    from safetensors.torch import save_file

    dst = _writable_destination(dst)
    path = resolve_checkpoint(src)
    state = read_state_dict(path)
    if verify:
        from geovr_plugin_vggt.model import VGGT

        with torch.device("meta"):
            model = VGGT.from_config(model_config)
        check_state_dict(model, state, str(src))
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp),
            metadata={"format": "pt", "source": path.name, "model": "vggt"},
        )
        os.replace(tmp, dst)
    except Exception as exc:  # OSError, SafetensorError (disk full, permissions changed meanwhile)
        raise CheckpointError(f"cannot write {dst}: {type(exc).__name__}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
