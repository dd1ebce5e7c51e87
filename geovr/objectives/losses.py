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


def camera_pose_loss(
    pred: Tensor, target: Tensor, *, weights=(1.0, 1.0, 0.5), clamp: float = 100.0, quat_sign_invariant: bool = False
) -> dict[str, Tensor]:
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
    return {
        "loss_T": loss_T,
        "loss_R": loss_R,
        "loss_FL": loss_FL,
        "loss": w_T * loss_T + w_R * loss_R + w_FL * loss_FL,
    }


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


def quantile_filter(err: Tensor, keep: float = 0.98, *, min_elements: int = 1000, hard_max: float = 100.0) -> Tensor:
    """The outlier filter of the released depth loss on one sample's per-pixel errors ``err`` (1-D).

    With at most ``min_elements`` values, ``err`` is returned unchanged. Otherwise the threshold is the
    ``k``-th smallest of ``min(err, hard_max)`` with ``k = ceil(keep·(n−1)) + 1``, capped at ``hard_max``;
    the values ``≤`` the threshold are returned, unless fewer than ``min_elements`` remain, in which case
    all values clamped at ``hard_max`` are returned.
    """
    n = err.numel()
    if n <= min_elements:
        return err
    k = min(n, math.ceil(keep * (n - 1)) + 1)
    thresh = min(float(torch.kthvalue(err.detach().clamp(max=hard_max), k).values), hard_max)
    kept = err <= thresh
    if int(kept.sum()) < min_elements:
        return err.clamp(max=hard_max)
    return err[kept]


def gradient_loss(
    diff: Tensor, mask: Tensor, scale: int, *, clamp: float = 100.0, min_valid: int = 10
) -> Tensor | None:
    """One scale of the gradient-matching loss on one sample's ``diff = pred − target`` ``[S,H,W]``.

    The maps are subsampled with stride ``2**scale``; ``None`` (scale skipped) when fewer than
    ``min_valid`` subsampled pixels are valid under ``mask`` (bool, same shape). Otherwise returns
    ``mean min(|∂x diff|, clamp) + mean min(|∂y diff|, clamp)``, each mean over the neighbour pairs whose
    two pixels are valid (a direction without pairs adds 0): the x and y terms are added, not averaged.
    """
    step = 2**scale
    d, m = diff[..., ::step, ::step], mask[..., ::step, ::step]
    if int(m.sum()) < min_valid:
        return None
    mx = m[..., :, 1:] & m[..., :, :-1]
    my = m[..., 1:, :] & m[..., :-1, :]
    out = d.new_zeros(())
    if bool(mx.any()):
        out = out + (d[..., :, 1:] - d[..., :, :-1]).abs().clamp(max=clamp)[mx].mean()
    if bool(my.any()):
        out = out + (d[..., 1:, :] - d[..., :-1, :]).abs().clamp(max=clamp)[my].mean()
    return out


def multiscale_gradient_loss(
    pred: Tensor, target: Tensor, mask: Tensor, *, scales: int = 4, clamp: float = 100.0
) -> Tensor:
    """One sample's mean of :func:`gradient_loss` over the scales ``0..scales-1`` that are not skipped
    (0 when all are). ``pred``, ``target``, ``mask``: ``[S,H,W]``."""
    diff = torch.where(mask, pred - target, torch.zeros_like(pred))
    terms = [t for s in range(scales) if (t := gradient_loss(diff, mask, s, clamp=clamp)) is not None]
    return torch.stack(terms).mean() if terms else _zero(pred)


def depth_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    conf: Tensor | None = None,
    *,
    keep_quantile: float = 0.98,
    min_elements: int = 1000,
    hard_max: float = 100.0,
    grad_scales: int = 4,
    grad_weight: float = 1.0,
    clamp: float = 100.0,
    gamma: float = 1.0,
    alpha: float = 0.2,
) -> dict[str, Tensor]:
    """The released depth loss between ``pred`` and ``target`` ``[B,S,H,W]``, computed per sample (one video)
    and averaged over the samples that have valid pixels.

    Valid pixels: ``target`` finite and > 0 (and ``mask`` ``[B,S,H,W]`` when given). Per sample:
    ``loss_reg`` = mean of :func:`quantile_filter` (``keep_quantile``, ``min_elements``, ``hard_max``) of
    ``|pred − target|``; ``loss_grad`` = :func:`multiscale_gradient_loss` (``grad_scales``, ``clamp``); with a
    predicted confidence ``conf`` ``[B,S,H,W]`` (> 0) also ``loss_conf`` = mean of the filtered
    ``gamma·|pred − target|·conf − alpha·log conf``. ``loss = loss_conf + loss_reg + grad_weight·loss_grad``.
    """
    pred, target = pred.float(), target.detach().float()
    conf = None if conf is None else conf.float()
    valid = _valid_mask(target, mask)
    names = ("loss_reg", "loss_grad") + (("loss_conf",) if conf is not None else ())
    sums: dict[str, list[Tensor]] = {k: [] for k in names}
    for b in range(pred.shape[0]):
        v = valid[b]
        if not bool(v.any()):
            continue
        err = (pred[b] - target[b]).abs()[v]

        def filt(x: Tensor) -> Tensor:
            return quantile_filter(x, keep=keep_quantile, min_elements=min_elements, hard_max=hard_max)

        sums["loss_reg"].append(filt(err).mean())
        if conf is not None:
            c = conf[b][v]
            sums["loss_conf"].append(filt(gamma * err * c - alpha * torch.log(c)).mean())
        sums["loss_grad"].append(multiscale_gradient_loss(pred[b], target[b], v, scales=grad_scales, clamp=clamp))
    if not sums["loss_reg"]:
        z = _zero(pred) + (0.0 if conf is None else _zero(conf))
        return {**{k: z for k in names}, "loss": z}
    out = {k: torch.stack(v).mean() for k, v in sums.items()}
    out["loss"] = out["loss_reg"] + grad_weight * out["loss_grad"] + out.get("loss_conf", 0.0)
    return out


