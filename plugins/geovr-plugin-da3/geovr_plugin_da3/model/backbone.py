"""The DA3 image backbone: a DINOv2-style ViT with per-view ("local") and all-view ("global") attention.

Module and parameter names follow the official checkpoints (``backbone.pretrained.*``) so that their
tensors load strictly by name. Shapes: images ``[B,S,3,H,W]`` (ImageNet-normalised, H and W multiples
of the patch size) → tokens ``[B,S,1+h·w,C]`` (one special token in front of the ``h·w`` patch tokens).

Behaviour (DA3's design, implemented here from its description):

* blocks ``< alt_start`` attend within each view; from ``alt_start`` on, odd-numbered blocks attend
  over all views of a video at once, even ones within each view;
* at block ``alt_start`` the special token of every view is replaced by a learned camera token (row 0
  for the first view, the reference, row 1 for the others);
* from ``qknorm_start`` on, queries and keys are layer-normalised per head; from ``rope_start`` on a 2-D
  rotary embedding (base 100) is applied, with the patch grid positions (shifted by one, the special
  token at 0) for per-view attention and a constant position for all-view attention;
* a requested output block yields ``concat(last per-view tokens, current tokens)`` (``cat_token``) with
  the final LayerNorm applied to the second half only, or the normalised tokens without ``cat_token``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerScale(nn.Module):
    """Per-channel learned scale (``gamma``)."""

    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """``fc1 → GELU → fc2``."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """Packed SwiGLU feed-forward: ``w3(silu(a) · b)`` with ``[a, b] = w12(x)``; the hidden width is
    ``ceil8(2/3 · mlp_hidden)`` as in the giant DINOv2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Rope2D(nn.Module):
    """2-D rotary embedding: the first half of each head's channels rotates with the row index, the
    second half with the column index; frequencies ``base^(-2i/d)`` with ``d`` = half the head width."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = base

    @staticmethod
    def _rotate(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    def _one_axis(self, x: Tensor, pos: Tensor) -> Tensor:
        d = x.shape[-1]
        inv = 1.0 / self.base ** (torch.arange(0, d, 2, device=x.device).float() / d)
        n = int(pos.max()) + 1
        ang = torch.outer(torch.arange(n, device=x.device, dtype=inv.dtype), inv).to(x.dtype)
        ang = torch.cat((ang, ang), dim=-1)
        cos = F.embedding(pos, ang.cos())[:, None]
        sin = F.embedding(pos, ang.sin())[:, None]
        return x * cos + self._rotate(x) * sin

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x ``[B,heads,N,d]``, pos ``[B,N,2]`` (row, column) integer positions."""
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat((self._one_axis(rows, pos[..., 0]), self._one_axis(cols, pos[..., 1])), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention (``qkv``, optional per-head ``q_norm``/``k_norm``, ``proj``)."""

    def __init__(self, dim: int, heads: int, *, qk_norm: bool = False, rope: Rope2D | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with layer scales (``norm1, attn, ls1, norm2, mlp, ls2``)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        ffn: str = "mlp",
        qk_norm: bool = False,
        rope: Rope2D | None = None,
        eps: float = 1e-6,
        layer_scale: float | None = 1.0,
    ):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = SwiGLU(dim, hidden) if ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """``proj``: a stride-``p`` convolution, ``[N,3,H,W]`` → ``[N,h·w,C]``."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """The ``backbone.pretrained`` module (see the module docstring).

    ``cfg`` keys: ``embed_dim, depth, num_heads, mlp_ratio, ffn ("mlp"|"swiglu"), patch_size, pos_grid``
    (side of the stored position table, 37 for the 518-px pre-training), ``alt_start, qknorm_start,
    rope_start`` (-1 = off), ``cat_token``, ``rope_freq``.
    """

    def __init__(self, cfg: dict):
        super().__init__()
        C, depth = int(cfg["embed_dim"]), int(cfg["depth"])
        self.embed_dim, self.depth = C, depth
        self.patch_size = int(cfg.get("patch_size", 14))
        self.alt_start = int(cfg.get("alt_start", -1))
        self.qknorm_start = int(cfg.get("qknorm_start", -1))
        self.rope_start = int(cfg.get("rope_start", -1))
        self.cat_token = bool(cfg.get("cat_token", False))
        grid = int(cfg.get("pos_grid", 37))
        self.patch_embed = PatchEmbed(self.patch_size, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        if self.alt_start != -1:
            self.camera_token = nn.Parameter(torch.randn(1, 2, C))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, C) * 0.02)
        self.rope = Rope2D(float(cfg.get("rope_freq", 100))) if self.rope_start != -1 else None
        self.blocks = nn.ModuleList(
            [
                Block(
                    C,
                    int(cfg["num_heads"]),
                    mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
                    ffn=cfg.get("ffn", "mlp"),
                    qk_norm=self.qknorm_start != -1 and i >= self.qknorm_start,
                    rope=self.rope if self.rope_start != -1 and i >= self.rope_start else None,
                )
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(C)

    def _pos_embed(self, h: int, w: int, dtype) -> Tensor:
        """The stored ``[1,1+M²,C]`` table, bicubically resized to an ``h×w`` grid (scale factors
        ``(h+0.1)/M``, ``(w+0.1)/M``, as DINOv2 does) → ``[1,1+h·w,C]``."""
        table = self.pos_embed.float()
        M = math.isqrt(table.shape[1] - 1)
        if h * w == M * M and h == w:
            return self.pos_embed
        grid = table[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / M, (w + 0.1) / M), mode="bicubic", antialias=False)
        if tuple(grid.shape[-2:]) != (h, w):
            raise ValueError(f"position table resize gave {tuple(grid.shape[-2:])}, expected {(h, w)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((table[:, :1], grid), dim=1).to(dtype)

    def _positions(self, B: int, S: int, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """Rotary positions ``[B,S,1+h·w,2]``: per-view (grid + 1, special token 0) and all-view
        (1 for every patch, 0 for the special token)."""
        grid = torch.cartesian_prod(torch.arange(h, device=device), torch.arange(w, device=device)) + 1
        special = torch.zeros(1, 2, dtype=grid.dtype, device=device)
        local = torch.cat((special, grid)).expand(B, S, -1, -1)
        glob = torch.cat((special, torch.ones_like(grid))).expand(B, S, -1, -1)
        return local, glob

    def _run(self, block: Block, x: Tensor, pos: Tensor | None, scope: str) -> Tensor:
        B, S, N, C = x.shape
        if scope == "local":
            out = block(x.reshape(B * S, N, C), None if pos is None else pos.reshape(B * S, N, 2))
        else:
            out = block(x.reshape(B, S * N, C), None if pos is None else pos.reshape(B, S * N, 2))
        return out.reshape(B, S, N, C)

    def forward(self, images: Tensor, out_layers, export_layers=()) -> tuple[list, dict]:
        """images ``[B,S,3,H,W]`` → ``(outputs, exported)``.

        outputs: per block of ``out_layers`` (ascending) a pair ``(tokens [B,S,h·w,C'], cam [B,S,C'])``
        with ``C' = 2C`` under ``cat_token`` (the special token is dropped from ``tokens``, ``cam`` is the
        special token before the final norm); exported: ``{block: [B,S,h·w,C]}`` final-normed tokens of
        the blocks in ``export_layers``.
        """
        B, S, _, H, W = images.shape
        p = self.patch_size
        h, w = H // p, W // p
        x = self.patch_embed(images.reshape(B * S, 3, H, W))
        x = torch.cat((self.cls_token.expand(B * S, -1, -1), x), dim=1)
        x = (x + self._pos_embed(h, w, x.dtype)).reshape(B, S, 1 + h * w, -1)
        local_pos = global_pos = None
        if self.rope is not None:
            local_pos, global_pos = self._positions(B, S, h, w, images.device)
        wanted, export = set(out_layers), set(export_layers)
        outs, exported = [], {}
        local_x = x
        for i, block in enumerate(self.blocks):
            roped = self.rope is not None and i >= self.rope_start
            if self.alt_start != -1 and i == self.alt_start:
                cam = torch.cat(
                    (self.camera_token[:, :1].expand(B, 1, -1), self.camera_token[:, 1:].expand(B, S - 1, -1)), dim=1
                )
                x = x.clone()
                x[:, :, 0] = cam.to(x.dtype)
            if self.alt_start != -1 and i >= self.alt_start and i % 2 == 1:
                x = self._run(block, x, global_pos if roped else None, "global")
            else:
                x = self._run(block, x, local_pos if roped else None, "local")
                local_x = x
            if i in wanted:
                outs.append(torch.cat((local_x, x), dim=-1) if self.cat_token else x)
            if i in export:
                exported[i] = self.norm(x)[:, :, 1:]
            if len(outs) == len(wanted) and len(exported) == len(export) and i >= max(wanted | export):
                break
        C = self.embed_dim
        results = []
        for t in outs:
            cam = t[:, :, 0]
            if t.shape[-1] == 2 * C:
                t = torch.cat((t[..., :C], self.norm(t[..., C:])), dim=-1)
            else:
                t = self.norm(t)
            results.append((t[:, :, 1:], cam))
        return results, exported


class DinoWrapper(nn.Module):
    """``backbone``: holds the ViT as ``pretrained`` (the official checkpoints' key prefix)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.pretrained = ViT(cfg)
        self.out_layers = [int(v) for v in cfg["out_layers"]]

    def forward(self, images: Tensor, export_layers=()):
        return self.pretrained(images, self.out_layers, export_layers)
