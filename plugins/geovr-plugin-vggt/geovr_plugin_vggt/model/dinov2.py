"""DINOv2 ViT with register tokens, used as VGGT's patch embedding (``aggregator.patch_embed.*``).

Input normalised frames ``[N,3,H,W]`` (H, W multiples of the patch size) → normalised patch tokens
``[N, h*w, C]`` (row-major). The learned absolute position embedding ``[1, 1+M*M, C]`` is resized to
the ``h×w`` grid with antialiased bicubic interpolation to the explicit target size (offset 0), and
kept as is only for a square image whose grid equals ``M×M``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geovr_plugin_vggt.model.layers import Block


class PatchProjection(nn.Module):
    """Non-overlapping ``p×p`` convolution ``[N,3,H,W]`` → tokens ``[N, h*w, C]`` (``proj`` parameters)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """``[N,3,H,W]`` → ``[N, (H/p)*(W/p), C]``."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2WithRegisters(nn.Module):
    """ViT (``depth`` pre-norm blocks, LayerNorm eps 1e-6, layer-scale) with CLS + register tokens."""

    def __init__(
        self,
        *,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float = 1.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.num_register_tokens = num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # in the checkpoint, unused at inference
        self.patch_embed = PatchProjection(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, init_values=init_values, norm_eps=norm_eps)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def position_embedding(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """Position embedding for CLS + an ``h×w`` grid → ``[1, 1+h*w, C]``."""
        M = self.grid
        if h == M and w == M:
            return self.pos_embed.to(dtype)
        pe = self.pos_embed.float()
        C = pe.shape[-1]
        grid = pe[:, 1:].reshape(1, M, M, C).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, C)
        return torch.cat([pe[:, :1], grid], dim=1).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[N,3,H,W]`` (already mean/std normalised) → patch tokens ``[N, h*w, C]``."""
        N, _, H, W = x.shape
        h, w = H // self.patch_size, W // self.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(N, -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = tokens + self.position_embedding(h, w, tokens.dtype)
        regs = self.register_tokens.expand(N, -1, -1).to(tokens.dtype)
        tokens = torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 1 + self.num_register_tokens :]
