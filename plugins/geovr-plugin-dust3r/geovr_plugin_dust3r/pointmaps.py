"""From pairwise DUSt3R pointmaps to per-frame depth, focal length and relative camera poses.

Independent of the network: the functions take pointmaps ``[...,H,W,3]`` and confidences
``[...,H,W]`` and can be fed ground truth. Conventions are those of :mod:`geovr.geometry` (OpenCV
camera axes, pixel centres at integer coordinates, principal point at the image centre ``(W/2, H/2)``).

Pairing. Every frame ``i`` has an *anchor* ``a(i)`` (``a(ref) = ref``); the network runs on the pairs
``(a(i), i)`` and ``(i, a(i))``. With the ``"first"`` strategy every anchor is frame 0; with
``"keyframes"`` every ``n``-th frame is a keyframe anchored to the previous keyframe and the other frames
are anchored to their keyframe. Frames are processed in index order, so an anchor is always resolved
before the frames that use it.

Per frame ``i`` with anchor ``a`` (``G_a``: ``a``'s own pointmap at the global scale, ``T_a``: its
camera-to-reference pose):

1. pair ``(a, i)``: view 1's pointmap ``P`` (``a``, frame ``a``) and view 2's ``Q`` (``i``, frame ``a``)
   share an arbitrary scale; ``α = argmin Σ w‖G_a − αP‖²`` brings them to the global scale;
2. pair ``(i, a)``: view 1's pointmap ``X`` (``i`` in its own camera);
3. a weighted similarity (Umeyama) ``αQ ≈ s·R·X + t`` gives camera ``i`` → camera ``a``
   (``R``, ``t``) and the scale ``s`` of frame ``i``'s own pointmap; ``G_i = s·X``, depth ``= G_i.z``;
4. ``T_i = T_a ∘ (R, t)``; the points of frame ``i`` in the reference frame are ``T_a(αQ)``.

The global scale is that of the reference frame's own pointmap from the pair ``(ref, ref)``. All fits
(``α``, the similarity, the focal length) weight pixels by log-confidence (the similarity by the
product of the two pointmaps' log-confidences).
"""

from __future__ import annotations

import torch
from torch import Tensor

from geovr.geometry import closed_form_inverse_se3


