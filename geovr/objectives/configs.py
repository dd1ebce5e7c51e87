"""Recipe options of the four GeoVR objectives and of the ``hf_depth`` metric teacher (torch-free).

Defaults are the reference method's: loss weights camera 2.5, depth 1, scale 1, distill 1; head
widths camera 1536, scale 512, DPT levels [256, 512, 1024, 1024] with 256 fusion features. Every
constant of a loss is an option here.
"""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.recipe.preflight import checkpoint_source


def _layer_problems(teacher_layers, student_layers, count: int | None) -> list[str]:
    problems = []
    if teacher_layers is not None and student_layers is not None and len(teacher_layers) != len(student_layers):
        problems.append(f"teacher_layers {list(teacher_layers)} and student_layers {list(student_layers)} "
                        f"must have the same length")
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
        return [] if self.hidden_dim > 0 else [f"hidden_dim must be > 0, got {self.hidden_dim}"]


@attrs.define
class DepthConfig:
    """``depth``: DPT-style dense head over the visual grids of 4 student layers → depth ``[B,S,H,W]``.

    teacher_layers: teacher blocks whose depth-relative position picks the student layers (default: the
    teacher's ``layers``); student_layers: explicit hidden-state indices (overrides the mapping).
    channels / features: per-level projection widths and fusion width, all multiplied by width_scale
    (small values for tiny models). pos_embed_ratio: factor of the sin-cos UV embedding.
    loss: ``"l1_grad"`` (L1 without the top ``1-drop_quantile`` errors + multi-scale gradient loss),
    ``"silog"`` (scale-invariant log loss with ``silog_lambda``) or ``"conf"`` (the head predicts a
    confidence ``c = 1 + exp(·)``; loss ``conf_gamma·err·c − conf_alpha·log c`` + gradient loss).
    grad_scales: number of gradient-loss scales (stride ``2^s``); grad_weight: factor of the gradient term;
    clamp: cap on every per-pixel error.
    """

    weight: float = 1.0
    loss: Literal["l1_grad", "silog", "conf"] = "l1_grad"
    teacher_layers: list[int] | None = None
    student_layers: list[int] | None = None
    channels: list[int] = attrs.field(factory=lambda: [256, 512, 1024, 1024])
    features: int = 256
    width_scale: float = 1.0
    pos_embed_ratio: float = 0.1
    drop_quantile: float = 0.98
    grad_scales: int = 4
    grad_weight: float = 1.0
    clamp: float = 100.0
    silog_lambda: float = 0.85
    conf_gamma: float = 1.0
    conf_alpha: float = 0.2

    def requires(self) -> frozenset[str]:
        return frozenset({"depth"})

    def check(self) -> list[str]:
        problems = _layer_problems(self.teacher_layers, self.student_layers, 4)
        if len(self.channels) != 4:
            problems.append(f"channels must list 4 widths, got {self.channels}")
        if not self.width_scale > 0:
            problems.append(f"width_scale must be > 0, got {self.width_scale}")
        if not 0 < self.drop_quantile <= 1:
            problems.append(f"drop_quantile must be in (0, 1], got {self.drop_quantile}")
        if self.grad_scales < 0:
            problems.append(f"grad_scales must be >= 0, got {self.grad_scales}")
        return problems


@attrs.define
class MetricScaleConfig:
    """``metric_scale``: head on the last-layer scale token ``[B,D]`` → ``Ŝ = exp(·)`` ``[B]``.

    target: ``"auto"`` uses the teacher's exact ``metric_scale`` when its output has one, else the
    least-squares fit of metric depth to teacher depth; ``"fit"`` always fits. use_teacher_conf: keep
    only pixels whose teacher confidence is at least its per-video median (needs ``depth_conf``).
    min_metric_depth / min_teacher_depth: validity thresholds of the fit.
    """

    weight: float = 1.0
    hidden_dim: int = 512
    target: Literal["auto", "fit"] = "auto"
    use_teacher_conf: bool = True
    min_metric_depth: float = 0.01
    min_teacher_depth: float = 1e-3

    def requires(self) -> frozenset[str]:
        need = {"depth", "metric_depth"}
        if self.use_teacher_conf:
            need.add("depth_conf")
        return frozenset(need)

    def check(self) -> list[str]:
        return [] if self.hidden_dim > 0 else [f"hidden_dim must be > 0, got {self.hidden_dim}"]


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
        return _layer_problems(self.teacher_layers, self.student_layers, None)


@attrs.define
class HFDepthTeacherConfig:
    """``hf_depth``: a metric depth model loaded with transformers' ``AutoModelForDepthEstimation``.

    model: HF hub id (read from the local cache only; ``cache_dir`` overrides the standard hub cache) or a
    local directory holding the model and its image processor; default Depth Anything V2 metric, indoor
    (Hypersim) Large. reference_focal: for models predicting
    depth at a fixed reference focal length (pixels of the model input), depth is multiplied by
    ``f / reference_focal`` with ``f`` the frame focal (batch intrinsics fx, else ``focal_px``, both in
    frame pixels) rescaled to the model input width. chunk: frames per forward pass. dtype: weights and
    compute dtype.
    """

    model: str = "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"
    cache_dir: str | None = None
    reference_focal: float | None = None
    focal_px: float | None = None
    chunk: int = 8
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def provides(self) -> frozenset[str]:
        return frozenset({"metric_depth"})

    def preflight(self) -> list[str]:
        """The depth model (local directory, or HF id in the local cache) must be there (no network)."""
        return checkpoint_source(self.model, "model", cache_dir=self.cache_dir)

    def check(self) -> list[str]:
        problems = []
        if self.chunk <= 0:
            problems.append(f"chunk must be > 0, got {self.chunk}")
        if self.reference_focal is not None and self.reference_focal <= 0:
            problems.append(f"reference_focal must be > 0, got {self.reference_focal}")
        return problems
