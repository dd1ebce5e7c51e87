"""Heads of the GeoVR objectives: camera, metric scale and feature-distillation MLPs, and the two dense
depth heads (:class:`DenseHead`, the released method's, and the VGGT-style :class:`DPTHead`). Inputs are
student hidden states (any float dtype; cast to the head's dtype).

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
        self.trunk = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
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


def uv_embedding(h: int, w: int, channels: int, *, omega0: float = 100.0, device=None, dtype=torch.float32) -> Tensor:
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
            if self.rcu1 is None:
                raise ValueError("this fusion block was built without a skip input (has_skip=False)")
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

    def __init__(
        self,
        dim: int,
        channels: Sequence[int] = (256, 512, 1024, 1024),
        features: int = 256,
        out_channels: int = 1,
        pos_ratio: float = 0.1,
    ):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"DPTHead needs 4 level widths, got {list(channels)}")
        self.pos_ratio = pos_ratio
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in channels)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in channels)
        c0, c1, _, c3 = channels
        self.resize = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, 4, stride=4),
                nn.ConvTranspose2d(c1, c1, 2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, 3, stride=2, padding=1),
            ]
        )
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


# -- the released method's dense depth head ----------------------------------------------------------


def centred_uv(h: int, w: int, aspect: float, *, device=None, dtype=torch.float32) -> Tensor:
    """Cell-centre image coordinates ``[h,w,2]`` (u, v) of an ``h×w`` grid over an image of width/height
    ratio ``aspect``: ``u`` spans ``±a/√(a²+1)·(w−1)/w``, ``v`` spans ``±1/√(a²+1)·(h−1)/h``."""
    diag = math.sqrt(aspect * aspect + 1.0)
    su, sv = aspect / diag * (w - 1) / w, 1.0 / diag * (h - 1) / h
    u = torch.linspace(-su, su, w, device=device, dtype=dtype)
    v = torch.linspace(-sv, sv, h, device=device, dtype=dtype)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def sincos_uv_embedding(uv: Tensor, channels: int, *, omega0: float = 100.0) -> Tensor:
    """``[h,w,2]`` coordinates → ``[channels,h,w]`` float32: ``channels/2`` for u then ``channels/2`` for v,
    each ``[sin(p·ω_k), cos(p·ω_k)]`` with ``ω_k = omega0^(−k/K)``, ``K = channels/4`` (computed in float64)."""
    if channels % 4:
        raise ValueError(f"the UV embedding needs a channel count divisible by 4, got {channels}")
    k = channels // 4
    omega = omega0 ** (-torch.arange(k, device=uv.device, dtype=torch.float64) / k)
    parts = []
    for i in range(2):
        ang = uv[..., i].double()[..., None] * omega
        parts += [torch.sin(ang), torch.cos(ang)]
    return torch.cat(parts, dim=-1).float().permute(2, 0, 1)


class _RefineBlock(nn.Module):
    """DPT fusion ``out_conv(resize(unit2(x + unit1(skip))))`` (bilinear, ``align_corners=True``; no resize
    when the size already matches). Attribute names follow the released checkpoints."""

    def __init__(self, ch: int, has_skip: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(ch, ch, 1)
        self.has_skip = has_skip
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)

    def forward(self, x: Tensor, skip: Tensor | None, size) -> Tensor:
        if self.has_skip:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DenseHead(nn.Module):
    """The released method's dense depth head: selected student layers' visual tokens → metric-free depth.

    ``hidden``: list of 4 tensors ``[B,T,h·w,D]`` (row-major tokens, ``h = H/patch_size``,
    ``w = W/patch_size``), ``image_size = (H, W)`` the student's input pixels, ``target_size = (TH, TW)``
    the teacher depth size (multiples of ``target_patch_size``) → depth ``[B,T,TH,TW]`` (``exp``, > 0).

    Shared ``LayerNorm(D)`` → per level 1×1 conv to ``out_channels[i]`` + 0.1·sin-cos UV embedding →
    resize ×4 / ×2 (transposed convs), ×1, ×½ (strided 3×3 conv) → 3×3 conv to ``features`` → RefineNet
    fusion deep → shallow at the 4× student grid → (when the target grid differs) bilinear resize to 4× the
    target grid → UV embedding again → 1×1 conv to ``(target_patch_size/4)²`` → pixel shuffle → ``exp``.
    Parameter names and shapes are the released head's, so its trained weights load with ``load_state_dict``.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 32,
        target_patch_size: int = 28,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        pos_ratio: float = 0.1,
    ):
        super().__init__()
        out_channels = [int(c) for c in out_channels]
        if len(out_channels) != 4:
            raise ValueError(f"DenseHead needs 4 level widths, got {out_channels}")
        if patch_size % 4 or target_patch_size % 4:
            raise ValueError(
                f"patch_size ({patch_size}) and target_patch_size ({target_patch_size}) must be "
                f"multiples of 4: the fused map is decoded from a quarter of a patch"
            )
        self.patch_size, self.target_patch_size = int(patch_size), int(target_patch_size)
        self.shuffle = self.target_patch_size // 4
        self.pos_ratio = pos_ratio
        self.norm = nn.LayerNorm(dim_in, eps=1e-5)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, 4, stride=4),
                nn.ConvTranspose2d(c1, c1, 2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, 3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", _RefineBlock(features, has_skip=i < 4))
        self.proj = nn.Conv2d(features, self.shuffle**2, 1)

    def load_released(self, state_dict: dict[str, Tensor], prefix: str = "dpt_head.") -> None:
        """Load the head from a released checkpoint's state dict (keys ``<prefix><name>``; the released
        model stores it as ``dpt_head``). Raises ``ValueError`` naming missing / unexpected / mis-shaped keys."""
        own = self.state_dict()
        sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        missing, unexpected = sorted(set(own) - set(sub)), sorted(set(sub) - set(own))
        shapes = [
            f"{k}: {tuple(sub[k].shape)} vs {tuple(own[k].shape)}"
            for k in sorted(set(own) & set(sub))
            if tuple(sub[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or shapes:
            raise ValueError(
                f"released dense head under {prefix!r} does not match: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, shapes {shapes[:5]}"
            )
        self.load_state_dict(sub, strict=True)

    def _with_uv(self, x: Tensor, aspect: float) -> Tensor:
        uv = centred_uv(x.shape[-2], x.shape[-1], aspect, device=x.device, dtype=x.dtype)
        return x + self.pos_ratio * sincos_uv_embedding(uv, x.shape[1]).to(x.dtype)

    def forward(self, hidden: Sequence[Tensor], image_size: tuple[int, int], target_size: tuple[int, int]) -> Tensor:
        if len(hidden) != 4:
            raise ValueError(f"DenseHead reads 4 layers, got {len(hidden)}")
        H, W = (int(v) for v in image_size)
        TH, TW = (int(v) for v in target_size)
        h, w = H // self.patch_size, W // self.patch_size
        th, tw = TH // self.target_patch_size, TW // self.target_patch_size
        if th * self.target_patch_size != TH or tw * self.target_patch_size != TW or th < 1 or tw < 1:
            raise ValueError(
                f"target_size {(TH, TW)} must be positive multiples of target_patch_size {self.target_patch_size}"
            )
        B, T, n, _ = hidden[0].shape
        if n != h * w:
            raise ValueError(
                f"hidden states hold {n} tokens per frame but image_size {(H, W)} with patch_size "
                f"{self.patch_size} gives a {h}x{w} grid"
            )
        dtype = _dtype(self)
        levels = []
        for i, x in enumerate(hidden):
            if tuple(x.shape[:3]) != (B, T, n):
                raise ValueError(f"all layers must be [B,T,h*w,D] = {(B, T, n)}, got {tuple(x.shape)}")
            x = self.norm(x.to(dtype)).reshape(B * T, h, w, -1).permute(0, 3, 1, 2)
            x = self._with_uv(self.projects[i](x), W / H)
            levels.append(getattr(self.scratch, f"layer{i + 1}_rn")(self.resize_layers[i](x)))
        r4, r3, r2, r1 = (getattr(self.scratch, f"refinenet{i}") for i in (4, 3, 2, 1))
        out = r4(levels[3], None, levels[2].shape[-2:])
        out = r3(out, levels[2], levels[1].shape[-2:])
        out = r2(out, levels[1], levels[0].shape[-2:])
        out = r1(out, levels[0], levels[0].shape[-2:])
        if (th, tw) != (h, w):
            out = F.interpolate(out, size=(4 * th, 4 * tw), mode="bilinear", align_corners=True)
        out = F.pixel_shuffle(self.proj(self._with_uv(out, TW / TH)), self.shuffle)
        return torch.exp(out).reshape(B, T, TH, TW)
