"""Recipe options of the ``da3`` and ``da3_metric`` teachers (torch-free: imported when plugins load)."""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.recipe.preflight import checkpoint_source
from geovr_plugin_da3.arch import arch_depth, is_metric, load_arch

DA3_PROVIDES = frozenset({"features", "depth", "depth_conf", "pose_enc", "intrinsics", "extrinsics", "points"})
#: blocks whose final-normed tokens the released code distils (its ``distill_visual_indexes`` for DA3)
RELEASED_FEATURE_LAYERS = (18, 26, 32, 38)


def _common_problems(image_size: int, multiple: int, arch_problem: str | None) -> list[str]:
    problems = []
    if multiple <= 0 or multiple % 14:
        problems.append(f"multiple must be a positive multiple of 14 (the patch size), got {multiple}")
    elif image_size <= 0 or image_size % multiple:
        problems.append(f"image_size must be a positive multiple of multiple={multiple}, got {image_size}")
    if arch_problem:
        problems.append(arch_problem)
    return problems


@attrs.define
class DA3TeacherConfig:
    """``[teacher] component = "da3"``: the Depth Anything 3 any-view model, frozen.

    * ``pretrained``: HF id (local cache only) or a local ``.safetensors``/``.pt`` file or directory of
      the official checkpoint (tensors loaded strictly by name; its 3-D Gaussian head, unused, is left
      out); ``""`` = random weights drawn from ``seed`` (tests and tiny recipes only);
    * ``model_config``: ``"giant"`` (the released GeoVR dispatch), ``"large"``, ``"tiny"`` or a JSON path;
    * ``image_size`` / ``multiple``: frames are resized (bicubic, antialiased, aspect ratio kept) so the
      long side is ``image_size`` and the short side the nearest multiple of ``multiple`` (504 and 28: the
      released teacher frames);
    * ``layers``: backbone blocks (0-based) whose final-normed patch tokens are the ``features``
      (default: the released code's 18/26/32/38 for 40 blocks, else four evenly spaced blocks ending one
      before the last); ``pool``: 2 = 2×2 average pooling (floor, as the released distillation), 1 = none;
    * ``dtype``: autocast dtype of the backbone (heads run in float32);
    * ``cameras``: ``"first_frame"`` (geovr's convention, every teacher's: ``extrinsics`` camera-from-world
      relative to the first frame, whose camera is the identity, ``pose_enc`` their 9-d encoding) or
      ``"released"`` (exactly what the released code supervises: ``pose_enc`` = DA3's camera-to-world
      encoding, ``extrinsics`` = its inverse in DA3's world frame). ``intrinsics`` are in working pixels.
    """

    pretrained: str = "depth-anything/DA3-GIANT-1.1"
    model_config: str = "giant"
    image_size: int = 504
    multiple: int = 28
    layers: list[int] | None = None
    pool: Literal[1, 2] = 2
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cameras: Literal["first_frame", "released"] = "first_frame"
    seed: int = 0

    def provides(self) -> frozenset[str]:
        """Outputs this teacher fills in."""
        return DA3_PROVIDES

    def arch(self) -> dict:
        """The configuration dict of ``model_config`` (raises ``ValueError``)."""
        return load_arch(self.model_config)

    def cache_layout(self, frames: int, height: int, width: int, layers):
        """Per-sample output shapes and forward FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_da3.sizing import cache_layout

        return cache_layout(self, frames, height, width, layers)

    def build_meta(self):
        """The network on the meta device (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_da3.sizing import build_meta

        return build_meta(self)

    def feature_layers(self) -> tuple[int, ...]:
        """``layers`` or the default described in the class docstring."""
        if self.layers is not None:
            return tuple(int(x) for x in self.layers)
        depth = arch_depth(self.arch())
        if depth == 40:
            return RELEASED_FEATURE_LAYERS
        return tuple(sorted({max(0, depth * k // 4 - 2) for k in (1, 2, 3, 4)}))

    def preflight(self) -> list[str]:
        """The checkpoint must be reachable (a path exists, or an HF id is cached when offline)."""
        return checkpoint_source(self.pretrained, "pretrained", filename="model.safetensors")

    def check(self) -> list[str]:
        """Cross-field problems (empty when valid)."""
        try:
            arch = self.arch()
            arch_problem = (
                None
                if not is_metric(arch)
                else (f"model_config {self.model_config!r} is a metric model; use component 'da3_metric' for it")
            )
        except ValueError as exc:
            arch, arch_problem = None, str(exc)
        problems = _common_problems(self.image_size, self.multiple, arch_problem)
        if arch is not None and self.layers is not None:
            depth = arch_depth(arch)
            bad = [v for v in self.layers if not 0 <= v < depth]
            if bad:
                problems.append(
                    f"layers {bad} outside the {depth} blocks of model_config {self.model_config!r} "
                    f"(valid 0..{depth - 1})"
                )
            if not self.layers:
                problems.append("layers must not be empty (omit it for the default)")
            if len(set(self.layers)) != len(self.layers):
                problems.append(f"layers {self.layers} has duplicates")
        return problems


@attrs.define
class DA3MetricTeacherConfig:
    """``[metric_teacher] component = "da3_metric"``: DA3METRIC-LARGE, frozen.

    Provides ``metric_depth [B,S,H,W]`` at the working resolution: the model's depth, which is metric at a
    300-px reference focal length, with NaN where its sky output is ``>= sky_threshold`` (0.3, the
    released value). The released code multiplies it by ``f / 300`` with ``f`` the mean focal length of
    the *geometry teacher's* cameras; geovr does that in the ``metric_scale`` objective: set
    ``objectives.metric_scale.focal_rescale = true`` (its ``focal_reference`` is 300). Use the same
    ``image_size``/``multiple`` as the geometry teacher so both see the same frames (as released), or
    set ``metric_scale.metric_input_width``.
    """

    pretrained: str = "depth-anything/DA3METRIC-LARGE"
    model_config: str = "metric_large"
    image_size: int = 504
    multiple: int = 28
    sky_threshold: float = 0.3
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = 0

    def provides(self) -> frozenset[str]:
        return frozenset({"metric_depth"})

    def arch(self) -> dict:
        return load_arch(self.model_config)

    def cache_layout(self, frames: int, height: int, width: int, layers=()):
        """``metric_depth`` shape and forward FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_da3.sizing import metric_cache_layout

        return metric_cache_layout(self, frames, height, width, layers)

    def build_meta(self):
        """The network on the meta device (sizing interface, :mod:`geovr.sizing`)."""
        from geovr_plugin_da3.sizing import build_meta

        return build_meta(self)

    def preflight(self) -> list[str]:
        return checkpoint_source(self.pretrained, "pretrained", filename="model.safetensors")

    def check(self) -> list[str]:
        try:
            arch_problem = (
                None
                if is_metric(self.arch())
                else (f"model_config {self.model_config!r} is not a metric model (head.type 'dpt'); use 'metric_large'")
            )
        except ValueError as exc:
            arch_problem = str(exc)
        problems = _common_problems(self.image_size, self.multiple, arch_problem)
        if not 0 < self.sky_threshold <= 1:
            problems.append(f"sky_threshold must be in (0, 1], got {self.sky_threshold}")
        return problems
