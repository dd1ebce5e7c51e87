"""The ``vggt`` teacher: a frozen VGGT producing multi-layer features and geometry.

``encode(frames [B,S,3,H,W] in [0,1], layers=None)`` pre-processes the frames to the working resolution
``H'×W'`` (see :mod:`geovr_plugin_vggt.preprocess`) and returns a :class:`geovr.protocols.TeacherOutput`:

* ``features {layer: [B,S,h,w,C]}``: aggregator tokens at depth index ``layer`` without the camera and
  register tokens, the configured half of the 2C channels, optionally 2×2 average-pooled
  (``h = floor(H'/28)`` with pooling, as the released code's ``avg_pool2d``; ``H'/14`` without);
* ``depth [B,S,H',W']``, ``depth_conf [B,S,H',W']``;
* ``pose_enc [B,S,9]`` (first camera = identity by construction of the model), ``extrinsics [B,S,3,4]``
  (camera-from-world, OpenCV), ``intrinsics [B,S,3,3]`` (pixels of the working resolution);
* ``points [B,S,H',W',3]`` in the first camera's frame.
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geovr import geometry
from geovr.errors import RecipeError
from geovr.protocols import Batch, BuildContext, TeacherOutput
from geovr_plugin_vggt.checkpoint import file_digest, load_weights
from geovr_plugin_vggt.config import VGGTTeacherConfig
from geovr_plugin_vggt.model import VGGT, load_config
from geovr_plugin_vggt.preprocess import preprocess_frames

#: bump when the pre-processing or the output definitions change (part of cache_key)
TEACHER_VERSION = 3  # 2: 2x2 feature pooling floors odd grids; 3: resize mode (whole frame, x28)


class VGGTTeacher(nn.Module):
    """Frozen VGGT teacher; always in eval mode, parameters never require grad."""

    def __init__(self, config: VGGTTeacherConfig, *, device: str = "cpu"):
        super().__init__()
        problems = config.check()
        if problems:
            raise RecipeError([f"teacher: {p}" for p in problems])
        if config.attention == "xformers":
            try:
                import xformers.ops  # noqa: F401
            except ImportError as exc:
                raise RecipeError(
                    [
                        "teacher.attention: 'xformers' needs the xformers package "
                        "(pip install 'geovr-plugin-vggt[xformers]'); use 'sdpa' otherwise"
                    ]
                ) from exc
        self.config = config
        self.model_config = load_config(config.model_config)
        heads = {"enable_track": False, "enable_point": config.points == "head"}
        if config.pretrained == "":  # random weights from the seed (tests / tiny recipes)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = VGGT.from_config(self.model_config, **heads)
            self.checkpoint_path = None
            self.weights_digest = f"random-seed-{config.seed}"
        else:
            with torch.device("meta"):  # no random init; the checkpoint tensors are assigned
                model = VGGT.from_config(self.model_config, **heads)
            self.checkpoint_path = load_weights(model, config.pretrained, assign=True)
            self.weights_digest = file_digest(self.checkpoint_path)
        model.set_attention(config.attention)
        self.model = model.to(device)
        self.model.eval()
        self.requires_grad_(False)
        self.provides = config.provides()
        self.num_layers = model.depth
        embed = int(self.model_config["embed_dim"])
        self.feature_dim = 2 * embed if config.feature_half == "both" else embed
        self.layers = tuple(config.layers)
        self._cache_key: str | None = None

    def train(self, mode: bool = True) -> VGGTTeacher:
        """The teacher stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    def _features(self, tokens: Tensor, psi: int, h: int, w: int) -> Tensor:
        """``[B,S,P,2C]`` → ``[B,S,h',w',C']`` (special tokens dropped, half selected, pooled)."""
        B, S, _, C2 = tokens.shape
        x = tokens[:, :, psi:]
        half = self.config.feature_half
        if half == "frame":
            x = x[..., : C2 // 2]
        elif half == "global":
            x = x[..., C2 // 2 :]
        x = x.reshape(B, S, h, w, x.shape[-1]).float()
        if self.config.pool == 2:
            x = F.avg_pool2d(x.reshape(B * S, h, w, -1).permute(0, 3, 1, 2), 2, 2)  # floor: an odd last row drops
            x = x.permute(0, 2, 3, 1).reshape(B, S, x.shape[-2], x.shape[-1], -1)
        return x.contiguous()

    @torch.no_grad()
    def encode(self, frames: Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → :class:`TeacherOutput` (see the module docstring)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B,S,3,H,W], got {tuple(frames.shape)}")
        layers = tuple(self.layers if layers is None else layers)
        bad = [layer for layer in layers if not 0 <= layer < self.num_layers]
        if bad:
            raise ValueError(f"layers {bad} outside 0..{self.num_layers - 1}")
        self.model.eval()
        if batch is not None and batch.ragged:  # samples of different sizes: one at a time, per-sample lists
            return TeacherOutput.stack_samples(
                [self.encode(one.frames.to(frames.device), layers, batch=one) for one in batch.split()]
            )
        images = preprocess_frames(
            frames.to(self.device), self.config.image_size, self.config.resize_mode, self.config.size_multiple
        )
        B, S, _, H, W = images.shape
        m = self.model
        heads_need = m._needed_layers(tracking=False)
        use_bf16 = self.config.dtype == "bfloat16"
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            tokens, psi = m.aggregator(images, keep_layers=heads_need | set(layers))
        p = m.aggregator.patch_size
        features = {layer: self._features(tokens[layer], psi, H // p, W // p) for layer in layers}
        f32 = [t.float() if t is not None else None for t in tokens]
        pose_enc = m.camera_head(f32)[-1]
        depth, depth_conf = m.depth_head(f32, images, psi)
        extrinsics, intrinsics = geometry.pose_encoding_to_extri_intri(pose_enc, (H, W))
        if m.point_head is not None:
            points = m.point_head(f32, images, psi)[0]
        else:
            points = geometry.unproject_depth(depth[..., 0], extrinsics, intrinsics)
        return TeacherOutput(
            features=features,
            depth=depth[..., 0],
            depth_conf=depth_conf,
            pose_enc=pose_enc,
            intrinsics=intrinsics,
            extrinsics=extrinsics,
            points=points,
        )

    def cache_key(self) -> str:
        """sha256 over the weights digest, model config, pre-processing and output options."""
        if self._cache_key is None:
            c = self.config
            payload = {
                "teacher": "vggt",
                "version": TEACHER_VERSION,
                "weights": self.weights_digest,
                "model_config": self.model_config,
                "image_size": c.image_size,
                "resize_mode": c.resize_mode,
                "size_multiple": c.size_multiple,
                "dtype": c.dtype,
                "feature_half": c.feature_half,
                "pool": c.pool,
                "attention": c.attention,
                "points": c.points,
                "layers": list(c.layers),
            }
            blob = json.dumps(payload, sort_keys=True, default=str).encode()
            self._cache_key = hashlib.sha256(blob).hexdigest()
        return self._cache_key


def build(config: VGGTTeacherConfig, context: BuildContext) -> VGGTTeacher:
    """Factory of teacher ``vggt``: ``build(config, context)`` on ``context.device``."""
    return VGGTTeacher(config, device=getattr(context, "device", "cpu") or "cpu")
