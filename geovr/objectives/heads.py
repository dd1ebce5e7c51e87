"""Heads of the GeoVR objectives: camera, metric scale and feature-distillation MLPs, and the DPT-style
dense depth head. Inputs are student hidden states (any float dtype; cast to the head's dtype).

Shapes: ``B`` batch, ``S`` frames, ``h, w`` the visual token grid, ``D`` student hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class CameraHead(nn.Module):
    """``LayerNorm(D) → Linear(D,H) → GELU → Linear(H,H) → GELU`` then translation (3), quaternion (4)
    and field-of-view (2, ReLU) branches: camera tokens ``[B,S,D]`` → pose encoding ``[B,S,9]``."""

    def __init__(self, dim: int, hidden: int = 1536):
        super().__init__()
        self.trunk = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                   nn.Linear(hidden, hidden), nn.GELU())
        self.fc_T = nn.Linear(hidden, 3)
        self.fc_R = nn.Linear(hidden, 4)
        self.fc_FL = nn.Linear(hidden, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x.to(_dtype(self)))
        return torch.cat([self.fc_T(h), self.fc_R(h), F.relu(self.fc_FL(h))], dim=-1)


class ScaleHead(nn.Module):
    """``LayerNorm(D) → Linear(D,H) → GELU → Linear(H,1)`` then ``exp``: scale token ``[B,D]`` → ``Ŝ [B]``."""

    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(self.mlp(x.to(_dtype(self))).squeeze(-1))


class DistillHead(nn.Module):
    """Student grid ``[B,S,h,w,D]`` → bilinear resize to the teacher grid ``(ht, wt)`` →
    ``LayerNorm(D) → Linear(D,H) → GELU → Linear(H,C)`` → ``[B,S,ht,wt,C]``."""

    def __init__(self, dim: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_dim
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, grid: Tensor, size: tuple[int, int]) -> Tensor:
        B, S, h, w, D = grid.shape
        x = grid.to(_dtype(self)).reshape(B * S, h, w, D).permute(0, 3, 1, 2)
        if (h, w) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        x = x.permute(0, 2, 3, 1).reshape(B, S, size[0], size[1], D)
        return self.mlp(x)


# -- DPT-style dense head ---------------------------------------------------------------------------


def uv_grid(h: int, w: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Normalised image coordinates ``[h,w,2]`` (u, v): centred, aspect-preserving, half-diagonal 1."""
    diag = math.hypot(w, h)
    span_u, span_v = w / diag, h / diag
    u = torch.linspace(-span_u, span_u, w, device=device, dtype=dtype)
    v = torch.linspace(-span_v, span_v, h, device=device, dtype=dtype)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def uv_embedding(h: int, w: int, channels: int, *, omega0: float = 100.0, device=None,
                 dtype=torch.float32) -> Tensor:
    """Sin-cos embedding of :func:`uv_grid` → ``[channels,h,w]``: first half encodes u, second half v, each
    as ``[sin(p·ω_k), cos(p·ω_k)]`` with ``ω_k = omega0^(−k/K)``; computed for a multiple of 4 and cropped."""
    c4 = -(-channels // 4) * 4
    k = c4 // 4
    omega = omega0 ** (-torch.arange(k, device=device, dtype=torch.float64) / k)
    uv = uv_grid(h, w, device=device, dtype=torch.float64)
    parts = []
    for i in range(2):
        ang = uv[..., i : i + 1] * omega
        parts += [torch.sin(ang), torch.cos(ang)]
    emb = torch.cat(parts, dim=-1)[..., :channels]
    return emb.permute(2, 0, 1).to(dtype)


class ResidualConvUnit(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3×3 convolutions."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet fusion: ``out = conv1x1(upsample(rcu2(x + rcu1(skip))))`` to the next level's size."""

    def __init__(self, ch: int, has_skip: bool = True):
        super().__init__()
        self.rcu1 = ResidualConvUnit(ch) if has_skip else None
        self.rcu2 = ResidualConvUnit(ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        if skip is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out(x)


class DPTHead(nn.Module):
    """Dense head over 4 visual grids ``[B,S,h,w,D]`` (shallow → deep) → ``[B,S,out,H,W]`` (raw, no activation).

    Per level: LayerNorm(D) → 1×1 conv to ``channels[i]`` → + ``pos_ratio`` · sin-cos UV embedding → resize
    ×4 (transposed conv), ×2 (transposed conv), ×1, ×0.5 (strided 3×3 conv) → 3×3 conv to ``features``.
    RefineNet fusion deep → shallow, then 3×3 conv to ``features/2``, bilinear resize to ``(H, W)``,
    3×3 conv to 32, ReLU, 1×1 conv to ``out_channels``.
    """

    def __init__(self, dim: int, channels: Sequence[int] = (256, 512, 1024, 1024), features: int = 256,
                 out_channels: int = 1, pos_ratio: float = 0.1):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"DPTHead needs 4 level widths, got {list(channels)}")
        self.pos_ratio = pos_ratio
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in channels)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in channels)
        c0, c1, _, c3 = channels
        self.resize = nn.ModuleList([nn.ConvTranspose2d(c0, c0, 4, stride=4), nn.ConvTranspose2d(c1, c1, 2, stride=2),
                                     nn.Identity(), nn.Conv2d(c3, c3, 3, stride=2, padding=1)])
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in channels)
        self.fusion = nn.ModuleList([FusionBlock(features) for _ in range(3)] + [FusionBlock(features, has_skip=False)])
        half = max(1, features // 2)
        self.out_conv1 = nn.Conv2d(features, half, 3, padding=1)
        self.out_conv2 = nn.Sequential(nn.Conv2d(half, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, out_channels, 1))

    def forward(self, grids: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        B, S, h, w, _ = grids[0].shape
        dtype = _dtype(self)
        levels = []
        for i, g in enumerate(grids):
            if tuple(g.shape[:4]) != (B, S, h, w):
                raise ValueError(f"all grids must share [B,S,h,w]; got {tuple(g.shape)} vs {(B, S, h, w)}")
            x = self.norms[i](g.to(dtype)).reshape(B * S, h, w, -1).permute(0, 3, 1, 2)
            x = self.projects[i](x)
            x = x + self.pos_ratio * uv_embedding(h, w, x.shape[1], device=x.device, dtype=x.dtype)
            levels.append(self.layer_rn[i](self.resize[i](x)))
        path = None
        for i in (3, 2, 1, 0):
            target = levels[i - 1].shape[-2:] if i > 0 else tuple(2 * s for s in levels[0].shape[-2:])
            path = self.fusion[i](levels[i] if path is None else path, None if path is None else levels[i], target)
        out = self.out_conv1(path)
        out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=True)
        out = self.out_conv2(out)
        return out.reshape(B, S, *out.shape[1:])
