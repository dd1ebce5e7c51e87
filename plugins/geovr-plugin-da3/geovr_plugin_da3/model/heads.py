"""DA3's dense heads and camera decoder, parameter names as in the official checkpoints.

* :class:`DualDPT` (``head`` of the any-view models): token LayerNorm, per-level 1×1 projections,
  UV sin-cos embedding, resize ×4/×2/×1/½, RefineNet fusion, then depth ``exp(·)`` and confidence
  ``1 + exp(·)`` at the input resolution. Its second (ray) branch is built so checkpoints load strictly,
  but it is not evaluated: geovr takes cameras from the camera decoder, as the released code does.
* :class:`DPT` (``head`` of the metric model): no token norm, no UV embedding, one depth channel
  ``exp(·)`` and a sky channel ``relu(·)``.
* :class:`CameraDec` (``cam_dec``): camera token ``[B,S,2C]`` → ``[t(3), q_xyzw(4), fov_h, fov_w]``
  describing the camera-to-world pose. :class:`CameraEnc` (``cam_enc``) only exists so that the
  checkpoints load strictly; geovr never conditions on known cameras.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geovr_plugin_da3.model.backbone import Block, Mlp


def uv_embedding(x: Tensor, W: int, H: int, ratio: float = 0.1) -> Tensor:
    """``x [N,C,h,w]`` plus ``ratio ·`` a sin-cos embedding (ω₀ 100) of a cell-centred UV grid whose
    extent follows the image aspect ratio ``W/H`` (normalised by its diagonal)."""
    N, C, h, w = x.shape
    aspect = W / H
    diag = (aspect**2 + 1.0) ** 0.5
    sx, sy = aspect / diag, 1.0 / diag
    xs = torch.linspace(-sx * (w - 1) / w, sx * (w - 1) / w, w, dtype=x.dtype, device=x.device)
    ys = torch.linspace(-sy * (h - 1) / h, sy * (h - 1) / h, h, dtype=x.dtype, device=x.device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")  # [h, w]

    def sincos(pos: Tensor, dim: int) -> Tensor:
        omega = 1.0 / 100.0 ** (torch.arange(dim // 2, dtype=torch.float32, device=x.device) / (dim / 2.0))
        out = pos.reshape(-1, 1).float() * omega[None]
        return torch.cat((out.sin(), out.cos()), dim=1)

    emb = torch.cat((sincos(uu, C // 2), sincos(vv, C // 2)), dim=-1).reshape(h, w, C)
    return x + (emb * ratio).permute(2, 0, 1)[None].to(x.dtype)


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))``."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet step: ``(top + rcu1(lateral))`` → ``rcu2`` → bilinear resize (align corners) → 1×1."""

    def __init__(self, features: int, residual: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features) if residual else None
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, top: Tensor, lateral: Tensor | None = None, size=None) -> Tensor:
        y = top
        if lateral is not None and self.resConfUnit1 is not None:
            y = y + self.resConfUnit1(lateral)
        y = self.resConfUnit2(y)
        size = tuple(size) if size is not None else (int(y.shape[-2] * 2), int(y.shape[-1] * 2))
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(y)


def _scratch(out_channels, features: int) -> nn.Module:
    s = nn.Module()
    for i, c in enumerate(out_channels, start=1):
        setattr(s, f"layer{i}_rn", nn.Conv2d(c, features, 3, 1, 1, bias=False))
    for i in (1, 2, 3):
        setattr(s, f"refinenet{i}", FusionBlock(features))
    s.refinenet4 = FusionBlock(features, residual=False)
    return s


class _Permute(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class _DPTBase(nn.Module):
    """Shared projection / resize / fusion pyramid of :class:`DPT` and :class:`DualDPT`."""

    def __init__(self, dim_in: int, features: int, out_channels, patch_size: int, token_norm: bool, pos_embed: bool):
        super().__init__()
        self.patch_size = patch_size
        self.pos_embed = pos_embed
        self.norm = nn.LayerNorm(dim_in) if token_norm else nn.Identity()
        oc = list(out_channels)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, c, 1) for c in oc])
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], 4, 4),
                nn.ConvTranspose2d(oc[1], oc[1], 2, 2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], 3, 2, 1),
            ]
        )
        self.scratch = _scratch(oc, features)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)

    def _levels(self, feats: list[Tensor], H: int, W: int) -> list[Tensor]:
        """4 × ``[N, h·w, C]`` tokens → the 4 ``layerX_rn`` maps."""
        h, w = H // self.patch_size, W // self.patch_size
        out = []
        for i, t in enumerate(feats):
            x = self.norm(t).permute(0, 2, 1).reshape(t.shape[0], t.shape[-1], h, w)
            x = self.projects[i](x)
            if self.pos_embed:
                x = uv_embedding(x, W, H)
            x = self.resize_layers[i](x)
            out.append(getattr(self.scratch, f"layer{i + 1}_rn")(x))
        return out

    @staticmethod
    def _fuse(levels: list[Tensor], blocks) -> Tensor:
        l1, l2, l3, l4 = levels
        out = blocks[3](l4, size=l3.shape[2:])
        out = blocks[2](out, l3, size=l2.shape[2:])
        out = blocks[1](out, l2, size=l1.shape[2:])
        return blocks[0](out, l1)


