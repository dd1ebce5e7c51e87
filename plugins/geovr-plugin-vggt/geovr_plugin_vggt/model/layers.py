"""Transformer building blocks shared by the aggregator, the DINOv2 patch embed and the camera head.

Shapes: tokens ``[B,N,C]``; per-head tensors ``[B,heads,N,d]``; RoPE positions ``[B,N,2]`` integer
``(y, x)``. Parameter names follow the official checkpoint (``attn.qkv``, ``attn.q_norm``,
``attn.proj``, ``ls1.gamma``, ``mlp.fc1``...). MLP and layer-scale come from timm, whose parameter
names match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerScale, Mlp
from torch import Tensor, nn

#: attention implementations selectable per module (``Attention.backend``)
ATTENTION_BACKENDS = ("sdpa", "math", "xformers")


def attention(q: Tensor, k: Tensor, v: Tensor, backend: str = "sdpa") -> Tensor:
    """Softmax attention with scale ``1/sqrt(d)``, no mask: q/k/v ``[B,heads,N,d]`` → ``[B,heads,N,d]``.

    ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``; ``"math"``: the explicit
    softmax(q kᵀ) v (materialises the ``N×N`` matrix); ``"xformers"``: memory-efficient attention
    from xformers (must be installed).
    """
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "math":
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        return scores.softmax(dim=-1) @ v
    if backend == "xformers":
        try:
            from xformers.ops import memory_efficient_attention
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("attention='xformers' needs the xformers package (pip install xformers)") from exc
        out = memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    raise ValueError(f"unknown attention backend {backend!r}; expected one of {ATTENTION_BACKENDS}")


class RotaryEmbedding2D(nn.Module):
    """2D rotary position embedding (no parameters).

    The first half of the head dim is rotated by the row position ``y``, the second half by the
    column position ``x``; within a half of size ``D`` the frequencies are ``base^(−2k/D)``, the angle
    vector is duplicated (rotate-half convention, not interleaved).
    """

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)

    def _rotate(self, x: Tensor, pos: Tensor) -> Tensor:
        # x [B,h,N,D], pos [B,N] integer positions
        D = x.shape[-1]
        inv_freq = 1.0 / (self.base ** (torch.arange(0, D, 2, device=x.device).float() / D))
        angles = pos.to(inv_freq.dtype)[..., None] * inv_freq  # [B,N,D/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B,1,N,D]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,heads,N,d]`` (d divisible by 4), pos ``[B,N,2]`` (y, x) → rotated ``[B,heads,N,d]``."""
        y_half, x_half = x.chunk(2, dim=-1)
        return torch.cat([self._rotate(y_half, pos[..., 0]), self._rotate(x_half, pos[..., 1])], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with packed ``qkv``, optional qk-norm (LayerNorm over the head dim,
    applied before RoPE) and optional 2D RoPE."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        rope: RotaryEmbedding2D | None = None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope
        self.backend = "sdpa"

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """x ``[B,N,C]``, pos ``[B,N,2]`` or ``None`` → ``[B,N,C]``."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = attention(q, k, v, self.backend)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: ``x += ls1·Attn(LN1(x)); x += ls2·MLP(LN2(x))`` (exact GELU)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        rope: RotaryEmbedding2D | None = None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, norm_eps=norm_eps, rope=rope
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        """x ``[B,N,C]``, pos ``[B,N,2]`` or ``None`` → ``[B,N,C]``."""
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


def set_attention_backend(module: nn.Module, backend: str) -> None:
    """Select the attention implementation of every :class:`Attention` inside ``module``."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected one of {ATTENTION_BACKENDS}")
    for m in module.modules():
        if isinstance(m, Attention):
            m.backend = backend
