"""The DUSt3R training loss: ``Regr3D(L21, norm_mode='avg_dis')`` and its confidence-weighted
``ConfLoss`` (α = 0.2), for a batch of view pairs.

Ground truth per view: ``camera_pose [B,4,4]`` camera-to-world, ``pts3d [B,H,W,3]`` world points,
``valid_mask [B,H,W]`` bool. Predictions: ``pred1["pts3d"]`` and ``pred2["pts3d_in_other_view"]``
(``[B,H,W,3]``, both in view 1's camera frame), ``conf [B,H,W]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _to_camera1(pose1: Tensor, pts: Tensor) -> Tensor:
    """World points ``[B,H,W,3]`` → camera-1 frame with ``pose1 [B,4,4]`` camera-to-world."""
    rot, t = pose1[:, :3, :3], pose1[:, :3, 3]
    return torch.einsum("bji,bhwj->bhwi", rot, pts - t[:, None, None, :])


def _avg_dis_normalize(pts1: Tensor, pts2: Tensor, valid1: Tensor, valid2: Tensor) -> tuple[Tensor, Tensor]:
    """Divide both views' points by the mean distance to the origin over the valid points of both
    views (per batch element, floored at 1e-8)."""
    d1 = torch.where(valid1, pts1.norm(dim=-1), torch.zeros((), dtype=pts1.dtype)).flatten(1)
    d2 = torch.where(valid2, pts2.norm(dim=-1), torch.zeros((), dtype=pts2.dtype)).flatten(1)
    n = valid1.flatten(1).sum(1) + valid2.flatten(1).sum(1)
    s = ((d1.sum(1) + d2.sum(1)) / (n + 1e-8)).clamp(min=1e-8)[:, None, None, None]
    return pts1 / s, pts2 / s


def regr3d_pixel_losses(pred1: dict, pred2: dict, gt1: dict, gt2: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-valid-pixel Euclidean errors after ``avg_dis`` normalisation of prediction and GT.

    Returns ``(l1 [n1], l2 [n2], valid1 [B,H1,W1], valid2 [B,H2,W2])``.
    """
    pose1 = gt1["camera_pose"].to(pred1["pts3d"].dtype)
    g1 = _to_camera1(pose1, gt1["pts3d"].to(pose1.dtype))
    g2 = _to_camera1(pose1, gt2["pts3d"].to(pose1.dtype))
    v1, v2 = gt1["valid_mask"].bool(), gt2["valid_mask"].bool()
    p1, p2 = _avg_dis_normalize(pred1["pts3d"], pred2["pts3d_in_other_view"], v1, v2)
    g1, g2 = _avg_dis_normalize(g1, g2, v1, v2)
    l1 = (p1[v1] - g1[v1]).norm(dim=-1)
    l2 = (p2[v2] - g2[v2]).norm(dim=-1)
    return l1, l2, v1, v2


def regr3d_loss(pred1: dict, pred2: dict, gt1: dict, gt2: dict) -> tuple[Tensor, dict[str, float]]:
    """``Regr3D(L21, 'avg_dis')`` = mean(l₁) + mean(l₂); returns ``(loss, details)``."""
    l1, l2, _, _ = regr3d_pixel_losses(pred1, pred2, gt1, gt2)
    m1, m2 = l1.mean(), l2.mean()
    return m1 + m2, {"Regr3D_pts3d_1": float(m1), "Regr3D_pts3d_2": float(m2)}


def conf_loss(pred1: dict, pred2: dict, gt1: dict, gt2: dict, alpha: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """``ConfLoss(Regr3D(L21,'avg_dis'), α)``: per view ``mean(l·conf − α·log conf)`` over its
    valid pixels; the two view terms are summed. Returns ``(loss, details)``."""
    l1, l2, v1, v2 = regr3d_pixel_losses(pred1, pred2, gt1, gt2)
    c1, c2 = pred1["conf"][v1], pred2["conf"][v2]
    t1 = (l1 * c1 - alpha * torch.log(c1)).mean()
    t2 = (l2 * c2 - alpha * torch.log(c2)).mean()
    details = {
        "conf_loss_1": float(t1),
        "conf_loss2": float(t2),
        "Regr3D_pts3d_1": float(l1.mean()),
        "Regr3D_pts3d_2": float(l2.mean()),
    }
    return t1 + t2, details
