"""Load DUSt3R weights (e.g. ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``) into
:class:`~geovr_plugin_dust3r.model.AsymmetricCroCo3DStereo`.

Accepted sources:

* a local file: ``.safetensors``, or a torch pickle (``.pth``/``.pt``/``.bin``) holding either a state
  dict or a dict with a ``"model"`` state dict (the official release format);
* a local directory holding one of ``model.safetensors``, ``pytorch_model.bin`` or a single
  ``*.safetensors`` / ``*.pth`` file;
* a Hugging Face id (``"org/name"``), resolved from the local Hugging Face cache only (no network).

Key normalisation before the strict load (SPEC §3): a ``module.`` prefix is removed; each DPT projection
may be stored under either alias (``…scratch.layer{1..4}_rn.weight`` / ``…scratch.layer_rn.{0..3}.weight``)
and the missing one is filled; when the file has no ``dec_blocks2.*`` entries (CroCo pre-training
weights) they are copied from ``dec_blocks.*``; the unused ``mask_token`` may be absent. Anything else
that does not match (missing, unexpected, wrong shape) raises :class:`geovr.errors.CheckpointError`
listing the keys.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from geovr.errors import CheckpointError
from geovr.unpickling import HOW_TO_OPT_IN

_DIR_CANDIDATES = ("model.safetensors", "pytorch_model.bin")
_MAX_LISTED = 12


def _looks_like_hf_id(source: str) -> bool:
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.startswith((".", "~"))
        and Path(source).suffix not in {".pth", ".pt", ".bin", ".safetensors"}
    )


def resolve_checkpoint(source: str | os.PathLike, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Turn a path or a Hugging Face id into the path of one weights file (see module docstring).

    Hugging Face ids are looked up with ``local_files_only=True``; a missing entry raises
    :class:`CheckpointError` naming the id and how to fetch it.
    """
    path = Path(os.path.expanduser(str(source)))
    if not path.exists() and _looks_like_hf_id(str(source)):
        try:
            from huggingface_hub import snapshot_download
        except ImportError as exc:  # pragma: no cover - huggingface_hub ships with transformers
            raise CheckpointError(
                f"{source!r} looks like a Hugging Face id but huggingface_hub is not "
                "installed (pip install huggingface_hub)"
            ) from exc
        try:
            path = Path(snapshot_download(str(source), revision=revision, cache_dir=cache_dir, local_files_only=True))
        except Exception as exc:
            raise CheckpointError(
                f"DUSt3R checkpoint {source!r} is not in the local Hugging Face cache "
                f"({type(exc).__name__}); download it first, e.g. `huggingface-cli download {source}`, "
                "or pass a local file path"
            ) from exc
    if not path.exists():
        raise CheckpointError(
            f"DUSt3R checkpoint path {str(source)!r} does not exist (expected a .pth/"
            ".safetensors file, a directory holding one, or a Hugging Face id 'org/name')"
        )
    if path.is_dir():
        for name in _DIR_CANDIDATES:
            if (path / name).is_file():
                return path / name
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.pth"))
        if len(files) == 1:
            return files[0]
        raise CheckpointError(
            f"cannot choose a DUSt3R weights file in directory {str(path)!r}: expected "
            f"one of {list(_DIR_CANDIDATES)} or exactly one *.safetensors/*.pth, found "
            f"{[f.name for f in files] or 'none'}"
        )
    return path


def read_state_dict(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, Tensor]:
    """Read the raw state dict of a weights file (``"model"`` sub-dict of a training checkpoint).

    Torch pickles are read with ``weights_only=True`` (``argparse.Namespace`` allowed for the
    ``"args"`` entry of the official file); ``allow_pickle=True`` falls back to a full unpickling,
    which runs code from the file: use it only for files you trust.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        mmap = zipfile.is_zipfile(path)  # memory-map the 2.3 GB official file instead of copying it
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:
            if not allow_pickle or isinstance(exc, (FileNotFoundError, IsADirectoryError)):
                raise CheckpointError(
                    f"cannot read DUSt3R checkpoint {str(path)!r} with weights_only=True ({exc}); convert it to "
                    f"safetensors or, {HOW_TO_OPT_IN}"
                ) from exc
            obj = torch.load(str(path), map_location="cpu", weights_only=False, mmap=mmap)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read DUSt3R checkpoint {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"DUSt3R checkpoint {str(path)!r} holds no state dict (expected a dict of tensors "
            "or a dict with a 'model' state dict)"
        )
    return dict(obj)


def normalize_state_dict(state: dict[str, Tensor], expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Apply the key normalisation of the module docstring, aiming at the key set of ``expected``
    (the model's own ``state_dict()``). Returns a new dict; raises :class:`CheckpointError` when
    the two names of an aliased DPT projection hold different values."""
    out = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    for head in ("downstream_head1", "downstream_head2"):
        for i in range(4):
            a = f"{head}.dpt.scratch.layer_rn.{i}.weight"
            b = f"{head}.dpt.scratch.layer{i + 1}_rn.weight"
            if a not in expected or b not in expected:
                continue
            if a in out and b in out:
                if out[a].shape != out[b].shape or not torch.equal(out[a], out[b]):
                    raise CheckpointError(f"aliased DPT weights {a!r} and {b!r} differ in the checkpoint")
            elif a in out:
                out[b] = out[a]
            elif b in out:
                out[a] = out[b]
    if not any(k.startswith("dec_blocks2.") for k in out):
        for k in list(out):
            if k.startswith("dec_blocks."):
                out["dec_blocks2." + k[len("dec_blocks.") :]] = out[k]
    if "mask_token" not in out and "mask_token" in expected:
        out["mask_token"] = torch.zeros(expected["mask_token"].shape, dtype=expected["mask_token"].dtype)  # unused
    return out


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f" … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | dict,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    allow_pickle: bool = False,
    assign: bool = False,
) -> str:
    """Load ``source`` (path, Hugging Face id, or an in-memory state dict) into ``model`` strictly
    after :func:`normalize_state_dict`. Returns a description of the source (the resolved path).

    Raises :class:`CheckpointError` naming the source and listing missing, unexpected and
    wrongly-shaped keys. ``assign=True`` adopts the checkpoint tensors instead of copying into the
    existing parameters (use it for a model built on the ``meta`` device).
    """
    if isinstance(source, dict):
        where, state = "<state dict>", source
    else:
        path = resolve_checkpoint(source, revision=revision, cache_dir=cache_dir)
        where, state = str(path), read_state_dict(path, allow_pickle=allow_pickle)
    expected = model.state_dict()
    state = normalize_state_dict(state, expected)
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = {k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)}
    if missing or unexpected or wrong:
        lines = [
            f"DUSt3R checkpoint {where!r} does not match the model "
            f"(enc {model.arch.enc_embed_dim}x{model.arch.enc_depth}, dec {model.arch.dec_embed_dim}x"
            f"{model.arch.dec_depth}):"
        ]
        if missing:
            lines.append(f"  missing {len(missing)}: {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)}: {_listing(unexpected)}")
        if wrong:
            lines.append(
                "  wrong shape: "
                + _listing(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong)
            )
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True, assign=assign)
    return where
