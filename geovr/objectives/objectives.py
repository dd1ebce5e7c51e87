"""The four GeoVR objectives: each an ``nn.Module`` owning its head, built by ``build_<name>(config, context)``.

``context.backbone`` gives ``hidden_size`` (D) and ``num_layers``; ``context.teacher`` gives
``num_layers``, ``layers`` (default feature layers) and ``feature_dim`` (C). Each ``forward(student,
teacher, batch)`` returns an unweighted scalar loss and float metrics; ``weight`` is applied by the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from geovr.errors import GeovrError, RecipeError
from geovr.objectives import losses as L
from geovr.objectives.configs import CameraPoseConfig, DepthConfig, FeatureDistillConfig, MetricScaleConfig
from geovr.objectives.heads import CameraHead, DenseHead, DistillHead, DPTHead, ScaleHead
from geovr.objectives.layers import default_layers, map_teacher_layers
from geovr.protocols import Batch, GeometryRequest, ObjectiveOutput, StudentOutput, TeacherOutput
from geovr.rules import student_layers_problem, teacher_layers_problem

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


def per_sample(forward):
    """Objective-input boundary for ragged batches (samples whose frame counts or token grids differ).

    Wraps an objective's ``forward(student, teacher, batch)``: when the student or teacher output is
    ragged (per-sample lists, see :class:`geovr.protocols.StudentOutput`), the objective runs once per
    sample on regular ``B = 1`` views (``student.sample(i)``, ``teacher.sample(i)``, ``batch.sample(i)``)
    and the loss and every metric are the mean over samples, as the released training averages its
    per-sample losses. Regular batches go straight through, so objectives only ever see ``[B,S,...]``.
    """
    import functools

    @functools.wraps(forward)
    def wrapped(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch | None = None) -> ObjectiveOutput:
        ragged = student.ragged or teacher.ragged or bool(batch is not None and batch.ragged)
        if not ragged:
            return forward(self, student, teacher, batch)
        if batch is not None:
            n = batch.batch_size
        elif student.hidden:
            n = len(next(iter(student.hidden.values())))
        elif student.camera is not None:
            n = len(student.camera)
        else:
            n = int(_need(student.scale, "student scale tokens", getattr(self, "name", "objective")).shape[0])
        outs = [
            forward(self, student.sample(i), teacher.sample(i), batch.sample(i) if batch is not None else None)
            for i in range(n)
        ]
        metrics = {k: sum(o.metrics[k] for o in outs) / n for k in outs[0].metrics if all(k in o.metrics for o in outs)}
        return ObjectiveOutput(torch.stack([o.loss for o in outs]).mean(), metrics)

    return wrapped


def _need(value, what: str, name: str):
    if value is None:
        raise GeovrError(f"objective {name!r}: {what} is missing")
    return value


def _backbone(context: BuildContext, name: str):
    bb = getattr(context, "backbone", None)
    if bb is None or not hasattr(bb, "hidden_size") or not hasattr(bb, "num_layers"):
        raise RecipeError([f"objective {name!r} needs a [backbone] with hidden_size and num_layers"])
    return bb


def resolve_layers(
    config, context: BuildContext, name: str, *, count: int | None = None
) -> tuple[list[int] | None, list[int]]:
    """``(teacher_layers, student_layers)`` of an objective.

    Explicit ``config.student_layers`` win; otherwise teacher layers (``config.teacher_layers`` or the
    teacher's ``layers``) are mapped with :func:`map_teacher_layers`. Without teacher layers and with a
    fixed ``count``, ``count`` evenly spaced student layers are used. Raises :class:`RecipeError` for layers
    outside the models' depths (the rules of :mod:`geovr.rules`).
    """
    bb, teacher = _backbone(context, name), getattr(context, "teacher", None)
    t_layers = config.teacher_layers
    if t_layers is None and teacher is not None and getattr(teacher, "layers", None):
        t_layers = list(teacher.layers)
    if config.student_layers is not None:
        s_layers = list(config.student_layers)
    elif t_layers:
        if teacher is None or not getattr(teacher, "num_layers", 0):
            raise RecipeError(
                [
                    f"objective {name!r}: mapping teacher_layers needs a teacher with num_layers; "
                    f"set student_layers instead"
                ]
            )
        problem = teacher_layers_problem(t_layers, teacher.num_layers)
        if problem:
            raise RecipeError([f"objective {name!r}: teacher_layers {problem}"])
        s_layers = map_teacher_layers(t_layers, teacher.num_layers, bb.num_layers)
    elif count is not None:
        s_layers = default_layers(count, bb.num_layers)
    else:
        raise RecipeError([f"objective {name!r}: no teacher layers known; set teacher_layers"])
    problem = student_layers_problem(s_layers, bb.num_layers)
    if problem:
        raise RecipeError([f"objective {name!r}: student layers {problem}"])
    if count is not None and len(s_layers) != count:
        raise RecipeError([f"objective {name!r} needs {count} layers, got {s_layers}; set student_layers"])
    return (list(t_layers) if t_layers else None), s_layers


class CameraPoseObjective(nn.Module):
    """Regress the teacher's pose encoding ``[B,S,9]`` from the camera tokens ``[B,S,D]``."""

    name = "camera_pose"

    def __init__(self, config: CameraPoseConfig, hidden_size: int):
        super().__init__()
        self.config = config
        self.weight = float(config.weight)
        self.requires = config.requires()
        self.student_needs = GeometryRequest(camera_tokens=True)
        self.head = CameraHead(hidden_size, config.hidden_dim)

    @per_sample
    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch | None = None) -> ObjectiveOutput:
        cam = _need(student.camera, "student camera tokens (StudentOutput.camera [B,S,D])", self.name)
        target = _need(teacher.pose_enc, "teacher pose_enc [B,S,9]", self.name)
        pred = self.head(cam)
        c = self.config
        terms = L.camera_pose_loss(
            pred,
            target.to(pred.device),
            weights=(c.weight_T, c.weight_R, c.weight_FL),
            clamp=c.clamp,
            quat_sign_invariant=c.quat_sign_invariant,
        )
        metrics = {k: float(v.detach()) for k, v in terms.items()}
        metrics["rot_err_deg"] = float(L.rotation_error_deg(pred[..., 3:7], target[..., 3:7]))
        return ObjectiveOutput(terms["loss"], metrics)