def anchors(num_frames: int, strategy: str = "first", keyframe_interval: int = 8) -> list[int]:
    """Anchor index of every frame (``anchors(S)[0] == 0``); see the module docstring."""
    if strategy == "first":
        return [0] * num_frames
    if strategy == "keyframes":
        n = max(1, int(keyframe_interval))
        return [max(0, i - n) if i % n == 0 else (i // n) * n for i in range(num_frames)]
    raise ValueError(f"unknown pairing strategy {strategy!r} (expected 'first' or 'keyframes')")


def pixel_grid(H: int, W: int, *, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """``(u, v)`` pixel coordinates ``[H,W]`` each (u = column, v = row), centred on the principal
    point ``(W/2, H/2)``."""
    v, u = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=device), torch.arange(W, dtype=dtype, device=device), indexing="ij"
    )
    return u - W / 2, v - H / 2


def estimate_focal(pts: Tensor, weight: Tensor | None = None, iters: int = 10, min_depth: float = 1e-6) -> Tensor:
    """Focal length (pixels, ``fx = fy``) of pointmaps ``[N,H,W,3]`` in their own camera frame.

    Minimises ``Σ w·‖(u − cx, v − cy) − f·(x/z, y/z)‖`` (principal point at the centre) by
    iteratively reweighted least squares started from the least-squares solution (Weiszfeld steps,
    robust to outliers). Pixels with ``z <= min_depth`` are ignored. Returns ``[N]`` (float64).
    """
    N, H, W, _ = pts.shape
    pts = pts.double()
    w = torch.ones(pts.shape[:-1], dtype=torch.float64, device=pts.device) if weight is None else weight.double()
    z = pts[..., 2]
    valid = z > min_depth
    w = torch.where(valid, w, torch.zeros_like(w)).reshape(N, -1)
    zs = torch.where(valid, z, torch.ones_like(z))
    u, v = pixel_grid(H, W, device=pts.device)
    a = torch.stack([(pts[..., 0] / zs), (pts[..., 1] / zs)], dim=-1).reshape(N, -1, 2)  # x/z, y/z
    b = torch.stack([u.expand(N, H, W), v.expand(N, H, W)], dim=-1).reshape(N, -1, 2)
    ww = w
    for _ in range(max(1, iters)):
        focal = (ww[..., None] * a * b).sum((1, 2)) / (ww[..., None] * a * a).sum((1, 2)).clamp(min=1e-12)
        resid = (b - focal[:, None, None] * a).norm(dim=-1)
        ww = w / resid.clamp(min=1e-3)
    return focal


def scale_fit(target: Tensor, source: Tensor, weight: Tensor) -> Tensor:
    """``α = argmin Σ w‖target − α·source‖²`` over the pixels; inputs ``[N,...,3]``/``[N,...]`` → ``[N]``."""
    N = target.shape[0]
    t, s, w = target.reshape(N, -1, 3).double(), source.reshape(N, -1, 3).double(), weight.reshape(N, -1).double()
    return (w * (t * s).sum(-1)).sum(1) / (w * (s * s).sum(-1)).sum(1).clamp(min=1e-18)


def umeyama(src: Tensor, dst: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted similarity ``dst ≈ s·R·src + t`` (Umeyama 1991) for point sets ``[N,P,3]`` with
    weights ``[N,P]``. Returns ``(s [N], R [N,3,3], t [N,3])`` in float64."""
    src, dst, w = src.double(), dst.double(), weight.double()
    wsum = w.sum(1, keepdim=True).clamp(min=1e-18)
    mu_s = (w[..., None] * src).sum(1) / wsum
    mu_d = (w[..., None] * dst).sum(1) / wsum
    cs, cd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = torch.einsum("np,npi,npj->nij", w, cd, cs) / wsum[..., None]
    U, D, Vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(U) * torch.linalg.det(Vh))
    fix = torch.ones_like(D)
    fix[:, 2] = torch.where(sign == 0, torch.ones_like(sign), sign)
    R = U @ torch.diag_embed(fix) @ Vh
    var_s = (w * (cs * cs).sum(-1)).sum(1) / wsum[:, 0]
    s = (D * fix).sum(-1) / var_s.clamp(min=1e-18)
    t = mu_d - s[:, None] * torch.einsum("nij,nj->ni", R, mu_s)
    return s, R, t


def _apply(R: Tensor, t: Tensor, pts: Tensor) -> Tensor:
    """``R·pts + t`` for ``R [N,3,3]``, ``t [N,3]``, ``pts [N,...,3]``."""
    shape = pts.shape
    flat = pts.reshape(shape[0], -1, 3)
    return (torch.einsum("nij,npj->npi", R, flat) + t[:, None]).reshape(shape)


def _weight(conf: Tensor) -> Tensor:
    """Fitting weights from DUSt3R confidences (``conf > 1``): ``log(conf)``, in float64. The raw
    confidence ``1 + exp(c)`` spans orders of magnitude and would let a few pixels dominate."""
    return torch.log(conf.double().clamp(min=1.0 + 1e-6))


def frames_from_pairs(
    fwd: dict[str, Tensor], bwd: dict[str, Tensor], anchor: list[int], *, focal_iters: int = 10
) -> dict[str, Tensor]:
    """Per-frame geometry from the two pair directions of every frame (see module docstring).

    ``fwd`` = predictions of the pairs ``(a(i), i)``: ``pts1 [B,S,H,W,3]`` (anchor, own frame),
    ``conf1 [B,S,H,W]``, ``pts2 [B,S,H,W,3]`` (frame i in the anchor's frame), ``conf2``.
    ``bwd`` = pairs ``(i, a(i))``: ``pts1`` (frame i, own frame), ``conf1``.
    Returns ``depth [B,S,H,W]``, ``depth_conf [B,S,H,W]``, ``focal [B,S]``, ``cam_to_ref [B,S,4,4]``,
    ``extrinsics [B,S,3,4]`` (reference-to-camera; reference = frame 0), ``points [B,S,H,W,3]``
    (reference frame), ``own_points [B,S,H,W,3]`` (each frame's own frame, global scale), all float64
    except the confidences.
    """
    B, S, H, W, _ = bwd["pts1"].shape
    if len(anchor) != S or anchor[0] != 0 or any(anchor[i] >= i for i in range(1, S)):
        raise ValueError(f"anchors must be {S} indices with a(0)=0 and a(i)<i, got {anchor}")
    dev = bwd["pts1"].device
    eye = torch.eye(4, dtype=torch.float64, device=dev).expand(B, 4, 4)
    own: list[Tensor] = [None] * S  # [B,H,W,3] global scale
    pose: list[Tensor] = [None] * S  # [B,4,4] camera-to-reference
    points: list[Tensor] = [None] * S
    own[0] = fwd["pts1"][:, 0].double()  # pair (0, 0): the global scale
    pose[0] = eye.clone()
    points[0] = own[0]
    for i in range(1, S):
        a = anchor[i]
        P, Q = fwd["pts1"][:, i].double(), fwd["pts2"][:, i].double()
        alpha = scale_fit(own[a], P, _weight(fwd["conf1"][:, i]))
        Qa = alpha[:, None, None, None] * Q  # frame i's points in camera a, global scale
        X = bwd["pts1"][:, i].double()
        w = (_weight(fwd["conf2"][:, i]) * _weight(bwd["conf1"][:, i])).reshape(B, -1)
        s, R, t = umeyama(X.reshape(B, -1, 3), Qa.reshape(B, -1, 3), w)
        own[i] = s[:, None, None, None] * X
        rel = eye.clone()
        rel[:, :3, :3], rel[:, :3, 3] = R, t
        pose[i] = pose[a] @ rel
        points[i] = _apply(pose[a][:, :3, :3], pose[a][:, :3, 3], Qa)
    own_t = torch.stack(own, 1)
    cam_to_ref = torch.stack(pose, 1)
    conf = bwd["conf1"].clone()
    conf[:, 0] = fwd["conf1"][:, 0]
    focal = estimate_focal(own_t.reshape(B * S, H, W, 3), _weight(conf).reshape(B * S, H, W), iters=focal_iters)
    return {
        "depth": own_t[..., 2],
        "depth_conf": conf,
        "focal": focal.reshape(B, S),
        "cam_to_ref": cam_to_ref,
        "extrinsics": closed_form_inverse_se3(cam_to_ref)[..., :3, :],
        "points": torch.stack(points, 1),
        "own_points": own_t,
    }
