"""Camera and point-map geometry shared by teachers, objectives and the synthetic world.

Conventions (the VGGT ones, used throughout geovr):

* extrinsics are **camera-from-world** ``[R | t]`` (``[...,3,4]``) with OpenCV camera axes
  (x right, y down, z forward): a world point ``X`` maps to ``R @ X + t``;
* intrinsics are in pixels, ``[[fx,0,cx],[0,fy,cy],[0,0,1]]``;
* quaternions are **xyzw** (scalar last);
* a pose encoding is ``[t(3), q_xyzw(4), fov_h, fov_w]`` (``[...,9]``), ``fov_h`` first, with
  ``fov_h = 2·atan((H/2)/fy)`` and ``fov_w = 2·atan((W/2)/fx)`` for ``image_size_hw = (H, W)``;
* pixel ``(u, v)`` = (column, row) with pixel centres at integer coordinates.

This module imports torch; ``import geovr`` does not import it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "quat_to_mat",
    "mat_to_quat",
    "extri_intri_to_pose_encoding",
    "pose_encoding_to_extri_intri",
    "closed_form_inverse_se3",
    "depth_to_camera_points",
    "unproject_depth",
    "normalize_scene",
    "NormalizedScene",
]


def quat_to_mat(quat: Tensor) -> Tensor:
    """Rotation matrices from quaternions.

    quat: ``[...,4]`` in xyzw order; need not be unit length (the formula uses ``s = 2/|q|²``, so
    ``q`` and ``c·q`` give the same rotation). Returns ``[...,3,3]``.
    """
    x, y, z, w = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - s * (y * y + z * z),
        s * (x * y - z * w),
        s * (x * z + y * w),
        s * (x * y + z * w),
        1 - s * (x * x + z * z),
        s * (y * z - x * w),
        s * (x * z - y * w),
        s * (y * z + x * w),
        1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quat.shape[:-1] + (3, 3))


def mat_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternions (xyzw, ``w >= 0``) from rotation matrices ``[...,3,3]`` → ``[...,4]``.

    Branch-free: the four candidate quaternions built from ``1 ± m00 ± m11 ± m22`` are computed and
    the best conditioned one (largest diagonal term, denominator floored at 0.1) is kept.
    """
    if rot.shape[-2:] != (3, 3):
        raise ValueError(f"mat_to_quat expects [...,3,3], got {tuple(rot.shape)}")
    lead = rot.shape[:-2]
    m = rot.reshape(lead + (9,)).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    root = torch.sqrt(torch.clamp(diag, min=0.0))  # 2|w|, 2|x|, 2|y|, 2|z| (0 where negative)
    # candidate k, scaled by root_k, in wxyz order
    cands = torch.stack(
        [
            torch.stack([root[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, root[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, root[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, root[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )
    cands = cands / (2.0 * root.clamp(min=0.1))[..., None]
    best = root.argmax(dim=-1)
    wxyz = torch.gather(cands, -2, best[..., None, None].expand(lead + (1, 4))).squeeze(-2)
    xyzw = torch.cat([wxyz[..., 1:], wxyz[..., :1]], dim=-1)
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)


def extri_intri_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_size_hw) -> Tensor:
    """Pose encoding ``[B,S,9]`` = ``[t(3), q_xyzw(4), fov_h, fov_w]``.

    extrinsics: ``[B,S,3,4]`` camera-from-world; intrinsics: ``[B,S,3,3]`` pixels;
    image_size_hw: ``(H, W)`` of the image the intrinsics refer to. Leading dims may be any.
    """
    H, W = image_size_hw
    t = extrinsics[..., :3, 3]
    q = mat_to_quat(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, q, fov_h[..., None], fov_w[..., None]], dim=-1).float()


def pose_encoding_to_extri_intri(pose_enc: Tensor, image_size_hw) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`extri_intri_to_pose_encoding`.

    pose_enc: ``[B,S,9]`` (any leading dims). Returns ``(extrinsics [B,S,3,4], intrinsics [B,S,3,3])``.
    The quaternion need not be unit; the principal point is the image centre ``(W/2, H/2)``. There is
    no clamping: a FoV above π yields a negative focal length.
    """
    H, W = image_size_hw
    t, q, fov_h, fov_w = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7], pose_enc[..., 8]
    extrinsics = torch.cat([quat_to_mat(q), t[..., None]], dim=-1)
    fy = (H / 2.0) / torch.tan(fov_h / 2.0)
    fx = (W / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def closed_form_inverse_se3(transform: Tensor) -> Tensor:
    """Inverse of rigid transforms ``[...,3,4]`` or ``[...,4,4]`` → ``[...,4,4]``:
    ``[R | t]⁻¹ = [Rᵀ | −Rᵀ t]`` (no general matrix inverse)."""
    if transform.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"closed_form_inverse_se3 expects [...,3,4] or [...,4,4], got {tuple(transform.shape)}")
    rot_t = transform[..., :3, :3].transpose(-1, -2)
    t = transform[..., :3, 3:]
    out = torch.zeros(transform.shape[:-2] + (4, 4), dtype=transform.dtype, device=transform.device)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = -rot_t @ t
    out[..., 3, 3] = 1.0
    return out


def depth_to_camera_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-frame points ``[...,H,W,3]`` from depth ``[...,H,W]`` (z along the optical axis) and
    intrinsics ``[...,3,3]``: ``x = (u − cx)·d/fx``, ``y = (v − cy)·d/fy``, ``z = d``."""
    H, W = depth.shape[-2:]
    v, u = torch.meshgrid(
        torch.arange(H, dtype=depth.dtype, device=depth.device),
        torch.arange(W, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    fx = intrinsics[..., 0, 0][..., None, None]
    fy = intrinsics[..., 1, 1][..., None, None]
    cx = intrinsics[..., 0, 2][..., None, None]
    cy = intrinsics[..., 1, 2][..., None, None]
    return torch.stack([(u - cx) * depth / fx, (v - cy) * depth / fy, depth], dim=-1)


def unproject_depth(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
    """World points ``[B,S,H,W,3]`` from depth ``[B,S,H,W]`` (a trailing singleton channel
    ``[B,S,H,W,1]`` is accepted), camera-from-world extrinsics ``[B,S,3,4]`` and intrinsics ``[B,S,3,3]``:
    ``X = Rᵀ (x_c − t)``. Leading dims may be any, as long as they agree."""
    if depth.ndim == extrinsics.ndim + 1 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    cam = depth_to_camera_points(depth, intrinsics)
    rot = extrinsics[..., :3, :3][..., None, None, :, :]  # [...,1,1,3,3]
    t = extrinsics[..., :3, 3][..., None, None, :]
    return ((cam - t)[..., None, :] @ rot)[..., 0, :]  # row-vector form of Rᵀ(x − t)


class NormalizedScene(NamedTuple):
    """Output of :func:`normalize_scene`; shapes as its inputs, ``scale`` is ``[B]``."""

    extrinsics: Tensor
    depth: Tensor
    world_points: Tensor
    camera_points: Tensor
    scale: Tensor


def normalize_scene(
    extrinsics: Tensor, depth: Tensor, intrinsics: Tensor, valid_mask: Tensor, world_points: Tensor | None = None
) -> NormalizedScene:
    """Normalise ground truth the way the VGGT trainer does before its losses.

    extrinsics ``[B,S,3,4]`` camera-from-world, depth ``[B,S,H,W]``, intrinsics ``[B,S,3,3]``,
    valid_mask ``[B,S,H,W]`` bool; world_points ``[B,S,H,W,3]`` (unprojected from depth when omitted).

    1. express everything in the first camera's frame: ``E_i' = E_i · E_0⁻¹`` (so ``E_0' = I``),
       ``X' = R_0 X + t_0``;
    2. per scene, ``s = Σ_valid ‖X'‖ / (N_valid + 1e-3)`` clamped to ``[1e-6, 1e6]``;
    3. divide ``X'``, the translations of ``E'``, the camera points and the depths by ``s``;
    4. replace NaN/Inf by 0. Intrinsics are unchanged.

    Returns :class:`NormalizedScene` (extrinsics ``[B,S,3,4]``, depth ``[B,S,H,W]``, world_points
    ``[B,S,H,W,3]``, camera_points ``[B,S,H,W,3]``, scale ``[B]``).
    """
    if world_points is None:
        world_points = unproject_depth(depth, extrinsics, intrinsics)
    cam_points = depth_to_camera_points(depth, intrinsics)
    B = extrinsics.shape[0]
    first = extrinsics[:, :1]  # [B,1,3,4]
    inv_first = closed_form_inverse_se3(first)  # [B,1,4,4]
    ext = extrinsics @ inv_first  # [B,S,3,4] = [R|t]·E0⁻¹
    r0 = first[..., :3, :3][:, :, None, None]  # [B,1,1,1,3,3]
    t0 = first[..., :3, 3][:, :, None, None]  # [B,1,1,1,3]
    pts = (r0 @ world_points[..., None])[..., 0] + t0
    mask = valid_mask.to(pts.dtype)
    dist = pts.norm(dim=-1)
    total = (dist * mask).reshape(B, -1).sum(-1)
    count = mask.reshape(B, -1).sum(-1)
    scale = (total / (count + 1e-3)).clamp(1e-6, 1e6)
    s4 = scale.view(B, 1, 1, 1)
    ext = ext.clone()
    ext[..., :3, 3] = ext[..., :3, 3] / scale.view(B, 1, 1)
    pts = pts / s4[..., None]
    cam_points = cam_points / s4[..., None]
    depth = depth / s4

    def clean(t: Tensor) -> Tensor:
        return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)

    return NormalizedScene(clean(ext), clean(depth), clean(pts), clean(cam_points), scale)
