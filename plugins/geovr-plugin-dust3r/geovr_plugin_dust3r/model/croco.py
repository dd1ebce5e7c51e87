"""AsymmetricCroCo3DStereo: the DUSt3R network (siamese ViT encoder, two cross-attending decoders,
one DPT pointmap head per view).

Views are dicts ``{"img": [B,3,H,W] in [-1,1], "true_shape": [B,2] (H,W), "instance": [str]*B}``;
H and W must be multiples of 16 and may differ between the two views.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from geovr_plugin_dust3r.arch import DUSt3RArch
from geovr_plugin_dust3r.model.blocks import DecoderBlock, EncoderBlock, RoPE2D
from geovr_plugin_dust3r.model.dpt import PointmapHead


class PatchEmbed(nn.Module):
    """Conv patch embedding (kernel = stride = patch) plus 0-based ``(row, col)`` token positions."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """img ``[B,3,H,W]`` → tokens ``[B,h·w,C]`` (row-major), positions ``[B,h·w,2]`` int64."""
        B, _, H, W = img.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        x = self.proj(img).flatten(2).transpose(1, 2)
        rows = torch.arange(H // p, device=img.device)
        cols = torch.arange(W // p, device=img.device)
        pos = torch.cartesian_prod(rows, cols).unsqueeze(0).expand(B, -1, -1)
        return x, pos


@attrs.define
class DecoderOutput:
    """Token lists of both views: ``tokens{1,2}[0]`` is the encoder output ``[B,N,E]`` (after
    ``enc_norm``), ``tokens{1,2}[i]`` (i ≥ 1) decoder block i's output ``[B,N,Dd]``, the last one after
    ``dec_norm``. ``pos{1,2}``: ``[B,N,2]`` patch positions; ``shape{1,2}``: ``(H, W)``."""

    tokens1: list[Tensor]
    tokens2: list[Tensor]
    pos1: Tensor
    pos2: Tensor
    shape1: tuple[int, int]
    shape2: tuple[int, int]


class AsymmetricCroCo3DStereo(nn.Module):
    """DUSt3R. ``forward(view1, view2) -> (pred1, pred2)`` with ``pred1 = {pts3d [B,H1,W1,3],
    conf [B,H1,W1]}`` (view 1's pixels in view 1's camera frame) and ``pred2 =
    {pts3d_in_other_view [B,H2,W2,3], conf [B,H2,W2]}`` (view 2's pixels, also in view 1's frame)."""

    def __init__(self, arch: DUSt3RArch | None = None):
        super().__init__()
        arch = arch or DUSt3RArch()
        self.arch = arch
        rope = RoPE2D(arch.rope_base)
        E, Dd, eps = arch.enc_embed_dim, arch.dec_embed_dim, arch.norm_eps
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))  # CroCo pre-training leftover, unused
        self.patch_embed = PatchEmbed(arch.patch_size, E)
        self.enc_blocks = nn.ModuleList(
            [EncoderBlock(E, arch.enc_num_heads, arch.mlp_ratio, eps, rope) for _ in range(arch.enc_depth)]
        )
        self.enc_norm = nn.LayerNorm(E, eps=eps)
        self.decoder_embed = nn.Linear(E, Dd)
        self.dec_blocks = nn.ModuleList(
            [DecoderBlock(Dd, arch.dec_num_heads, arch.mlp_ratio, eps, rope) for _ in range(arch.dec_depth)]
        )
        self.dec_norm = nn.LayerNorm(Dd, eps=eps)
        self.dec_blocks2 = nn.ModuleList(
            [DecoderBlock(Dd, arch.dec_num_heads, arch.mlp_ratio, eps, rope) for _ in range(arch.dec_depth)]
        )
        self.downstream_head1 = PointmapHead(arch.dpt, arch.depth_mode, arch.conf_mode)
        self.downstream_head2 = PointmapHead(arch.dpt, arch.depth_mode, arch.conf_mode)

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | DUSt3RArch | None = None) -> AsymmetricCroCo3DStereo:
        """Build from a ``tiny_config.json``-style dict (or its ``official_for_comparison`` object),
        a :class:`DUSt3RArch`, or nothing (the official ViT-L/ViT-B DPT 512 configuration)."""
        return cls(DUSt3RArch.from_dict(cfg))

    # -- encoder / decoder ---------------------------------------------------------------------
    def encode(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """img ``[B,3,H,W]`` in [-1,1] → (tokens ``[B,N,E]`` after ``enc_norm``, positions ``[B,N,2]``)."""
        x, pos = self.patch_embed(img)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

    def decode(self, enc1: Tensor, pos1: Tensor, enc2: Tensor, pos2: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Run both decoders on encoder tokens ``enc{1,2} [B,N{1,2},E]`` with positions ``pos{1,2}
        [B,N{1,2},2]``; step i uses both sides' outputs of step i−1. Returns the two token lists
        ``[enc, dec_1, …, dec_D]`` (only the last entry after ``dec_norm``)."""
        out1, out2 = [enc1], [enc2]
        f1, f2 = self.decoder_embed(enc1), self.decoder_embed(enc2)
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2, strict=False):
            f1, f2 = blk1(f1, f2, pos1, pos2), blk2(f2, f1, pos2, pos1)
            out1.append(f1)
            out2.append(f2)
        out1[-1], out2[-1] = self.dec_norm(out1[-1]), self.dec_norm(out2[-1])
        return out1, out2

    def encode_decode(self, img1: Tensor, img2: Tensor) -> DecoderOutput:
        """img1 ``[B,3,H1,W1]``, img2 ``[B,3,H2,W2]`` (in [-1,1]) → :class:`DecoderOutput`.
        Same-size views are encoded in one batch."""
        B = img1.shape[0]
        if img1.shape[-2:] == img2.shape[-2:]:
            enc, pos = self.encode(torch.cat([img1, img2]))
            enc1, enc2, pos1, pos2 = enc[:B], enc[B:], pos[:B], pos[B:]
        else:
            (enc1, pos1), (enc2, pos2) = self.encode(img1), self.encode(img2)
        t1, t2 = self.decode(enc1, pos1, enc2, pos2)
        return DecoderOutput(t1, t2, pos1, pos2, tuple(img1.shape[-2:]), tuple(img2.shape[-2:]))

    def heads(self, dec: DecoderOutput) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Run both DPT heads in float32 (autocast off) → ``(pred1, pred2)`` as in :meth:`forward`."""
        with torch.autocast(device_type=dec.tokens1[0].device.type, enabled=False):
            pred1 = self.downstream_head1([t.float() for t in dec.tokens1], dec.shape1)
            res2 = self.downstream_head2([t.float() for t in dec.tokens2], dec.shape2)
        pred2 = {"pts3d_in_other_view": res2["pts3d"], "conf": res2["conf"]}
        return pred1, pred2

    @staticmethod
    def _check_view(view: dict, name: str) -> Tensor:
        img = view["img"]
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{name}['img'] must be [B,3,H,W], got {tuple(img.shape)}")
        if view.get("true_shape") is not None:
            shape = torch.as_tensor(view["true_shape"]).reshape(-1, 2).tolist()
            if any(tuple(hw) != tuple(img.shape[-2:]) for hw in shape):
                raise ValueError(
                    f"{name}['true_shape'] {shape} does not match the image size "
                    f"{tuple(img.shape[-2:])} (mixed sizes in a batch are unsupported)"
                )
        return img

    def forward(self, view1: dict, view2: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """view1/view2: ``{"img": [B,3,H,W] in [-1,1], "true_shape": [B,2], "instance": [...]}`` →
        ``(pred1 {pts3d [B,H1,W1,3], conf [B,H1,W1]}, pred2 {pts3d_in_other_view [B,H2,W2,3], conf})``."""
        img1, img2 = self._check_view(view1, "view1"), self._check_view(view2, "view2")
        return self.heads(self.encode_decode(img1, img2))
