"""Recipe options of the core's teachers (torch-free): ``hf_depth``, a transformers metric-depth model.

The ``oracle`` teacher's options live with the synthetic world it reads (:mod:`geovr.data.configs`).
"""

from __future__ import annotations

from typing import Literal

import attrs

from geovr.finite import nonfinite_options
from geovr.recipe.preflight import checkpoint_source


@attrs.define
class HFDepthTeacherConfig:
    """``hf_depth``: a metric depth model loaded with transformers' ``AutoModelForDepthEstimation``.

    model: HF hub id (read from the local cache only; ``cache_dir`` overrides the standard hub cache) or a
    local directory holding the model and its image processor; default Depth Anything V2 metric, indoor
    (Hypersim) Large. reference_focal: for models predicting
    depth at a fixed reference focal length (pixels of the model input), depth is multiplied by
    ``f / reference_focal`` with ``f`` the frame focal (batch intrinsics fx, else ``focal_px``, both in
    frame pixels) rescaled to the model input width. chunk: frames per forward pass. dtype: weights and
    compute dtype. sky_model: a transformers semantic-segmentation model (HF id or directory, e.g. a
    SegFormer trained on ADE20K) whose classes named like ``sky_label`` mark the sky: pixels with a summed
    sky probability ``>= sky_threshold`` (0.3, the released threshold on Depth Anything 3's sky output) get
    NaN metric depth, which the ``metric_scale`` fit leaves out.
    """

    model: str = "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"
    cache_dir: str | None = None
    reference_focal: float | None = None
    focal_px: float | None = None
    chunk: int = 8
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sky_model: str | None = None
    sky_threshold: float = 0.3
    sky_label: str = "sky"

    def provides(self) -> frozenset[str]:
        return frozenset({"metric_depth"})

    def cache_layout(self, frames: int, height: int, width: int, layers=()):
        """``metric_depth [S, H, W]`` and forward FLOPs (sizing interface, :mod:`geovr.sizing`)."""
        from geovr.teachers.hf_depth import cache_layout

        return cache_layout(self, frames, height, width, layers)

    def build_meta(self):
        """The model on the meta device (sizing interface, :mod:`geovr.sizing`)."""
        from geovr.teachers.hf_depth import build_meta

        return build_meta(self)

    def preflight(self) -> list[str]:
        """The depth model (and sky model, when set): a local directory, or an HF id in the local cache
        (no network)."""
        return checkpoint_source(self.model, "model", cache_dir=self.cache_dir) + (
            checkpoint_source(self.sky_model, "sky_model", cache_dir=self.cache_dir) if self.sky_model else []
        )

    def check(self) -> list[str]:
        problems = nonfinite_options(self)
        if self.chunk <= 0:
            problems.append(f"chunk must be > 0, got {self.chunk}")
        if self.reference_focal is not None and self.reference_focal <= 0:
            problems.append(f"reference_focal must be > 0, got {self.reference_focal}")
        if not 0 < self.sky_threshold <= 1:
            problems.append(f"sky_threshold must be in (0, 1], got {self.sky_threshold}")
        return problems