class DepthObjective(nn.Module):
    """Predict the teacher's depth ``[B,S,H,W]`` from 4 student layers' visual grids ``[B,S,h,w,D]`` with the
    released dense head (``head = "dense"``) or a DPT head (``head = "dpt"``)."""

    name = "depth"

    def __init__(self, config: DepthConfig, hidden_size: int, student_layers: list[int]):
        super().__init__()
        self.config = config
        self.weight = float(config.weight)
        self.requires = config.requires()
        self.layers = list(student_layers)
        self.student_needs = GeometryRequest(layers=self.layers)
        s = config.width_scale
        if config.head == "dense" and config.loss == "conf":
            raise RecipeError(
                ['objective \'depth\': loss = "conf" needs head = "dpt" (the dense head predicts no confidence)']
            )
        if config.head == "dense":

            def width(c):  # the UV embedding needs multiples of 4
                return max(4, 4 * round(c * s / 4))

            self.head: DenseHead | DPTHead = DenseHead(
                hidden_size,
                config.patch_size,
                config.target_patch_size,
                width(config.features),
                [width(c) for c in config.channels],
                pos_ratio=config.pos_embed_ratio,
            )
        else:
            channels = [max(1, round(c * s)) for c in config.channels]
            self.head = DPTHead(
                hidden_size,
                channels,
                max(2, round(config.features * s)),
                out_channels=2 if config.loss == "conf" else 1,
                pos_ratio=config.pos_embed_ratio,
            )

    def predict(self, student: StudentOutput, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Depth ``[B,S,H,W]`` at ``size = (H, W)`` (> 0) and, for the ``conf`` loss, confidence ``1 + exp``
        (else ``None``).

        The dense head decodes ``target_patch_size`` pixels per cell: a ``size`` that is not a multiple of it
        is decoded at the nearest multiple and resized bilinearly to ``size``."""
        grids = [_need(student.hidden.get(i), f"student hidden grid of layer {i}", self.name) for i in self.layers]
        if self.config.head == "dense":
            B, S, h, w, D = grids[0].shape
            p, tp = self.config.patch_size, self.config.target_patch_size
            H, W = (int(v) for v in size)
            dec = (max(1, round(H / tp)) * tp, max(1, round(W / tp)) * tp)
            hidden = [g.reshape(B, S, h * w, g.shape[-1]) for g in grids]
            depth = self.head(hidden, image_size=(h * p, w * p), target_size=dec)
            if dec != (H, W):
                depth = F.interpolate(
                    depth.reshape(B * S, 1, *dec), size=(H, W), mode="bilinear", align_corners=False
                ).reshape(B, S, H, W)
            return depth, None
        raw = self.head(grids, size)
        depth = torch.exp(raw[:, :, 0])
        conf = 1 + torch.exp(raw[:, :, 1]) if raw.shape[2] > 1 else None
        return depth, conf

    @per_sample
    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch | None = None) -> ObjectiveOutput:
        target = _need(teacher.depth, "teacher depth [B,S,H,W]", self.name)
        pred, conf = self.predict(student, tuple(target.shape[-2:]))
        target = target.to(pred.device)
        c = self.config
        if c.loss == "silog":
            terms = L.silog_loss(pred, target, lam=c.silog_lambda)
        else:
            terms = L.depth_loss(
                pred,
                target,
                conf=conf if c.loss == "conf" else None,
                keep_quantile=c.drop_quantile,
                min_elements=c.min_elements,
                hard_max=c.hard_max,
                grad_scales=c.grad_scales,
                grad_weight=c.grad_weight,
                clamp=c.clamp,
                gamma=c.conf_gamma,
                alpha=c.conf_alpha,
            )
        metrics = {k: float(v.detach()) for k, v in terms.items()}
        metrics.update(L.depth_metrics(pred, target))
        return ObjectiveOutput(terms["loss"], metrics)


class MetricScaleObjective(nn.Module):
    """Predict from the scale token ``[B,D]`` the factor ``S`` ``[B]`` turning teacher depth into metres."""

    name = "metric_scale"

    def __init__(self, config: MetricScaleConfig, hidden_size: int):
        super().__init__()
        self.config = config
        self.weight = float(config.weight)
        self.requires = config.requires()
        self.student_needs = GeometryRequest(scale_token=True)
        self.head = ScaleHead(hidden_size, config.hidden_dim)

    def target(self, teacher: TeacherOutput) -> torch.Tensor:
        """``[B]`` target scale: the teacher's exact ``metric_scale`` (``target="auto"``) or :func:`scale_target`."""
        c = self.config
        if c.target == "auto" and teacher.metric_scale is not None:
            return teacher.metric_scale.detach().float()
        depth = _need(teacher.depth, "teacher depth [B,S,H,W]", self.name)
        metric = _need(teacher.metric_depth, "metric depth [B,S,H,W] (teacher or [metric_teacher])", self.name)
        conf = teacher.depth_conf if c.use_teacher_conf else None
        if c.use_teacher_conf:
            _need(conf, "teacher depth_conf [B,S,H,W]", self.name)
        size = tuple(depth.shape[-2:])
        if tuple(metric.shape[-2:]) != size:
            B, S = metric.shape[:2]
            metric = F.interpolate(
                metric.reshape(B * S, 1, *metric.shape[-2:]).float(), size=size, mode="nearest"
            ).reshape(B, S, *size)
        metric = metric.to(depth.device)
        if c.focal_rescale:
            K = _need(teacher.intrinsics, "teacher intrinsics [B,S,3,3] (focal_rescale)", self.name)
            ratio = 1.0 if c.metric_input_width is None else c.metric_input_width / size[1]
            metric = L.focal_rescale(metric, K, reference=c.focal_reference, pixel_ratio=ratio)
        return L.scale_target(
            depth,
            metric,
            conf,
            min_metric=c.min_metric_depth,
            min_teacher=c.min_teacher_depth,
            sky_max_depth=c.sky_max_depth,
        )

    @per_sample
    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch | None = None) -> ObjectiveOutput:
        token = _need(student.scale, "student scale token (StudentOutput.scale [B,D])", self.name)
        pred = self.head(token)
        target = self.target(teacher).to(pred.device)
        ok = torch.isfinite(target) & (target > 0)
        if not bool(ok.any()):
            loss = pred.sum() * 0.0
            return ObjectiveOutput(loss, {"loss": 0.0, "valid_fraction": 0.0})
        loss = L.scale_loss(pred[ok], target[ok])
        ratio = pred.detach()[ok] / target[ok]
        return ObjectiveOutput(
            loss,
            {
                "loss": float(loss.detach()),
                "scale_ratio_err": float((ratio - 1).abs().mean()),
                "pred_scale": float(pred.detach()[ok].mean()),
                "target_scale": float(target[ok].mean()),
                "valid_fraction": float(ok.float().mean()),
            },
        )


