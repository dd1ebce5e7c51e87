"""Registration hooks of the DA3 plugin (torch-free: factories are lazy strings)."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_da3.config import DA3MetricTeacherConfig, DA3TeacherConfig


@hookimpl
def register_teachers(register):
    """Register teacher ``da3`` and metric teacher ``da3_metric``."""
    register(
        "da3",
        "geovr_plugin_da3.teacher:build",
        config=DA3TeacherConfig,
        summary="Depth Anything 3 (frozen, giant by default): block features, depth, confidence, cameras, points",
    )
    register(
        "da3_metric",
        "geovr_plugin_da3.teacher:build_metric",
        config=DA3MetricTeacherConfig,
        summary="DA3METRIC-LARGE (frozen): metric depth at a 300-px focal, sky as NaN (metric_scale focal_rescale)",
    )


@hookimpl
def register_commands(subparsers):
    """Add ``geovr da3 convert SRC DST``."""
    from geovr_plugin_da3.cli import add_commands

    add_commands(subparsers)
