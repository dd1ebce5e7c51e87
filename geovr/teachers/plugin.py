"""Built-in plugin of geovr.teachers: the ``hf_depth`` metric teacher, registered through the same public
hook third parties use (torch-free: the factory is a lazy string)."""

from __future__ import annotations

from geovr import hookimpl
from geovr.teachers.configs import HFDepthTeacherConfig


@hookimpl
def register_teachers(register):
    register(
        "hf_depth",
        "geovr.teachers.hf_depth:build",
        config=HFDepthTeacherConfig,
        summary="metric depth from a transformers AutoModelForDepthEstimation checkpoint (local)",
    )
