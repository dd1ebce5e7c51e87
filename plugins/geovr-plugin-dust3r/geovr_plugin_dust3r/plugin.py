"""Registration hooks of the DUSt3R plugin (torch-free: the factory is a lazy string)."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_dust3r.config import DUSt3RTeacherConfig


@hookimpl
def register_teachers(register):
    """Register the ``dust3r`` video teacher."""
    register(
        "dust3r",
        "geovr_plugin_dust3r.teacher:build",
        config=DUSt3RTeacherConfig,
        summary="DUSt3R pairwise pointmaps → per-frame depth, focal, relative pose (to frame 0), decoder features",
    )