def silog_loss(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, lam: float = 0.85, eps: float = 1e-6
) -> dict[str, Tensor]:
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


def conf_depth_loss(
    pred: Tensor, conf: Tensor, target: Tensor, mask: Tensor | None = None, **options
) -> dict[str, Tensor]:
    """The released confidence variant: :func:`depth_loss` with the predicted confidence ``conf``
    ``[B,S,H,W]`` (> 0, e.g. ``1 + exp(·)``); returns ``loss_conf``, ``loss_reg``, ``loss_grad``, ``loss``."""
    return depth_loss(pred, target, mask, conf, **options)


def depth_metrics(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """``abs_rel`` = mean ``|pred−target|/target`` and ``delta1`` = share of pixels with
    ``max(pred/target, target/pred) < 1.25``, over valid pixels of ``[B,S,H,W]`` maps."""
    pred, target = pred.detach().float(), target.detach().float()
    valid = _valid_mask(target, mask) & (pred > 0)
    if not bool(valid.any()):
        return {"abs_rel": float("nan"), "delta1": float("nan")}
    p, t = pred[valid], target[valid]
    return {
        "abs_rel": float(((p - t).abs() / t).mean()),
        "delta1": float((torch.maximum(p / t, t / p) < 1.25).float().mean()),
    }


# -- metric scale -----------------------------------------------------------------------------------


def median(values: Tensor) -> Tensor:
    """The interpolated median of a 1-D tensor (``torch.quantile(values, 0.5)``, without its size limit)."""
    n = values.numel()
    lo = torch.kthvalue(values, (n - 1) // 2 + 1).values
    hi = torch.kthvalue(values, n // 2 + 1).values
    return (lo + hi) / 2


@torch.no_grad()
def focal_rescale(
    metric_depth: Tensor, intrinsics: Tensor, *, reference: float = 300.0, pixel_ratio: float = 1.0
) -> Tensor:
    """Depth of a model trained at a canonical focal length, turned into metres for the actual camera:
    ``metric_depth · f / reference`` with ``f = pixel_ratio · (fx + fy) / 2`` per frame from ``intrinsics``
    ``[B,S,3,3]`` (``pixel_ratio`` converts their pixels into the metric model's input pixels).
    ``metric_depth``: ``[B,S,H,W]``."""
    f = (intrinsics[..., 0, 0].float() + intrinsics[..., 1, 1].float()) / 2 * pixel_ratio
    return metric_depth.float() * (f / reference).to(metric_depth.device)[..., None, None]


@torch.no_grad()
def scale_target(
    teacher_depth: Tensor,
    metric_depth: Tensor,
    teacher_conf: Tensor | None = None,
    valid: Tensor | None = None,
    *,
    min_metric: float = 0.01,
    min_teacher: float = 1e-3,
    sky_max_depth: float | None = None,
) -> Tensor:
    """Per-video factor turning teacher depth into metres: least squares ``⟨m, d⟩ / ⟨d, d⟩`` → ``[B]``.

    ``teacher_depth`` d, ``metric_depth`` m, ``teacher_conf`` and ``valid`` (bool) are ``[B,S,H,W]``.
    Non-sky pixels: ``m`` finite (a metric teacher marks sky as NaN), ``m < sky_max_depth`` when set, and
    ``valid``. Pixels used: non-sky, ``conf ≥`` the interpolated median of ``conf`` over the video's
    non-sky pixels, ``m > min_metric``, ``d > min_teacher`` and ``d`` finite. A video with no such pixel
    gets ``nan``.
    """
    d, m = teacher_depth.float(), metric_depth.float()
    B = d.shape[0]
    non_sky = torch.isfinite(m)
    if sky_max_depth is not None:
        non_sky = non_sky & (m < sky_max_depth)
    if valid is not None:
        non_sky = non_sky & valid.bool()
    sel = non_sky & torch.isfinite(d) & (m > min_metric) & (d > min_teacher)
    if teacher_conf is not None:
        c = teacher_conf.float()
        for b in range(B):
            cb = c[b][non_sky[b] & torch.isfinite(c[b])]
            sel[b] &= (c[b] >= median(cb)) if cb.numel() else torch.zeros_like(sel[b])
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
