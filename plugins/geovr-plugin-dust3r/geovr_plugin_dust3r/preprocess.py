"""Image preprocessing of the reference DUSt3R inference (``load_images``), on tensors.

* ``size == 224``: resize so the short side is 224 (the long side is ``round(224·long/short)``, the
  short side then ``round(short·long'/long)``), centre-crop a 224×224 square;
* any other ``size`` (512 for the official model): resize so the long side is ``size``
  (``round(side·size/long)``), centre-crop both sides down to multiples of 16 around
  ``(W//2, H//2)``; a square image is cropped to 4:3 unless ``square_ok``.

With ``crop=False`` (what the GeoVR teacher uses by default, so that it sees the student's whole field of
view) nothing is cut: the whole frame is resized so the long side is ``size`` and the short side the
nearest multiple of 16 to ``short·size/long`` (the 16-pixel patch grid needs both sides multiples of 16;
the aspect ratio changes by less than one patch).

Resizing uses antialiased bicubic interpolation (the reference uses PIL LANCZOS/BICUBIC), and the
result is mapped from [0,1] to [-1,1].
"""

from __future__ import annotations


def plan(
    H: int, W: int, size: int = 512, square_ok: bool = False, crop: bool = True
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize target ``(H', W')`` and crop box ``(top, left, height, width)`` for an ``H×W`` image
    (with ``crop=False`` the box is the whole resized image)."""
    if not crop:
        long_side = max(H, W)
        rh = max(16, round(H * size / long_side / 16) * 16)
        rw = max(16, round(W * size / long_side / 16) * 16)
        return (rh, rw), (0, 0, rh, rw)
    long_side = round(224 * max(W / H, H / W)) if size == 224 else size  # the reference rounds twice
    rh, rw = round(H * long_side / max(H, W)), round(W * long_side / max(H, W))
    cx, cy = rw // 2, rh // 2
    if size == 224:
        half = min(cx, cy)
        return (rh, rw), (cy - half, cx - half, 2 * half, 2 * half)
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if not square_ok and rw == rh:
        halfh = (3 * halfw // 4) // 8 * 8  # 4:3 (exact for 512; kept a multiple of 16 for other sizes)
    if halfw == 0 or halfh == 0:
        raise ValueError(f"image {H}x{W} resized to {rh}x{rw} is smaller than one 16-pixel patch")
    return (rh, rw), (cy - halfh, cx - halfw, 2 * halfh, 2 * halfw)


def preprocess(frames, size: int = 512, square_ok: bool = False, crop: bool = True):
    """frames ``[N,3,H,W]`` in [0,1] → ``[N,3,H',W']`` in [-1,1] with ``H', W'`` multiples of 16."""
    import torch.nn.functional as F

    H, W = frames.shape[-2:]
    (rh, rw), (top, left, ch, cw) = plan(H, W, size, square_ok, crop)
    x = frames.float()
    if (rh, rw) != (H, W):
        x = F.interpolate(x, size=(rh, rw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    x = x[..., top : top + ch, left : left + cw]
    return x * 2 - 1
