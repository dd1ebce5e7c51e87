"""Registration hooks of the template plugin. Keep this module torch-free."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_template.config import FrameDepthMeanConfig


@hookimpl
def register_objectives(register):
    """Register the toy objective with a lazy factory (imported only when a recipe builds it)."""
    register(
        "frame_depth_mean",
        "geovr_plugin_template.objective:build",
        config=FrameDepthMeanConfig,
        summary="toy: regress each frame's mean teacher log-depth from its camera token",
    )
