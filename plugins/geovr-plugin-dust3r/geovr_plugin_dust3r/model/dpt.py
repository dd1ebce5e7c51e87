"""DPT head turning a decoder token list into a dense ``[B,H,W,4]`` map (xyz + confidence logit).

Parameter names follow the reference (``dpt.act_postprocess``, ``dpt.scratch.layer{1..4}_rn`` with the
aliases ``dpt.scratch.layer_rn.{0..3}``, ``dpt.scratch.refinenet{1..4}``, ``dpt.head``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geovr_plugin_dust3r.arch import DPTArch


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Upsample2x(nn.Module):
    """Bilinear ×2 upsampling with ``align_corners=True`` (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        """``[B,C,h,w]`` → ``[B,C,2h,2w]``."""
        return _up2(x)


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))``; the skip uses the raw input."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B,C,h,w]`` → ``[B,C,h,w]``."""
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """``out = x (+ RCU1(skip))`` → RCU2 → bilinear ×2 → 1×1 ``out_conv``."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_conv = nn.Conv2d(dim, dim, 1)
        self.resConfUnit1 = ResidualConvUnit(dim)
        self.resConfUnit2 = ResidualConvUnit(dim)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """x ``[B,C,h,w]``, skip ``[B,C,h,w]`` or None → ``[B,C,2h,2w]``."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        return self.out_conv(_up2(self.resConfUnit2(x)))


class Scratch(nn.Module):
    """Projections to ``feature_dim`` (``layer{1..4}_rn``, aliased as ``layer_rn``) and fusion blocks."""

    def __init__(self, layer_dims, feature_dim: int):
        super().__init__()
        for i, d in enumerate(layer_dims):
            setattr(self, f"layer{i + 1}_rn", nn.Conv2d(d, feature_dim, 3, padding=1, bias=False))
        # the same four modules under a second name, as in the reference state dict
        self.layer_rn = nn.ModuleList([getattr(self, f"layer{i + 1}_rn") for i in range(len(layer_dims))])
        for i in range(4):
            setattr(self, f"refinenet{i + 1}", FusionBlock(feature_dim))


class DPT(nn.Module):
    """The DPT adapter: hooked tokens → reassembled multi-scale maps → fusion → output conv stack."""

    def __init__(self, arch: DPTArch):
        super().__init__()
        self.hooks = tuple(arch.hooks)
        self.patch_size = arch.patch_size
        ld, dt = arch.layer_dims, arch.dim_tokens
        self.scratch = Scratch(ld, arch.feature_dim)
        f = arch.feature_dim
        self.head = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1),
            Upsample2x(),
            nn.Conv2d(f // 2, arch.last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(arch.last_dim, arch.num_channels, 1),
        )
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(dt[0], ld[0], 1), nn.ConvTranspose2d(ld[0], ld[0], 4, stride=4)),
                nn.Sequential(nn.Conv2d(dt[1], ld[1], 1), nn.ConvTranspose2d(ld[1], ld[1], 2, stride=2)),
                nn.Sequential(nn.Conv2d(dt[2], ld[2], 1)),
                nn.Sequential(nn.Conv2d(dt[3], ld[3], 1), nn.Conv2d(ld[3], ld[3], 3, stride=2, padding=1)),
            ]
        )

    def forward(self, tokens: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        """tokens: the decoder token list (``[B,h·w,C_i]`` each); image_size ``(H, W)`` → ``[B,4,H,W]``."""
        H, W = image_size
        h, w = H // self.patch_size, W // self.patch_size
        maps = []
        for i, hook in enumerate(self.hooks):
            t = tokens[hook]
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)
            maps.append(self.scratch.layer_rn[i](self.act_postprocess[i](x)))
        l1, l2, l3, l4 = maps
        p4 = self.scratch.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]
        p3 = self.scratch.refinenet3(p4, l3)
        p2 = self.scratch.refinenet2(p3, l2)
        p1 = self.scratch.refinenet1(p2, l1)
        return self.head(p1)


class PointmapHead(nn.Module):
    """DPT head + post-processing: ``pts3d = xyz/‖xyz‖ · f(‖xyz‖)`` (``f = expm1`` for ``exp``),
    ``conf = vmin + exp(c)`` clipped at ``vmax``."""

    def __init__(self, arch: DPTArch, depth_mode, conf_mode):
        super().__init__()
        self.dpt = DPT(arch)
        self.depth_mode = tuple(depth_mode)
        self.conf_mode = tuple(conf_mode)

    def forward(self, tokens: list[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """tokens (see :class:`DPT`) → ``{"pts3d": [B,H,W,3], "conf": [B,H,W]}``."""
        out = self.dpt(tokens, image_size).permute(0, 2, 3, 1)
        xyz, c = out[..., :3], out[..., 3]
        d = xyz.norm(dim=-1, keepdim=True)
        xyz = xyz / d.clamp(min=1e-8)
        name, lo, hi = self.depth_mode
        if name == "exp":
            scale = torch.expm1(d).clamp(min=lo, max=hi)
        elif name == "linear":
            scale = d.clamp(min=lo, max=hi)
        elif name == "square":
            scale = d.square().clamp(min=lo, max=hi)
        else:
            raise ValueError(f"unsupported depth_mode {name!r}")
        cname, clo, chi = self.conf_mode
        if cname != "exp":
            raise ValueError(f"unsupported conf_mode {cname!r}")
        conf = clo + torch.exp(c).clamp(max=chi - clo)
        return {"pts3d": xyz * scale, "conf": conf}
