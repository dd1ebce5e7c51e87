"""DPT dense prediction head (``depth_head.*``, ``point_head.*``, ``track_head.feature_extractor.*``).

Input: the aggregator output list (``[B,S,P,2C]`` entries) and the images ``[B,S,3,H,W]``. Four
selected layers are turned into feature maps at 1/14 resolution, projected, resized to ×4, ×2, ×1, ×½,
fused coarse-to-fine by RefineNet-style blocks and upsampled to ``(H, W) / down_ratio``.
Output: ``(values [B,S,H,W,output_dim−1], confidence [B,S,H,W])`` or, with ``feature_only``,
feature maps ``[B,S,features,H/down_ratio,W/down_ratio]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=True)


def uv_position_embedding(channels: int, hh: int, ww: int, aspect: float, *, dtype, device) -> Tensor:
    """Sin/cos embedding of a normalised UV grid → ``[channels, hh, ww]``.

    The grid spans ``±sx·(ww−1)/ww`` (columns) and ``±sy·(hh−1)/hh`` (rows) with
    ``sx = a/sqrt(a²+1)``, ``sy = 1/sqrt(a²+1)`` and ``a`` the image aspect ratio W/H. Channels are
    ``[sin(u·ω), cos(u·ω), sin(v·ω), cos(v·ω)]`` with ``ω_k = 100^(−k/(channels/4))``, computed in
    float64.
    """
    if channels % 4:
        raise ValueError(f"UV position embedding needs channels divisible by 4, got {channels}")
    diag = math.sqrt(aspect**2 + 1.0)
    sx, sy = aspect / diag, 1.0 / diag
    u = torch.linspace(-sx * (ww - 1) / ww, sx * (ww - 1) / ww, ww, dtype=dtype, device=device)
    v = torch.linspace(-sy * (hh - 1) / hh, sy * (hh - 1) / hh, hh, dtype=dtype, device=device)
    n = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(n, dtype=torch.float64, device=device) / n)

    def code(t: Tensor) -> Tensor:
        ang = t.double()[:, None] * omega  # [len, n]
        return torch.cat([ang.sin(), ang.cos()], dim=-1)

    cu = code(u)[None, :, :].expand(hh, ww, 2 * n)
    cv = code(v)[:, None, :].expand(hh, ww, 2 * n)
    return torch.cat([cu, cv], dim=-1).float().permute(2, 0, 1).to(dtype)


class ResidualConvUnit(nn.Module):
    """``RCU(x) = relu(x) + conv2(relu(conv1(relu(x))))`` (the skip carries the rectified input)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``[N,F,h,w]`` → ``[N,F,h,w]``."""
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FusionBlock(nn.Module):
    """``out_conv(resize(RCU2(x + RCU1(skip))))``; without ``has_residual`` there is no skip input."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size=None) -> Tensor:
        """x, skip ``[N,F,h,w]`` → ``[N,F,*size]`` (``size`` defaults to ×2)."""
        if self.has_residual:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size if size is not None else (2 * x.shape[-2], 2 * x.shape[-1])
        return self.out_conv(_resize(x, size))


class Scratch(nn.Module):
    """The fusion stage (``scratch.*``)."""

    def __init__(self, out_channels, features: int, *, feature_only: bool, output_dim: int, head_features_2: int):
        super().__init__()
        for i, c in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        self.refinenet1 = FusionBlock(features)
        self.refinenet2 = FusionBlock(features)
        self.refinenet3 = FusionBlock(features)
        self.refinenet4 = FusionBlock(features, has_residual=False)
        half = features if feature_only else features // 2
        self.output_conv1 = nn.Conv2d(features, half, 3, padding=1)
        if not feature_only:
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(half, head_features_2, 3, padding=1), nn.ReLU(), nn.Conv2d(head_features_2, output_dim, 1)
            )

    def fuse(self, maps: list[Tensor]) -> Tensor:
        """Four resized maps (×4, ×2, ×1, ×½ of the patch grid) → ``[N,F',2·4h,2·4w]`` after output_conv1."""
        l1, l2, l3, l4 = (getattr(self, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1))
        x = self.refinenet4(l4, size=l3.shape[-2:])
        x = self.refinenet3(x, l3, size=l2.shape[-2:])
        x = self.refinenet2(x, l2, size=l1.shape[-2:])
        x = self.refinenet1(x, l1)
        return self.output_conv1(x)


