"""The ``oracle`` teacher: the Teacher protocol backed by the batch's exact ground truth.

It reads ``batch.depth [B,S,H,W]`` (metres), ``batch.intrinsics [B,S,3,3]`` and ``batch.extrinsics
[B,S,3,4]`` (world-to-camera, OpenCV) and returns them in VGGT's convention
(:func:`geovr.geometry.normalize_scene`: first camera = identity, scene divided by the mean distance
of valid points):

* ``depth``, ``points [B,S,H,W,3]`` (first-camera frame), ``extrinsics``, ``pose_enc [B,S,9]`` —
  normalised; ``intrinsics`` unchanged; ``depth_conf`` ones;
* ``metric_depth`` = the true depth and ``metric_scale [B]`` the exact factor with
  ``depth · metric_scale = metric_depth``;
* ``features {layer: [B,S,h,w,C]}`` — Fourier features ``[sin 2πBx, cos 2πBx]`` of the mean
  normalised 3-D point of each ``patch_size`` patch, with frequencies ``B`` growing with the layer
  index (a fixed Gaussian matrix scaled by ``feature_scale · 2^(4·layer/num_layers − 1)``).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from geovr.data.configs import TEACHER_OUTPUTS_ALL, OracleTeacherConfig
from geovr.errors import DataError
from geovr.geometry import extri_intri_to_pose_encoding, normalize_scene
from geovr.protocols import TeacherOutput

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


class OracleTeacher(nn.Module):
    """See the module docstring. ``provides`` = all teacher outputs; no parameters."""

    freqs: torch.Tensor  # [C/2, 3] Fourier frequencies (a buffer)

    def __init__(self, config: OracleTeacherConfig | None = None):
        super().__init__()
        self.config = config or OracleTeacherConfig()
        self.provides = TEACHER_OUTPUTS_ALL
        self.num_layers = self.config.num_layers
        self.feature_dim = self.config.feature_dim
        self.layers = tuple(self.config.layers)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(self.feature_dim // 2, 3, generator=gen), persistent=False)

    def cache_key(self) -> str:
        """Digest of the options (the oracle has no weights)."""
        c = self.config
        text = f"oracle-v1:C={c.feature_dim}:L={c.num_layers}:p={c.patch_size}"
        if c.feature_scale != 1.0:  # default spectrum keeps the keys of existing caches
            text += f":fs={float(c.feature_scale)!r}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def layer_features(self, points: torch.Tensor, layer: int) -> torch.Tensor:
        """Fourier features ``[B,S,h,w,C]`` of patch points ``[B,S,h,w,3]`` at ``layer``'s frequencies."""
        scale = float(self.config.feature_scale) * 2.0 ** (4.0 * layer / self.num_layers - 1.0)
        proj = 2 * math.pi * scale * (points @ self.freqs.to(points).T)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, layers=None, *, batch=None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` (only the shape is used) → :class:`TeacherOutput` from ``batch``'s
        ground truth. Raises :class:`DataError` when the batch carries no depth/intrinsics/extrinsics."""
        if batch is not None and batch.ragged:  # samples of different sizes: one at a time, per-sample lists
            return TeacherOutput.stack_samples(
                [self.encode(one.frames.to(frames.device), layers, batch=one) for one in batch.split()]
            )
        missing = [k for k in ("depth", "intrinsics", "extrinsics") if batch is None or getattr(batch, k, None) is None]
        if missing:
            raise DataError(
                f"the oracle teacher needs ground-truth {', '.join(missing)} in the batch; use a dataset that "
                "provides them (synthetic_rooms, or video_qa with geometry_root) or pass batch="
            )
        depth = batch.depth.to(frames.device).float()
        K = batch.intrinsics.to(frames.device).float()
        E = batch.extrinsics.to(frames.device).float()
        B, S, H, W = depth.shape
        if tuple(frames.shape[:2]) != (B, S) or tuple(frames.shape[-2:]) != (H, W):
            raise DataError(
                f"oracle: frames {tuple(frames.shape)} do not match ground-truth depth {tuple(depth.shape)}"
            )
        valid = torch.isfinite(depth) & (depth > 0)
        norm = normalize_scene(E, torch.where(valid, depth, 0.0), K, valid)
        pose_enc = extri_intri_to_pose_encoding(norm.extrinsics, K, (H, W))
        p = self.config.patch_size
        h, w = max(1, H // p), max(1, W // p)
        grid = norm.world_points.permute(0, 1, 4, 2, 3).reshape(B * S, 3, H, W)
        patch = F.adaptive_avg_pool2d(grid[..., : h * p if H >= p else H, : w * p if W >= p else W], (h, w))
        patch = patch.reshape(B, S, 3, h, w).permute(0, 1, 3, 4, 2)
        layers = tuple(self.layers if layers is None else layers)
        return TeacherOutput(
            features={int(layer): self.layer_features(patch, int(layer)) for layer in layers},
            depth=norm.depth,
            depth_conf=torch.ones_like(depth),
            pose_enc=pose_enc,
            intrinsics=K,
            extrinsics=norm.extrinsics,
            points=norm.world_points,
            metric_depth=depth,
            metric_scale=norm.scale,
        )

    def forward(self, frames, layers=None, *, batch=None) -> TeacherOutput:
        return self.encode(frames, layers, batch=batch)


def build(config: OracleTeacherConfig, context: BuildContext | None = None) -> OracleTeacher:
    """Factory of the ``oracle`` teacher component."""
    return OracleTeacher(config).eval()
