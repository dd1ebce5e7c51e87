"""The VGGT aggregator: DINOv2 patch tokens + camera/register tokens, then alternating frame and
global attention with 2D RoPE and qk-norm.

``Aggregator(images [B,S,3,H,W] in [0,1]) -> (tokens_list, patch_start_idx)`` where ``tokens_list``
has one ``[B,S,P,2C]`` entry per depth index (channels = [frame-block output | global-block output]),
``P = 1 + R + h*w`` tokens per frame (camera, R registers, patches) and ``patch_start_idx = 1 + R``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geovr_plugin_vggt.model.dinov2 import DinoV2WithRegisters
from geovr_plugin_vggt.model.layers import Block, RotaryEmbedding2D

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _special_tokens(param: Tensor, B: int, S: int) -> Tensor:
    """``[1,2,n,C]`` (variant 0 for frame 0, variant 1 for the others) → ``[B*S, n, C]``."""
    first = param[:, :1].expand(B, 1, -1, -1)
    rest = param[:, 1:].expand(B, S - 1, -1, -1)
    return torch.cat([first, rest], dim=1).reshape(B * S, *param.shape[2:])


class Aggregator(nn.Module):
    """Alternating-attention transformer over the frames of a scene (``aggregator.*``)."""

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
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        qk_norm: bool = True,
        rope_freq: float = 100.0,
        init_values: float = 0.01,
        patch_embed: dict | None = None,
    ):
        super().__init__()
        pe = {
            "embed_dim": 1024,
            "depth": 24,
            "num_heads": 16,
            "mlp_ratio": 4.0,
            "num_register_tokens": 4,
            "init_values": 1.0,
            "norm_eps": 1e-6,
        }
        pe.update(patch_embed or {})
        self.patch_size = patch_size
        self.depth = depth
        self.num_register_tokens = num_register_tokens
        self.patch_start_idx = 1 + num_register_tokens
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, embed_dim))
        self.patch_embed = DinoV2WithRegisters(img_size=img_size, patch_size=patch_size, **pe)
        self.rope = RotaryEmbedding2D(rope_freq) if rope_freq > 0 else None
        kw = dict(
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            ffn_bias=ffn_bias,
            init_values=init_values,
            qk_norm=qk_norm,
            norm_eps=1e-5,
            rope=self.rope,
        )
        self.frame_blocks = nn.ModuleList(Block(embed_dim, num_heads, **kw) for _ in range(depth))
        self.global_blocks = nn.ModuleList(Block(embed_dim, num_heads, **kw) for _ in range(depth))
        self.reset_constants()

    def reset_constants(self) -> None:
        """(Re)create the ImageNet mean/std buffers ``[1,1,3,1,1]`` (non-persistent, not in checkpoints),
        e.g. after the model was built on the meta device and its weights assigned."""
        device = self.camera_token.device if not self.camera_token.is_meta else None
        self.register_buffer(
            "_resnet_mean", torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "_resnet_std", torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1), persistent=False
        )

    def positions(self, n: int, h: int, w: int, device) -> Tensor:
        """RoPE positions ``[n, P, 2]`` (y, x): 0 for special tokens, 1-based grid for patches."""
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        grid = torch.stack([ys, xs], dim=-1).reshape(h * w, 2) + 1
        special = torch.zeros(self.patch_start_idx, 2, dtype=grid.dtype, device=device)
        return torch.cat([special, grid], dim=0).expand(n, -1, -1)

    def embed(self, images: Tensor) -> Tensor:
        """images ``[B,S,3,H,W]`` in [0,1] → DINOv2 patch tokens ``[B*S, h*w, C]``."""
        B, S, _, H, W = images.shape
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} must be a multiple of the patch size {self.patch_size}")
        x = (images - self._resnet_mean) / self._resnet_std
        return self.patch_embed(x.reshape(B * S, 3, H, W))

    def forward(self, images: Tensor, *, keep_layers=None) -> tuple[list[Tensor | None], int]:
        """images ``[B,S,3,H,W]`` in [0,1] → (list of ``depth`` tensors ``[B,S,P,2C]``, patch_start_idx).

        ``keep_layers``: optional set of depth indices to keep; other entries are ``None`` (saves
        memory when only some layers are needed).
        """
        B, S, _, H, W = images.shape
        patches = self.embed(images)
        C = patches.shape[-1]
        tokens = torch.cat(
            [
                _special_tokens(self.camera_token, B, S).to(patches.dtype),
                _special_tokens(self.register_token, B, S).to(patches.dtype),
                patches,
            ],
            dim=1,
        )
        P = tokens.shape[1]
        pos = self.positions(B * S, H // self.patch_size, W // self.patch_size, images.device)
        pos_global = pos.reshape(B, S * P, 2)
        outputs: list[Tensor | None] = []
        for k in range(self.depth):
            tokens = self.frame_blocks[k](tokens.reshape(B * S, P, C), pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self.global_blocks[k](tokens.reshape(B, S * P, C), pos_global)
            global_out = tokens.reshape(B, S, P, C)
            keep = keep_layers is None or k in keep_layers
            outputs.append(torch.cat([frame_out, global_out], dim=-1) if keep else None)
        return outputs, self.patch_start_idx
