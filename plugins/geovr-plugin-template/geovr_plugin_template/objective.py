"""The toy objective: per-frame mean log-depth regressed from camera-token states."""

from __future__ import annotations

from torch import nn

from geovr.protocols import Batch, BuildContext, GeometryRequest, ObjectiveOutput, StudentOutput, TeacherOutput


class FrameDepthMean(nn.Module):
    """Head ``[B,S,D] -> [B,S]``; loss = L1 to ``log(mean teacher depth)`` per frame ``[B,S]``."""

    name = "frame_depth_mean"
    requires = frozenset({"depth"})
    student_needs = GeometryRequest(camera_tokens=True)

    def __init__(self, hidden_size: int, hidden: int = 64, weight: float = 0.1):
        super().__init__()
        self.weight = float(weight)
        self.head = nn.Sequential(
            nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )

    def forward(self, student: StudentOutput, teacher: TeacherOutput, batch: Batch) -> ObjectiveOutput:
        pred = self.head(student.camera.float()).squeeze(-1)  # [B,S]
        target = teacher.depth.detach().float().clamp_min(1e-6).mean(dim=(-2, -1)).log()  # [B,S]
        loss = (pred - target).abs().mean()
        return ObjectiveOutput(loss=loss, metrics={"l1": float(loss.detach())})


def build(config, context: BuildContext) -> FrameDepthMean:
    """Factory: ``(FrameDepthMeanConfig, BuildContext) -> FrameDepthMean`` (needs the backbone's D)."""
    return FrameDepthMean(context.backbone.hidden_size, hidden=config.hidden, weight=config.weight)
