"""Atomic, resumable training checkpoints.

Layout of ``RUN_DIR/checkpoints/step-00000010/``:

* ``model.safetensors``: the backbone's trainable parameters (LLM/merger/LoRA + geometry tokens), by name;
* ``objectives.safetensors``: every objective's ``state_dict`` (heads), keys ``<index>.<name>``;
* ``optimizer.pt`` / ``scheduler.pt``: their ``state_dict()``; ``rng.pt``: per-process RNG states;
* ``state.json`` (written last): step, data position, world size, a fingerprint of the frozen weights.

A checkpoint is written into a hidden temporary directory and renamed into place only when complete,
so an interrupted write never replaces (or masquerades as) the last good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from geovr.errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"


def checkpoint_root(run_dir: str | os.PathLike) -> Path:
    """``RUN_DIR/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run (those with ``state.json``), oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve ``path`` (a run directory or one checkpoint directory) to a complete checkpoint.

    Raises :class:`CheckpointError` naming the path when there is none.
    """
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    if not p.exists():
        raise CheckpointError(f"{p}: no such run or checkpoint directory")
    found = list_checkpoints(p)
    if not found:
        raise CheckpointError(
            f"{p}: no complete checkpoint found (expected {checkpoint_root(p)}/step-*/"
            f"{STATE_FILE}); the run saved none yet, or this is not a run directory"
        )
    return found[-1]


def frozen_fingerprint(module: torch.nn.Module) -> str:
    """Cheap digest of the frozen parameters (names, shapes and a strided sample of the values).

    Checkpoints store only trainable parameters; this detects a rebuilt model whose frozen weights
    differ from those it was trained with.
    """
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            continue
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu()
        h.update(f"{name}:{tuple(p.shape)}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:32]


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the parameters that require grad (CPU, contiguous, no shared storage)."""
    out, seen = {}, set()
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        t = p.detach().cpu().contiguous()
        if t.data_ptr() in seen:
            t = t.clone()
        seen.add(t.data_ptr())
        out[name] = t
    return out


def load_trainable(module: torch.nn.Module, tensors: dict[str, torch.Tensor], *, where: str) -> None:
    """Copy ``tensors`` into ``module``'s trainable parameters; names and shapes must match exactly."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: parameters do not match the model: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} (was it trained with another recipe?)"
        )
    with torch.no_grad():
        for n, p in params.items():
            t = tensors[n]
            if tuple(t.shape) != tuple(p.shape):
                raise CheckpointError(f"{where}: {n} has shape {tuple(t.shape)}, the model expects {tuple(p.shape)}")
            p.copy_(t.to(p.device, p.dtype))


def rng_state() -> dict:
    """RNG states of python, numpy, torch (and CUDA when present) as plain lists/ints/strs.

    Plain data pickles across processes (``gather_object``) and loads with ``torch.load(weights_only=True)``.
    """
    import numpy as np

    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # the legacy (MT19937) form: (name, keys, pos, has_gauss, cached)
    py = random.getstate()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    import numpy as np

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def nonfinite_tensor(tensors: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating-point tensor of ``tensors`` holding ``inf`` or ``nan`` (else ``None``)."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def _refuse_nonfinite(tensors: dict[str, torch.Tensor], where: str, action: str) -> None:
    name = nonfinite_tensor(tensors)
    if name is not None:
        raise CheckpointError(f"{where}: tensor {name!r} holds non-finite values (inf/nan); {action}")


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    objectives: dict[str, torch.Tensor],
    optimizer: dict,
    scheduler: dict,
    rng: list[dict],
    state: dict,
    keep_last: int = 0,
) -> Path:
    """Write checkpoint ``step`` atomically, then delete all but the newest ``keep_last`` (0 = keep all).

    Files go to ``checkpoints/.tmp-step-…`` first; ``state.json`` is written last and the directory is
    renamed to ``step-XXXXXXXX`` only when complete. On any error the temporary directory is removed and
    the previous checkpoints are untouched. Weights holding ``inf``/``nan`` are never written
    (:class:`CheckpointError` naming the tensor). Returns the checkpoint directory.
    """
    root = checkpoint_root(run_dir)
    for tensors, fname in ((model, "model.safetensors"), (objectives, "objectives.safetensors")):
        _refuse_nonfinite(
            tensors,
            f"{root}/step-{step:08d}/{fname}",
            "refusing to write a checkpoint with non-finite weights (the previous checkpoints are kept)",
        )
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(model, str(tmp / "model.safetensors"), metadata={"format": "pt", "geovr": "trainable"})
        save_file(objectives, str(tmp / "objectives.safetensors"), metadata={"format": "pt", "geovr": "heads"})
        torch.save(optimizer, tmp / "optimizer.pt")
        torch.save(scheduler, tmp / "scheduler.pt")
        torch.save(rng, tmp / "rng.pt")
        with open(tmp / STATE_FILE, "w", encoding="utf-8") as fh:
            json.dump({**state, "step": step}, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():  # re-saving the same step (e.g. after a resume): swap, then drop the old one
            old = root / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # leftovers of killed writes (never complete checkpoints)
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (a checkpoint directory, or a run directory → its newest checkpoint).

    Returns ``{"path", "state", "model", "objectives", "optimizer", "scheduler", "rng"}``; the optimizer,
    scheduler and RNG entries are loaded lazily by :func:`load_training_state`. A weight holding
    ``inf``/``nan`` is a :class:`CheckpointError` naming the file and the tensor.
    """
    ckpt = find_checkpoint(path)
    try:
        state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        model = load_file(str(ckpt / "model.safetensors"))
        objectives = load_file(str(ckpt / "objectives.safetensors"))
    except Exception as exc:  # OSError, JSON errors, SafetensorError (not an OSError subclass)
        raise CheckpointError(f"{ckpt}: unreadable checkpoint: {type(exc).__name__}: {exc}") from exc
    for tensors, fname in ((model, "model.safetensors"), (objectives, "objectives.safetensors")):
        _refuse_nonfinite(tensors, str(ckpt / fname), "this checkpoint cannot be resumed, exported or evaluated")
    return {"path": ckpt, "state": state, "model": model, "objectives": objectives}


def load_training_state(ckpt: Path) -> dict:
    """``{"optimizer", "scheduler", "rng"}`` of a checkpoint directory (``torch.load`` weights-only)."""
    out = {}
    for key in ("optimizer", "scheduler", "rng"):
        f = ckpt / f"{key}.pt"
        try:
            out[key] = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # OSError, pickle/unpickling errors of a truncated file
            raise CheckpointError(f"{f}: unreadable {key} state: {type(exc).__name__}: {exc}") from exc
    return out
