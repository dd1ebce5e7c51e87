"""Frame pre-processing of the VGGT teacher, on tensors.

``resize`` (default, as the released GeoVR training feeds its teacher): the whole frame is resized, the
long side → ``size`` and the short side → the nearest multiple of ``multiple`` keeping the aspect ratio
(28 = two 14-pixel patches, so the 2×2-pooled feature grid is exact); nothing is cropped, so every
teacher pixel sees the same part of the scene as the student's frame (portrait frames stay portrait).

The reference VGGT loader's modes stay available: ``crop``: width → ``size``, height →
``round(H·size/W/14)·14``, then a centre crop of the height to at most ``size`` (portrait frames lose
their top and bottom, so targets no longer match the student's field of view). ``pad``: the long side →
``size``, the short side rounded to a multiple of 14, then white (1.0) padding to ``size×size`` (centred,
the extra pixel at the bottom/right).

Resizing is bicubic and antialiased; frames that already have the target size pass through unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PATCH = 14
MODES = ("resize", "crop", "pad")


def target_size(H: int, W: int, size: int, mode: str, multiple: int = 2 * PATCH) -> tuple[int, int]:
    """Resized ``(h, w)`` before cropping/padding (``multiple`` applies to ``resize`` only)."""
    if mode == "resize":
        if W >= H:
            return max(multiple, round(H * size / W / multiple) * multiple), size
        return size, max(multiple, round(W * size / H / multiple) * multiple)
    if mode == "crop":
        return max(PATCH, round(H * size / W / PATCH) * PATCH), size
    if mode == "pad":
        if W >= H:
            return max(PATCH, round(H * size / W / PATCH) * PATCH), size
        return size, max(PATCH, round(W * size / H / PATCH) * PATCH)
    raise ValueError(f"resize_mode must be one of {MODES}, got {mode!r}")


def preprocess_frames(frames: Tensor, size: int, mode: str, multiple: int = 2 * PATCH) -> Tensor:
    """frames ``[B,S,3,H,W]`` in [0,1] → ``[B,S,3,H',W']`` in [0,1] with H', W' multiples of 14."""
    B, S, C, H, W = frames.shape
    h, w = target_size(H, W, size, mode, multiple)
    x = frames.reshape(B * S, C, H, W)
    if (h, w) != (H, W):
        x = F.interpolate(x.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    if mode == "crop" and h > size:
        top = (h - size) // 2
        x = x[:, :, top : top + size]
    elif mode == "pad" and (h < size or w < size):
        ph, pw = size - h, size - w
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=1.0)
    return x.reshape(B, S, C, *x.shape[-2:]).to(torch.float32)
