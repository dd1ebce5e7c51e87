"""Built-in plugin of geovr.objectives: the four GeoVR objectives, registered through the same public hooks
third parties use (torch-free: factories are lazy strings)."""

from __future__ import annotations

from geovr.hookspecs import hookimpl
from geovr.objectives.configs import (
    CameraPoseConfig,
    DepthConfig,
    FeatureDistillConfig,
    MetricScaleConfig,
)

_OBJ = "geovr.objectives.objectives"


@hookimpl
def register_objectives(register):
    register(
        "camera_pose",
        f"{_OBJ}:build_camera_pose",
        config=CameraPoseConfig,
        summary="camera-token head regressing the teacher pose encoding (L1 on T, quaternion, FoV)",
    )
    register(
        "depth",
        f"{_OBJ}:build_depth",
        config=DepthConfig,
        summary="DPT head on 4 mapped layers predicting teacher depth (trimmed L1 + gradient / SILog / conf)",
    )
    register(
        "metric_scale",
        f"{_OBJ}:build_metric_scale",
        config=MetricScaleConfig,
        summary="scale-token head predicting the teacher-depth-to-metres factor (log1p L1)",
    )
    register(
        "feature_distill",
        f"{_OBJ}:build_feature_distill",
        config=FeatureDistillConfig,
        summary="per-layer MLP heads aligning student grids with teacher features (cosine)",
    )