class DualDPT(_DPTBase):
    """``head`` of the any-view models; ``forward(feats, H, W)`` → ``(depth [N,H,W], conf [N,H,W])``
    with ``feats`` 4 × ``[N, h·w, dim_in]``."""

    def __init__(
        self,
        dim_in: int,
        *,
        features: int = 256,
        out_channels=(256, 512, 1024, 1024),
        output_dim: int = 2,
        patch_size: int = 14,
        aux_levels: int = 4,
    ):
        super().__init__(dim_in, features, out_channels, patch_size, token_norm=True, pos_embed=True)
        s = self.scratch
        s.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))
        for i in (1, 2, 3):
            setattr(s, f"refinenet{i}_aux", FusionBlock(features))
        s.refinenet4_aux = FusionBlock(features, residual=False)
        half = features // 2
        s.output_conv1_aux = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(features, half, 3, 1, 1),
                    nn.Conv2d(half, features, 3, 1, 1),
                    nn.Conv2d(features, half, 3, 1, 1),
                    nn.Conv2d(half, features, 3, 1, 1),
                    nn.Conv2d(features, half, 3, 1, 1),
                )
                for _ in range(aux_levels)
            ]
        )
        s.output_conv2_aux = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(half, 32, 3, 1, 1),
                    _Permute(0, 2, 3, 1),
                    nn.LayerNorm(32),
                    _Permute(0, 3, 1, 2),
                    nn.ReLU(),
                    nn.Conv2d(32, 7, 1),
                )
                for _ in range(aux_levels)
            ]
        )

    def forward(self, feats: list[Tensor], H: int, W: int) -> tuple[Tensor, Tensor]:
        s = self.scratch
        fused = self._fuse(self._levels(feats, H, W), (s.refinenet1, s.refinenet2, s.refinenet3, s.refinenet4))
        fused = s.output_conv1(fused)
        h, w = H // self.patch_size * self.patch_size, W // self.patch_size * self.patch_size
        fused = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=True)
        fused = uv_embedding(fused, W, H)
        logits = s.output_conv2(fused)
        return logits[:, 0].exp(), logits[:, -1].exp() + 1.0


class DPT(_DPTBase):
    """``head`` of the metric model; ``forward(feats, H, W)`` → ``(depth [N,H,W], sky [N,H,W])``."""

    def __init__(
        self,
        dim_in: int,
        *,
        features: int = 256,
        out_channels=(256, 512, 1024, 1024),
        output_dim: int = 1,
        patch_size: int = 14,
    ):
        super().__init__(dim_in, features, out_channels, patch_size, token_norm=False, pos_embed=False)
        s = self.scratch
        s.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))
        s.sky_output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 1, 1))

    def forward(self, feats: list[Tensor], H: int, W: int) -> tuple[Tensor, Tensor]:
        s = self.scratch
        fused = self._fuse(self._levels(feats, H, W), (s.refinenet1, s.refinenet2, s.refinenet3, s.refinenet4))
        fused = s.output_conv1(fused)
        h, w = H // self.patch_size * self.patch_size, W // self.patch_size * self.patch_size
        fused = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=True)
        depth = s.output_conv2(fused)[:, 0].exp()
        sky = F.relu(s.sky_output_conv2(fused)[:, 0])
        return depth, sky


class CameraDec(nn.Module):
    """``cam_dec``: ``[B,S,D]`` camera tokens → ``[B,S,9]`` camera-to-world pose encoding."""

    def __init__(self, dim_in: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Linear(dim_in, dim_in), nn.ReLU())
        self.fc_t = nn.Linear(dim_in, 3)
        self.fc_qvec = nn.Linear(dim_in, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim_in, 2), nn.ReLU())

    def forward(self, tokens: Tensor) -> Tensor:
        f = self.backbone(tokens.float())
        return torch.cat((self.fc_t(f), self.fc_qvec(f), self.fc_fov(f)), dim=-1)


class CameraEnc(nn.Module):
    """``cam_enc`` (known-camera conditioning): parameters only, never evaluated by geovr."""

    def __init__(self, dim_out: int, *, trunk_depth: int = 4, num_heads: int = 16, dim_in: int = 9):
        super().__init__()
        self.trunk = nn.Sequential(*[Block(dim_out, num_heads, eps=1e-5, layer_scale=0.01) for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_out)
        self.trunk_norm = nn.LayerNorm(dim_out)
        self.pose_branch = Mlp(dim_in, dim_out // 2, dim_out)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("geovr does not condition DA3 on known cameras")
