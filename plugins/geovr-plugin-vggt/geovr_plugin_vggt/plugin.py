"""Registration hooks of the VGGT plugin (torch-free: factories are lazy strings)."""

from __future__ import annotations

from geovr import hookimpl
from geovr_plugin_vggt.config import VGGTTeacherConfig


@hookimpl
def register_teachers(register):
    """Register teacher ``vggt``."""
    register(
        "vggt",
        "geovr_plugin_vggt.teacher:build",
        config=VGGTTeacherConfig,
        summary="VGGT-1B (frozen): multi-layer features, depth, cameras, points",
    )


@hookimpl
def register_commands(subparsers):
    """Add ``geovr vggt convert SRC DST``."""
    from geovr_plugin_vggt.cli import add_commands

    add_commands(subparsers)