class FeatureDistillObjective(nn.Module):
    """Align student grids of mapped layers with the teacher features ``{layer: [B,S,h,w,C]}`` (cosine).

    ``pairs``: ``(teacher_layer, student_layer)``; ``teacher_layers``: the feature layers to request from
    ``teacher.encode``."""

    name = "feature_distill"

    def __init__(
        self,
        config: FeatureDistillConfig,
        hidden_size: int,
        teacher_layers: list[int],
        student_layers: list[int],
        feature_dim: int,
    ):
        super().__init__()
        if len(teacher_layers) != len(student_layers):
            raise RecipeError(
                [
                    f"feature_distill: teacher layers {teacher_layers} and student layers "
                    f"{student_layers} differ in length"
                ]
            )
        self.config = config
        self.weight = float(config.weight)
        self.requires = config.requires()
        self.pairs = list(zip(teacher_layers, student_layers, strict=False))
        self.teacher_layers = tuple(teacher_layers)  # what the trainer must ask the teacher for
        self.student_needs = GeometryRequest(layers=student_layers)
        self.heads = nn.ModuleList(DistillHead(hidden_size, feature_dim, config.hidden_dim) for _ in self.pairs)

    @per_sample
    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch | None = None) -> ObjectiveOutput:
        losses, metrics = [], {}
        for head, (t, s) in zip(self.heads, self.pairs, strict=False):
            feat = _need(teacher.features.get(t), f"teacher features of layer {t}", self.name)
            grid = _need(student.hidden.get(s), f"student hidden grid of layer {s}", self.name)
            pred = head(grid, tuple(feat.shape[2:4]))
            loss = L.cosine_distill_loss(pred, feat.to(pred.device))
            losses.append(loss)
            metrics[f"loss_t{t}_s{s}"] = float(loss.detach())
        total = torch.stack(losses).mean()
        metrics["loss"] = float(total.detach())
        metrics["cos"] = 1.0 - metrics["loss"]
        return ObjectiveOutput(total, metrics)


