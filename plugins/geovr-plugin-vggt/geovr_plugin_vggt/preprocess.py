"""Frame pre-processing of the VGGT teacher, on tensors (the reference loader works on PIL images).

``crop``: width → ``size``, height → ``round(H·size/W/14)·14`` (bicubic, antialiased), then a centre crop
of the height to at most ``size``. ``pad``: the long side → ``size``, the short side rounded to a multiple
of 14, then white (1.0) padding to ``size×size`` (centred, the extra pixel at the bottom/right).
Frames that already have the target size are passed through unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PATCH = 14


def target_size(H: int, W: int, size: int, mode: str) -> tuple[int, int]:
    """Resized ``(h, w)`` before cropping/padding."""
    if mode == "crop":
        return max(PATCH, round(H * size / W / PATCH) * PATCH), size
    if mode == "pad":
        if W >= H:
            return max(PATCH, round(H * size / W / PATCH) * PATCH), size
        return size, max(PATCH, round(W * size / H / PATCH) * PATCH)
    raise ValueError(f"resize_mode must be 'crop' or 'pad', got {mode!r}")


def preprocess_frames(frames: Tensor, size: int, mode: str) -> Tensor:
    """frames ``[B,S,3,H,W]`` in [0,1] → ``[B,S,3,H',W']`` in [0,1] with H', W' multiples of 14."""
    B, S, C, H, W = frames.shape
    h, w = target_size(H, W, size, mode)
    x = frames.reshape(B * S, C, H, W)
    if (h, w) != (H, W):
        x = F.interpolate(x.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    if mode == "crop" and h > size:
        top = (h - size) // 2
        x = x[:, :, top:top + size]
    elif mode == "pad" and (h < size or w < size):
        ph, pw = size - h, size - w
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=1.0)
    return x.reshape(B, S, C, *x.shape[-2:]).to(torch.float32)
