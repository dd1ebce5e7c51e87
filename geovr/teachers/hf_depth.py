"""``hf_depth``: a frozen metric-depth teacher wrapping transformers' ``AutoModelForDepthEstimation``
(Depth Anything V2 metric, Depth Pro, DPT, ... any checkpoint with an image processor).

It provides only ``metric_depth`` ``[B,S,H,W]`` in metres at the frames' resolution; a recipe uses it
as ``[metric_teacher]`` next to the geometry teacher. Checkpoints are read from a local directory or
the local Hugging Face cache only (no download).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from geovr.errors import CheckpointError, GeovrError
from geovr.protocols import Batch, TeacherOutput
from geovr.teachers.configs import HFDepthTeacherConfig

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


def _resolve(name: str, cache_dir: str | None, what: str) -> str:
    """A local directory, or the cached snapshot of a hub id (no network access)."""
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith(".") or path.exists()
    if looks_local and not path.is_dir():
        raise CheckpointError(f"hf_depth: {what} directory {str(path)!r} does not exist")
    if looks_local:
        return str(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # resolve the cached snapshot first: loading by id may still probe the hub for optional files
        return snapshot_download(name, local_files_only=True, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise GeovrError(
            f"hf_depth: {what} {name!r} is not in the local Hugging Face cache and downloads are "
            f"disabled; fetch it beforehand (huggingface-cli download {name}) or set it to "
            f"a local directory ({type(exc).__name__}: {exc})"
        ) from exc


def load_depth_model(name: str, *, dtype: torch.dtype = torch.float32, cache_dir: str | None = None):
    """``(model, image_processor)`` from a local directory or a hub id present in the local HF cache
    (``cache_dir``, default the standard hub cache).

    Raises :class:`CheckpointError` when the directory lacks a loadable model/processor and
    :class:`GeovrError` when a hub id is not cached (no network access is attempted).
    """
    from transformers import AutoModelForDepthEstimation

    source = _resolve(name, cache_dir, "model")
    return _model_and_processor(
        AutoModelForDepthEstimation,
        source,
        dtype,
        "depth model",
        "(expected config.json, weights and preprocessor_config.json)",
    )


def _model_and_processor(auto_model, source: str, dtype: torch.dtype, what: str, detail: str):
    """``(model, image_processor)`` from the local ``source`` through the transformers auto class
    ``auto_model``; a :class:`CheckpointError` naming ``what`` and ``detail`` when either cannot be loaded."""
    from transformers import AutoImageProcessor

    try:
        model = auto_model.from_pretrained(source, local_files_only=True, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"hf_depth: cannot load a {what} and image processor from {source!r} {detail}: {exc}"
        ) from exc
    return model, processor


def load_sky_model(name: str, label: str = "sky", *, dtype: torch.dtype = torch.float32, cache_dir: str | None = None):
    """``(model, image_processor, sky_ids)``: a transformers semantic-segmentation model
    (``AutoModelForSemanticSegmentation``, e.g. SegFormer on ADE20K) and the ids of its classes whose name
    contains ``label``. Raises :class:`CheckpointError` when it cannot be loaded or has no such class."""
    from transformers import AutoModelForSemanticSegmentation

    source = _resolve(name, cache_dir, "sky_model")
    model, processor = _model_and_processor(
        AutoModelForSemanticSegmentation, source, dtype, "semantic-segmentation model", "(sky_model)"
    )
    labels = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    ids = sorted(k for k, v in labels.items() if label.lower() in v.lower())
    if not ids:
        raise CheckpointError(
            f"hf_depth: sky_model {name!r} has no class named like {label!r} "
            f"(classes: {sorted(labels.values())[:20]}...)"
        )
    return model, processor, ids


class HFDepthTeacher(nn.Module):
    """Frozen metric depth model. ``encode(frames [B,S,3,H,W] in [0,1])`` → ``metric_depth [B,S,H,W]``.

    The image processor resizes/normalises each frame (frames are passed unscaled: ``do_rescale=False``);
    the predicted depth is resized bilinearly back to ``(H, W)``. With ``reference_focal`` set, depth is
    multiplied by ``f_in / reference_focal`` where ``f_in`` is the frame focal length (``batch.intrinsics``
    ``[B,S,3,3]`` fx, else ``focal_px``) expressed in model-input pixels (× input width / W).
    With a ``sky`` segmentation model (``sky_model``), pixels whose summed probability of the sky classes
    is at least ``sky_threshold`` get ``NaN`` metric depth (no metric depth: left out of scale fitting).
    """

    provides = frozenset({"metric_depth"})
    num_layers = 0
    feature_dim = 0
    layers: tuple[int, ...] = ()

    def __init__(self, model, processor, config: HFDepthTeacherConfig, sky=None):
        super().__init__()
        self.model, self.processor, self.config = model, processor, config
        self.model.eval().requires_grad_(False)
        self.sky_model, self.sky_processor, self.sky_ids = sky if sky is not None else (None, None, [])
        if self.sky_model is not None:
            self.sky_model.eval().requires_grad_(False)
        self._key: str | None = None

    def sky(self, frames: torch.Tensor) -> torch.Tensor:
        """Sky mask ``[n,H,W]`` (bool) of frames ``[n,3,H,W]`` in [0,1]: the sky classes' summed softmax
        probability, resized bilinearly to ``(H, W)``, is ``>= sky_threshold``."""
        H, W = frames.shape[-2:]
        p = next(self.sky_model.parameters())
        inputs = self.sky_processor(images=list(frames.float().cpu()), return_tensors="pt", do_rescale=False)
        logits = self.sky_model(pixel_values=inputs["pixel_values"].to(device=p.device, dtype=p.dtype)).logits
        logits = F.interpolate(logits.float(), size=(H, W), mode="bilinear", align_corners=False)
        prob = logits.softmax(dim=1)[:, self.sky_ids].sum(1)
        return prob >= self.config.sky_threshold

    def _focal(self, batch: Batch | None, B: int, S: int, device) -> torch.Tensor:
        if batch is not None and batch.intrinsics is not None:
            return batch.intrinsics[..., 0, 0].to(device=device, dtype=torch.float32).reshape(B * S)
        if self.config.focal_px is not None:
            return torch.full((B * S,), float(self.config.focal_px), device=device)
        raise GeovrError(
            "hf_depth: reference_focal is set, so the frame focal length is needed: the batch has no "
            "intrinsics; set metric_teacher.focal_px (pixels at frame resolution)"
        )

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → ``TeacherOutput(metric_depth=[B,S,H,W])`` (metres)."""
        B, S, _, H, W = frames.shape
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        flat = frames.reshape(B * S, 3, H, W).float().cpu()
        focal = self._focal(batch, B, S, device) if self.config.reference_focal is not None else None
        outs = []
        for i in range(0, B * S, self.config.chunk):
            chunk = flat[i : i + self.config.chunk]
            inputs = self.processor(images=list(chunk), return_tensors="pt", do_rescale=False)
            pv = inputs["pixel_values"].to(device=device, dtype=dtype)
            pred = self.model(pixel_values=pv).predicted_depth.float()  # [n,h',w']
            if focal is not None:
                f_in = focal[i : i + len(chunk)] * (pv.shape[-1] / W)
                pred = pred * (f_in / self.config.reference_focal).view(-1, 1, 1)
            pred = F.interpolate(pred[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            if self.sky_model is not None:
                pred = pred.masked_fill(self.sky(chunk).to(pred.device), float("nan"))
            outs.append(pred)
        depth = torch.cat(outs).reshape(B, S, H, W).to(frames.device)
        return TeacherOutput(metric_depth=depth)

    def cache_key(self) -> str:
        """sha256 of the model config, processor config, options and a per-tensor weight fingerprint."""
        if self._key is None:
            h = hashlib.sha256()
            h.update(self.model.config.to_json_string().encode())
            h.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
            h.update(repr((self.config.reference_focal, self.config.focal_px)).encode())
            if self.sky_model is not None:
                h.update(repr((self.config.sky_model, self.config.sky_threshold, self.sky_ids)).encode())
                h.update(self.sky_model.config.to_json_string().encode())
            states = list(self.model.state_dict().items())
            if self.sky_model is not None:
                states += [(f"sky.{k}", v) for k, v in self.sky_model.state_dict().items()]
            for name, t in sorted(states):
                h.update(
                    f"{name}{tuple(t.shape)}{float(t.double().sum()):.10e}{float(t.double().abs().sum()):.10e}".encode()
                )
            self._key = h.hexdigest()
        return self._key


def build(config: HFDepthTeacherConfig, context: BuildContext) -> HFDepthTeacher:
    """Factory of the ``hf_depth`` teacher (on ``context.device``)."""
    dtype = getattr(torch, config.dtype)
    model, processor = load_depth_model(config.model, dtype=dtype, cache_dir=config.cache_dir)
    sky = None
    if config.sky_model:
        sky = load_sky_model(config.sky_model, config.sky_label, dtype=dtype, cache_dir=config.cache_dir)
    return HFDepthTeacher(model, processor, config, sky).to(getattr(context, "device", None) or "cpu")


# --- sizing (geovr.sizing interface; called through HFDepthTeacherConfig) -----------------------------------

#: model configs shipped with geovr: pretrained id (its last path part) → resource of geovr.teachers
MODEL_CONFIGS = {
    "Depth-Anything-V2-Metric-Indoor-Large-hf": "model_configs/Depth-Anything-V2-Metric-Indoor-Large-hf.json"
}


def model_config_dict(model: str) -> dict:
    """``config.json`` of ``model``: a local directory's own, else the shipped copy (:data:`MODEL_CONFIGS`)."""
    from geovr.sizing import model_config_json

    return model_config_json(
        model,
        package="geovr.teachers",
        shipped=MODEL_CONFIGS,
        missing=f"hf_depth: no shipped model config for model = {model!r} (shipped: {sorted(MODEL_CONFIGS)}); "
        f"point model at a local checkpoint directory with a config.json",
    )


def cache_layout(cfg, S: int, H: int, W: int, layers=()):
    """``metric_depth [S, H, W]`` (at the frames' resolution); FLOPs of the ViT backbone at its native
    ``image_size`` square (518 px, ViT-L for Depth Anything V2 Large; the DPT head is not counted)."""
    from geovr.sizing import CacheLayout, vit_flops

    bc = model_config_dict(cfg.model).get("backbone_config") or {}
    side, patch = int(bc.get("image_size", 518)), int(bc.get("patch_size", 14))
    dim, depth = int(bc.get("hidden_size", 1024)), int(bc.get("num_hidden_layers", 24))
    g = side // patch
    return CacheLayout(
        {"metric_depth": (S, H, W)},
        vit_flops(g * g, S, dim, depth, mlp_ratio=float(bc.get("mlp_ratio", 4))),
        f"{bc.get('model_type', 'ViT')} backbone {dim}-d x {depth} @ {side} px",
    )


def build_meta(cfg):
    """The depth model on the meta device (``AutoModelForDepthEstimation`` from its config)."""
    from transformers import AutoConfig, AutoModelForDepthEstimation

    from geovr.sizing import TeacherMeta

    hc = AutoConfig.for_model(**model_config_dict(cfg.model))
    with torch.device("meta"):
        m = AutoModelForDepthEstimation.from_config(hc)
    return TeacherMeta(module=m, weight_dtype=cfg.dtype)
