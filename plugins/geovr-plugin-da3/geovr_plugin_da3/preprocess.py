"""Frame resizing shared by the ``da3`` and ``da3_metric`` teachers (tensors in, tensors out).

The long side becomes ``size``, the short side ``round(short · size / long / multiple) · multiple`` (at
least ``multiple``), bicubic with antialiasing, clamped to [0, 1]; frames already at that size pass
through unchanged. With ``size = 504`` and ``multiple = 28`` this gives the released teacher frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def target_size(H: int, W: int, size: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` of the working resolution for ``H×W`` frames."""
    if W >= H:
        return max(multiple, round(H * size / W / multiple) * multiple), size
    return size, max(multiple, round(W * size / H / multiple) * multiple)


def preprocess_frames(frames: Tensor, size: int, multiple: int) -> Tensor:
    """frames ``[B,S,3,H,W]`` in [0,1] → ``[B,S,3,h,w]`` float32 in [0,1]."""
    B, S, C, H, W = frames.shape
    h, w = target_size(H, W, size, multiple)
    x = frames.reshape(B * S, C, H, W).float()
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    return x.reshape(B, S, C, h, w).to(torch.float32)