def activate_head(out: Tensor, activation: str, conf_activation: str) -> tuple[Tensor, Tensor]:
    """``[N,c,H,W]`` → (values ``[N,H,W,c−1]`` activated, confidence ``[N,H,W]``)."""
    fmap = out.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        values = values.exp()
    elif activation == "inv_log":
        values = values.sign() * values.abs().expm1()
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    if conf_activation == "expp1":
        conf = 1 + conf.exp()
    elif conf_activation != "linear":
        raise ValueError(f"unknown confidence activation {conf_activation!r}")
    return values, conf


class DPTHead(nn.Module):
    """DPT head; ``intermediate_layer_idx`` indexes the aggregator output list (0-based)."""

    def __init__(
        self,
        *,
        dim_in: int = 2048,
        patch_size: int = 14,
        output_dim: int = 2,
        activation: str = "exp",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels=(256, 512, 1024, 1024),
        intermediate_layer_idx=(4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
        head_features_2: int = 32,
        frames_chunk_size: int = 8,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.activation, self.conf_activation = activation, conf_activation
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.frames_chunk_size = frames_chunk_size
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(
            out_channels, features, feature_only=feature_only, output_dim=output_dim, head_features_2=head_features_2
        )

    def _add_pos(self, x: Tensor, H: int, W: int) -> Tensor:
        pe = uv_position_embedding(x.shape[1], x.shape[-2], x.shape[-1], W / H, dtype=x.dtype, device=x.device)
        return x + 0.1 * pe[None]

    def _run(self, tokens_list: list[Tensor], H: int, W: int, patch_start_idx: int) -> Tensor:
        ph, pw = H // self.patch_size, W // self.patch_size
        maps = []
        for i, layer in enumerate(self.intermediate_layer_idx):
            x = tokens_list[layer][:, :, patch_start_idx:]
            x = self.norm(x.reshape(-1, x.shape[-2], x.shape[-1]))
            x = x.transpose(1, 2).reshape(x.shape[0], x.shape[-1], ph, pw)
            x = self.projects[i](x)
            if self.pos_embed:
                x = self._add_pos(x, H, W)
            maps.append(self.resize_layers[i](x))
        out = self.scratch.fuse(maps)
        out = _resize(out, (ph * self.patch_size // self.down_ratio, pw * self.patch_size // self.down_ratio))
        if self.pos_embed:
            out = self._add_pos(out, H, W)
        return out

    def forward(self, tokens_list: list[Tensor], images: Tensor, patch_start_idx: int):
        """tokens_list entries ``[B,S,P,2C]``, images ``[B,S,3,H,W]`` → see the module docstring."""
        B, S, _, H, W = images.shape
        chunk = self.frames_chunk_size or S
        values, confs = [], []
        for start in range(0, S, chunk):
            part = [t[:, start : start + chunk] if t is not None else None for t in tokens_list]
            s = min(chunk, S - start)
            out = self._run(part, H, W, patch_start_idx)
            if self.feature_only:
                values.append(out.reshape(B, s, *out.shape[1:]))
                continue
            v, c = activate_head(self.scratch.output_conv2(out), self.activation, self.conf_activation)
            values.append(v.reshape(B, s, *v.shape[1:]))
            confs.append(c.reshape(B, s, *c.shape[1:]))
        if self.feature_only:
            return torch.cat(values, dim=1)
        return torch.cat(values, dim=1), torch.cat(confs, dim=1)
