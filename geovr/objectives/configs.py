"""Recipe options of the four GeoVR objectives (torch-free).

Defaults are the reference method's: loss weights camera 2.5, depth 1, scale 1, distill 1; head
widths camera 1536, scale 512, dense depth head levels [256, 512, 1024, 1024] with 256 fusion features. Every
constant of a loss is an option here.
"""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.finite import nonfinite_options


def _layer_problems(teacher_layers, student_layers, count: int | None) -> list[str]:
    problems = []
    if teacher_layers is not None and student_layers is not None and len(teacher_layers) != len(student_layers):
        problems.append(
            f"teacher_layers {list(teacher_layers)} and student_layers {list(student_layers)} must have the same length"
        )
    if count is not None:
        for key, v in (("teacher_layers", teacher_layers), ("student_layers", student_layers)):
            if v is not None and len(v) != count:
                problems.append(f"{key}: the depth head fuses exactly {count} levels, got {list(v)}")
    if student_layers is not None and any(int(x) < 0 for x in student_layers):
        problems.append(f"student_layers must be hidden-state indices >= 0, got {list(student_layers)}")
    if teacher_layers is not None and any(int(x) < 0 for x in teacher_layers):
        problems.append(f"teacher_layers must be >= 0, got {list(teacher_layers)}")
    return problems


@attrs.define
class CameraPoseConfig:
    """``camera_pose``: per-frame camera head on the last-layer camera tokens ``[B,S,D]`` → pose_enc ``[B,S,9]``.

    hidden_dim: width of the two-layer MLP trunk. weight_T / weight_R / weight_FL: weights of the
    translation, quaternion and field-of-view L1 terms. clamp: cap on the per-element translation error.
    quat_sign_invariant: use ``min(|q−q*|, |q+q*|)`` per frame (q and −q are the same rotation).
    """

    weight: float = 2.5
    hidden_dim: int = 1536
    weight_T: float = 1.0
    weight_R: float = 1.0
    weight_FL: float = 0.5
    clamp: float = 100.0
    quat_sign_invariant: bool = False

    def requires(self) -> frozenset[str]:
        return frozenset({"pose_enc"})

    def check(self) -> list[str]:
        return ([] if self.hidden_dim > 0 else [f"hidden_dim must be > 0, got {self.hidden_dim}"]) + nonfinite_options(
            self
        )


@attrs.define
class DepthConfig:
    """``depth``: dense head over the visual grids of 4 student layers → depth ``[B,S,H,W]``.

    head: ``"dense"`` (the released method's :class:`~geovr.objectives.heads.DenseHead`: shared LayerNorm,
    pixel-shuffle output at the teacher's resolution) or ``"dpt"`` (VGGT-style DPT head,
    :class:`~geovr.objectives.heads.DPTHead`). patch_size: student input pixels per visual token (32 for
    Qwen3-VL: 16-px patches, 2×2 merge; 28 for Qwen2.5-VL); target_patch_size: teacher depth pixels per
    output cell of the dense head (28 for VGGT: 14-px patches ×2), a multiple of 4.
    teacher_layers: teacher blocks whose depth-relative position picks the student layers (default: the
    teacher's ``layers``); student_layers: explicit hidden-state indices (overrides the mapping).
    channels / features: per-level projection widths and fusion width, all multiplied by width_scale
    (small values for tiny models). pos_embed_ratio: factor of the sin-cos UV embedding.
    loss: ``"l1_grad"`` (the released loss: per sample, L1 with the quantile outlier filter keeping errors
    up to the ``drop_quantile`` quantile when more than ``min_elements`` pixels, capped at ``hard_max``, plus
    the multi-scale gradient loss), ``"silog"`` (scale-invariant log loss with ``silog_lambda``) or
    ``"conf"`` (``dpt`` head only: it also predicts a confidence ``c = 1 + exp(·)``, adding the filtered
    ``conf_gamma·err·c − conf_alpha·log c``). grad_scales: number of gradient-loss scales (stride ``2^s``);
    grad_weight: factor of the gradient term; clamp: cap on every gradient difference.
    """

    weight: float = 1.0
    head: Literal["dense", "dpt"] = "dense"
    patch_size: int = 32
    target_patch_size: int = 28
    loss: Literal["l1_grad", "silog", "conf"] = "l1_grad"
    teacher_layers: list[int] | None = None
    student_layers: list[int] | None = None
    channels: list[int] = attrs.field(factory=lambda: [256, 512, 1024, 1024])
    features: int = 256
    width_scale: float = 1.0
    pos_embed_ratio: float = 0.1
    drop_quantile: float = 0.98
    min_elements: int = 1000
    hard_max: float = 100.0
    grad_scales: int = 4
    grad_weight: float = 1.0
    clamp: float = 100.0
    silog_lambda: float = 0.85
    conf_gamma: float = 1.0
    conf_alpha: float = 0.2

    def requires(self) -> frozenset[str]:
        return frozenset({"depth"})

    def check(self) -> list[str]:
        problems = _layer_problems(self.teacher_layers, self.student_layers, 4) + nonfinite_options(self)
        if len(self.channels) != 4:
            problems.append(f"channels must list 4 widths, got {self.channels}")
        if not self.width_scale > 0:
            problems.append(f"width_scale must be > 0, got {self.width_scale}")
        if not 0 < self.drop_quantile <= 1:
            problems.append(f"drop_quantile must be in (0, 1], got {self.drop_quantile}")
        if self.grad_scales < 0:
            problems.append(f"grad_scales must be >= 0, got {self.grad_scales}")
        for key in ("patch_size", "target_patch_size"):
            v = getattr(self, key)
            if v <= 0 or v % 4:
                problems.append(f"{key} must be a positive multiple of 4, got {v}")
        if self.min_elements < 0:
            problems.append(f"min_elements must be >= 0, got {self.min_elements}")
        if self.head == "dense" and self.loss == "conf":
            problems.append('loss = "conf" needs head = "dpt" (the dense head predicts no confidence)')
        return problems