_M = TypeVar("_M", bound=nn.Module)


def _to_device(module: _M, context: BuildContext) -> _M:
    return module.to(getattr(context, "device", None) or "cpu")


def build_camera_pose(config: CameraPoseConfig, context: BuildContext) -> CameraPoseObjective:
    """Factory of ``camera_pose``."""
    return _to_device(CameraPoseObjective(config, _backbone(context, "camera_pose").hidden_size), context)


def build_depth(config: DepthConfig, context: BuildContext) -> DepthObjective:
    """Factory of ``depth`` (4 layers mapped from the teacher's, or evenly spaced without teacher layers)."""
    _, s_layers = resolve_layers(config, context, "depth", count=4)
    return _to_device(DepthObjective(config, _backbone(context, "depth").hidden_size, s_layers), context)


def build_metric_scale(config: MetricScaleConfig, context: BuildContext) -> MetricScaleObjective:
    """Factory of ``metric_scale``."""
    return _to_device(MetricScaleObjective(config, _backbone(context, "metric_scale").hidden_size), context)


def build_feature_distill(config: FeatureDistillConfig, context: BuildContext) -> FeatureDistillObjective:
    """Factory of ``feature_distill`` (needs a teacher with ``feature_dim``)."""
    teacher = getattr(context, "teacher", None)
    if teacher is None or not getattr(teacher, "feature_dim", 0):
        raise RecipeError(["objective 'feature_distill' needs a [teacher] providing features with feature_dim > 0"])
    t_layers, s_layers = resolve_layers(config, context, "feature_distill")
    if not t_layers:
        raise RecipeError(["objective 'feature_distill': the teacher names no feature layers; set teacher_layers"])
    return _to_device(
        FeatureDistillObjective(
            config, _backbone(context, "feature_distill").hidden_size, t_layers, s_layers, teacher.feature_dim
        ),
        context,
    )
