"""Pure loss functions of the GeoVR objectives and the metrics they report.

Shapes: ``B`` batch, ``S`` frames, ``H, W`` depth-map pixels, ``h, w`` a token grid, ``C`` channels.
Targets (teacher outputs) are always detached: no gradient ever reaches a teacher tensor. Losses are
computed in float32 whatever the input dtype (e.g. bf16 heads under autocast). Every
function is deterministic and free of module state so it can be checked against hand-computed values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# -- camera -----------------------------------------------------------------------------------------


def camera_pose_loss(pred: Tensor, target: Tensor, *, weights=(1.0, 1.0, 0.5), clamp: float = 100.0,
                     quat_sign_invariant: bool = False) -> dict[str, Tensor]:
    """L1 loss between pose encodings ``pred`` and ``target`` ``[B,S,9]`` (translation 3, quaternion 4,
    fov 2).

    ``loss_T`` = mean of ``min(|t−t*|, clamp)`` per element; ``loss_R`` = mean ``|q−q*|`` per element, or with
    ``quat_sign_invariant`` the per-frame ``min(Σ|q−q*|, Σ|q+q*|) / 4`` averaged over frames;
    ``loss_FL`` = mean ``|fov−fov*|``. ``loss = w_T·loss_T + w_R·loss_R + w_FL·loss_FL`` with
    ``weights = (w_T, w_R, w_FL)``. Returns scalars under keys ``loss_T, loss_R, loss_FL, loss``.
    """
    if pred.shape != target.shape or pred.shape[-1] != 9:
        raise ValueError(f"pred and target must both be [B,S,9], got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.float(), target.detach().float()
    loss_T = (pred[..., :3] - target[..., :3]).abs().clamp(max=clamp).mean()
    q, qt = pred[..., 3:7], target[..., 3:7]
    if quat_sign_invariant:
        loss_R = torch.minimum((q - qt).abs().sum(-1), (q + qt).abs().sum(-1)).mean() / 4
    else:
        loss_R = (q - qt).abs().mean()
    loss_FL = (pred[..., 7:] - target[..., 7:]).abs().mean()
    w_T, w_R, w_FL = weights
    return {"loss_T": loss_T, "loss_R": loss_R, "loss_FL": loss_FL,
            "loss": w_T * loss_T + w_R * loss_R + w_FL * loss_FL}


def rotation_error_deg(q_pred: Tensor, q_target: Tensor) -> Tensor:
    """Mean geodesic angle in degrees between quaternions ``[...,4]`` (normalised here; sign-invariant)."""
    a = F.normalize(q_pred.detach().float(), dim=-1, eps=1e-8)
    b = F.normalize(q_target.detach().float(), dim=-1, eps=1e-8)
    dot = (a * b).sum(-1).abs().clamp(max=1.0)
    return torch.rad2deg(2 * torch.acos(dot)).mean()


# -- depth ------------------------------------------------------------------------------------------


def _valid_mask(target: Tensor, mask: Tensor | None) -> Tensor:
    valid = torch.isfinite(target) & (target > 0)
    return valid if mask is None else valid & mask.bool()


def _zero(pred: Tensor) -> Tensor:
    return pred.sum() * 0.0  # keeps the graph when nothing is valid


def gradient_loss(diff: Tensor, mask: Tensor, scale: int, *, clamp: float = 100.0) -> Tensor | None:
    """One scale of the gradient-matching loss on ``diff = pred − target`` ``[B,S,H,W]``.

    The maps are subsampled with stride ``2**scale``; horizontal and vertical finite differences of
    ``diff`` are taken between neighbouring samples that are both valid under ``mask`` ``[B,S,H,W]``
    (bool). Returns ``(Σ min(|∂x|, clamp) + Σ min(|∂y|, clamp)) / (#x pairs + #y pairs)``, or ``None``
    when the subsampled map has no valid pair.
    """
    step = 2 ** scale
    d, m = diff[..., ::step, ::step], mask[..., ::step, ::step]
    mx = m[..., :, 1:] & m[..., :, :-1]
    my = m[..., 1:, :] & m[..., :-1, :]
    count = mx.sum() + my.sum()
    if int(count) == 0:
        return None
    gx = (d[..., :, 1:] - d[..., :, :-1]).abs().clamp(max=clamp)
    gy = (d[..., 1:, :] - d[..., :-1, :]).abs().clamp(max=clamp)
    return ((gx * mx).sum() + (gy * my).sum()) / count


def multiscale_gradient_loss(pred: Tensor, target: Tensor, mask: Tensor, *, scales: int = 4,
                             clamp: float = 100.0) -> Tensor:
    """Mean of :func:`gradient_loss` over scales ``0..scales-1`` that have valid pairs (0 if none)."""
    diff = torch.where(mask, pred - target, torch.zeros_like(pred))
    terms = [t for s in range(scales) if (t := gradient_loss(diff, mask, s, clamp=clamp)) is not None]
    return torch.stack(terms).mean() if terms else _zero(pred)


def trimmed_l1(err: Tensor, keep_fraction: float) -> Tensor:
    """Mean of the ``ceil(keep_fraction · n)`` smallest of the ``n`` values in ``err`` (1-D): the largest
    ``1 − keep_fraction`` share of the errors is dropped (at least one value is kept)."""
    n = err.numel()
    keep = min(n, max(1, math.ceil(keep_fraction * n - 1e-9)))
    if keep == n:
        return err.mean()
    dropped = torch.topk(err, n - keep, largest=True, sorted=False).values  # the small share: cheap top-k
    return (err.sum() - dropped.sum()) / keep


def depth_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, drop_quantile: float = 0.98,
               grad_scales: int = 4, grad_weight: float = 1.0, clamp: float = 100.0) -> dict[str, Tensor]:
    """Robust L1 + multi-scale gradient loss between depth maps ``pred`` and ``target`` ``[B,S,H,W]``.

    Valid pixels: ``target`` finite and > 0 (and ``mask`` ``[B,S,H,W]`` when given). ``loss_l1`` is the
    mean of per-pixel ``min(|pred−target|, clamp)`` over the valid pixels of the whole batch after
    dropping the largest ``1 − drop_quantile`` share (:func:`trimmed_l1`). ``loss_grad`` is
    :func:`multiscale_gradient_loss` with ``grad_scales`` scales. ``loss = loss_l1 + grad_weight·loss_grad``.
    """
    pred, target = pred.float(), target.detach().float()
    valid = _valid_mask(target, mask)
    if not bool(valid.any()):
        z = _zero(pred)
        return {"loss_l1": z, "loss_grad": z, "loss": z}
    err = (pred - target).abs().clamp(max=clamp)[valid]
    l1 = trimmed_l1(err, drop_quantile)
    grad = multiscale_gradient_loss(pred, target, valid, scales=grad_scales, clamp=clamp)
    return {"loss_l1": l1, "loss_grad": grad, "loss": l1 + grad_weight * grad}


def silog_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, lam: float = 0.85,
               eps: float = 1e-6) -> dict[str, Tensor]:
    """Scale-invariant log loss ``sqrt(mean(g²) − lam·mean(g)²)`` with ``g = log pred − log target`` over
    valid pixels (``[B,S,H,W]``; both clamped below at ``eps``). Returns ``loss_silog`` and ``loss``."""
    pred, target = pred.float(), target.detach().float()
    valid = _valid_mask(target, mask)
    if not bool(valid.any()):
        z = _zero(pred)
        return {"loss_silog": z, "loss": z}
    g = torch.log(pred.clamp(min=eps)[valid]) - torch.log(target.clamp(min=eps)[valid])
    loss = torch.sqrt((g.pow(2).mean() - lam * g.mean().pow(2)).clamp(min=1e-12))
    return {"loss_silog": loss, "loss": loss}


def conf_depth_loss(pred: Tensor, conf: Tensor, target: Tensor, mask: Tensor | None = None, *,
                    gamma: float = 1.0, alpha: float = 0.2, grad_scales: int = 4, grad_weight: float = 1.0,
                    clamp: float = 100.0) -> dict[str, Tensor]:
    """Confidence-weighted depth loss: mean over valid pixels of ``gamma·err·c − alpha·log c`` with
    ``err = min(|pred−target|, clamp)`` and the predicted confidence ``c`` ``[B,S,H,W]`` (> 0, e.g.
    ``1 + exp(·)``), plus ``grad_weight·`` :func:`multiscale_gradient_loss`. Returns ``loss_conf``,
    ``loss_grad``, ``loss``."""
    pred, conf, target = pred.float(), conf.float(), target.detach().float()
    valid = _valid_mask(target, mask)
    if not bool(valid.any()):
        z = _zero(pred) + _zero(conf)
        return {"loss_conf": z, "loss_grad": z, "loss": z}
    err = (pred - target).abs().clamp(max=clamp)[valid]
    c = conf[valid]
    lc = (gamma * err * c - alpha * torch.log(c)).mean()
    grad = multiscale_gradient_loss(pred, target, valid, scales=grad_scales, clamp=clamp)
    return {"loss_conf": lc, "loss_grad": grad, "loss": lc + grad_weight * grad}


def depth_metrics(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """``abs_rel`` = mean ``|pred−target|/target`` and ``delta1`` = share of pixels with
    ``max(pred/target, target/pred) < 1.25``, over valid pixels of ``[B,S,H,W]`` maps."""
    pred, target = pred.detach().float(), target.detach().float()
    valid = _valid_mask(target, mask) & (pred > 0)
    if not bool(valid.any()):
        return {"abs_rel": float("nan"), "delta1": float("nan")}
    p, t = pred[valid], target[valid]
    return {"abs_rel": float(((p - t).abs() / t).mean()),
            "delta1": float((torch.maximum(p / t, t / p) < 1.25).float().mean())}


# -- metric scale -----------------------------------------------------------------------------------


@torch.no_grad()
def scale_target(teacher_depth: Tensor, metric_depth: Tensor, teacher_conf: Tensor | None = None,
                 valid: Tensor | None = None, *, min_metric: float = 0.01, min_teacher: float = 1e-3) -> Tensor:
    """Per-video factor turning teacher depth into metres: least squares ``⟨m, d⟩ / ⟨d, d⟩`` → ``[B]``.

    ``teacher_depth`` d, ``metric_depth`` m, ``teacher_conf`` and ``valid`` (e.g. a non-sky mask, bool)
    are ``[B,S,H,W]``. Pixels used: ``conf ≥ median(conf)`` (``torch.median`` over all pixels of the
    video, i.e. the lower middle value), ``m > min_metric``, ``d > min_teacher``, finite, and ``valid``.
    A video with no such pixel gets ``nan``.
    """
    d, m = teacher_depth.float(), metric_depth.float()
    B = d.shape[0]
    sel = torch.isfinite(d) & torch.isfinite(m) & (m > min_metric) & (d > min_teacher)
    if valid is not None:
        sel = sel & valid.bool()
    if teacher_conf is not None:
        c = teacher_conf.float().reshape(B, -1)
        med = c.median(dim=1).values.view(B, *([1] * (d.ndim - 1)))
        sel = sel & (teacher_conf.float() >= med)
    d0, m0 = torch.where(sel, d, 0.0).reshape(B, -1), torch.where(sel, m, 0.0).reshape(B, -1)
    num, den = (m0 * d0).sum(1), (d0 * d0).sum(1)
    return torch.where(den > 0, num / den.clamp(min=1e-30), torch.full_like(num, float("nan")))


def scale_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``mean |log1p(pred) − log1p(target)|`` over ``[B]`` scales (target detached)."""
    return (torch.log1p(pred.float()) - torch.log1p(target.detach().float())).abs().mean()


# -- feature distillation ---------------------------------------------------------------------------


def cosine_distill_loss(student: Tensor, teacher: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Mean over tokens of ``1 − cos(student, teacher)`` on ``[B,S,h,w,C]`` features (teacher detached)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} features differ in shape")
    cos = F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1, eps=eps)
    return (1 - cos).mean()