@attrs.define
class MetricScaleConfig:
    """``metric_scale``: head on the last-layer scale token ``[B,D]`` → ``Ŝ = exp(·)`` ``[B]``.

    target: ``"auto"`` uses the teacher's exact ``metric_scale`` when its output has one, else the
    least-squares fit of metric depth to teacher depth; ``"fit"`` always fits. use_teacher_conf: keep
    only pixels whose teacher confidence is at least its per-video median over non-sky pixels (needs
    ``depth_conf``). min_metric_depth / min_teacher_depth: validity thresholds of the fit.
    focal_rescale: the metric teacher predicts depth at a canonical focal length (the released Depth
    Anything 3 metric model: 300 px); multiply its depth by ``f / focal_reference`` with ``f`` the mean of
    fx, fy of the *geometry teacher's* intrinsics (needs ``intrinsics``), converted to the metric model's
    input pixels by ``metric_input_width / teacher depth width`` (default: the metric model saw the
    teacher's frames, as in the released code). Sky: metric-depth pixels that are NaN (a metric teacher's
    sky mask, e.g. ``hf_depth.sky_model``) or, with ``sky_max_depth``, at or beyond that depth are left
    out of the fit and of the confidence median.
    """

    weight: float = 1.0
    hidden_dim: int = 512
    target: Literal["auto", "fit"] = "auto"
    use_teacher_conf: bool = True
    min_metric_depth: float = 0.01
    min_teacher_depth: float = 1e-3
    focal_rescale: bool = False
    focal_reference: float = 300.0
    metric_input_width: int | None = None
    sky_max_depth: float | None = None

    def requires(self) -> frozenset[str]:
        need = {"depth", "metric_depth"}
        if self.use_teacher_conf:
            need.add("depth_conf")
        if self.focal_rescale:
            need.add("intrinsics")
        return frozenset(need)

    def check(self) -> list[str]:
        problems = [] if self.hidden_dim > 0 else [f"hidden_dim must be > 0, got {self.hidden_dim}"]
        if not self.focal_reference > 0:
            problems.append(f"focal_reference must be > 0, got {self.focal_reference}")
        if self.metric_input_width is not None and self.metric_input_width <= 0:
            problems.append(f"metric_input_width must be > 0, got {self.metric_input_width}")
        if self.sky_max_depth is not None and not self.sky_max_depth > 0:
            problems.append(f"sky_max_depth must be > 0, got {self.sky_max_depth}")
        return problems + nonfinite_options(self)


@attrs.define
class FeatureDistillConfig:
    """``feature_distill``: per mapped layer, resize the student grid to the teacher grid and project
    ``LayerNorm(D) → Linear(D,C) → GELU → Linear(C,C)``; loss = mean ``1 − cos`` averaged over layers.

    teacher_layers / student_layers: as for ``depth`` (any number of layers). hidden_dim: MLP width
    (default: the teacher feature width C).
    """

    weight: float = 1.0
    teacher_layers: list[int] | None = None
    student_layers: list[int] | None = None
    hidden_dim: int | None = None

    def requires(self) -> frozenset[str]:
        return frozenset({"features"})

    def check(self) -> list[str]:
        return _layer_problems(self.teacher_layers, self.student_layers, None) + nonfinite_options(self)
