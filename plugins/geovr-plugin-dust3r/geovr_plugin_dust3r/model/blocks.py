"""Transformer building blocks of the CroCo/DUSt3R encoder and decoders.

Shapes: ``B`` batch, ``N`` tokens, ``C`` channels, ``h`` heads, ``d`` head dim. Positions ``pos`` are
``[B,N,2]`` integer ``(row, col)`` patch coordinates (0-based).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RoPE2D(nn.Module):
    """2D rotary position embedding: the first half of the head dim is rotated by the row (y),
    the second half by the column (x). In each half of size ``D``: ``θ_k = pos·base^(−2k/D)``,
    angles duplicated ``[θ, θ]``, ``out = v·cos + rotate_half(v)·sin``. No parameters or buffers."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)

    def _rotate(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,h,N,D]``, pos ``[B,N]`` → rotated x."""
        dim = x.shape[-1]
        inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
        angles = pos.to(torch.float32)[..., None] * inv_freq  # [B,N,D/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B,1,N,D]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,h,N,d]`` (d a multiple of 4), pos ``[B,N,2]`` → ``[B,h,N,d]``."""
        y, x_ = x.chunk(2, dim=-1)
        return torch.cat([self._rotate(y, pos[..., 0]), self._rotate(x_, pos[..., 1])], dim=-1)


class Mlp(nn.Module):
    """Linear → exact GELU → Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B,N,C]`` → ``[B,N,C]``."""
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Self-attention with a fused ``qkv`` projection (q/k/v slowest, then heads) and RoPE on q, k."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,N,C]``, pos ``[B,N,2]`` → ``[B,N,C]``."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Cross-attention with separate ``projq/projk/projv``; queries are rotated with their own
    positions, keys with the memory's positions."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, query: Tensor, key: Tensor, value: Tensor, qpos: Tensor, kpos: Tensor) -> Tensor:
        """query ``[B,Nq,C]``, key/value ``[B,Nk,C]``, qpos ``[B,Nq,2]``, kpos ``[B,Nk,2]`` → ``[B,Nq,C]``."""
        B, Nq, C = query.shape
        Nk = key.shape[1]
        h, d = self.num_heads, C // self.num_heads
        q = self.projq(query).reshape(B, Nq, h, d).transpose(1, 2)
        k = self.projk(key).reshape(B, Nk, h, d).transpose(1, 2)
        v = self.projv(value).reshape(B, Nk, h, d).transpose(1, 2)
        q, k = self.rope(q, qpos), self.rope(k, kpos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, C))


class EncoderBlock(nn.Module):
    """Pre-norm ViT block: ``x += Attn(LN1(x))``; ``x += MLP(LN2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,N,C]``, pos ``[B,N,2]`` → ``[B,N,C]``."""
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the other view's (``norm_y``-normalised)
    tokens, MLP; all pre-norm with residuals."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, y: Tensor, xpos: Tensor, ypos: Tensor) -> Tensor:
        """x ``[B,Nx,C]`` (this view), y ``[B,Ny,C]`` (other view), positions ``[B,N*,2]`` → ``[B,Nx,C]``."""
        x = x + self.attn(self.norm1(x), xpos)
        y = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y, y, xpos, ypos)
        return x + self.mlp(self.norm3(x))
