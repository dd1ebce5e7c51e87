"""Each objective alone, trained 30 Adam steps on a tiny learnable stand-in student against a fixed
teacher output, reduces its loss (heads and student states both learn)."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from geovr.objectives.configs import CameraPoseConfig, DepthConfig, FeatureDistillConfig, MetricScaleConfig
from geovr.objectives.objectives import build_camera_pose, build_depth, build_feature_distill, build_metric_scale
from geovr.protocols import Batch, StudentOutput
from geovr.testing.tiny import fixed_teacher_output

B, S, h, w, D, C = 1, 2, 4, 4, 16, 8
LAYERS = (1, 2, 3, 4)


class StandInStudent(nn.Module):
    """Learnable visual grids ``[B,S,h,w,D]`` per layer, camera tokens ``[B,S,D]`` and scale token ``[B,D]``."""

    def __init__(self):
        super().__init__()
        self.grids = nn.ParameterDict({str(i): nn.Parameter(torch.randn(B, S, h, w, D)) for i in LAYERS})
        self.camera = nn.Parameter(torch.randn(B, S, D))
        self.scale = nn.Parameter(torch.randn(B, D))

    def forward(self) -> StudentOutput:
        return StudentOutput(hidden={int(k): v for k, v in self.grids.items()}, camera=self.camera, scale=self.scale)


CTX = types.SimpleNamespace(
    backbone=types.SimpleNamespace(hidden_size=D, num_layers=4),
    teacher=types.SimpleNamespace(num_layers=16, layers=(3, 7, 11, 15), feature_dim=C),
    device="cpu",
)
CASES = {
    "camera_pose": (build_camera_pose, CameraPoseConfig(hidden_dim=32), 0.5),  # ratios: 3 seeds gave ≤ 0.3
    "depth": (build_depth, DepthConfig(width_scale=1 / 32, target_patch_size=4), 0.5),
    "depth_dense_resized": (build_depth, DepthConfig(width_scale=1 / 32), 0.5),  # 28-px cells, resized to 16
    "depth_dpt": (build_depth, DepthConfig(width_scale=1 / 32, head="dpt"), 0.5),
    "depth_conf": (build_depth, DepthConfig(width_scale=1 / 32, head="dpt", loss="conf"), 0.5),
    "depth_silog": (build_depth, DepthConfig(width_scale=1 / 32, loss="silog"), 0.5),
    "metric_scale": (build_metric_scale, MetricScaleConfig(hidden_dim=16), 0.2),
    "feature_distill": (build_feature_distill, FeatureDistillConfig(), 0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_thirty_steps_reduce_the_loss(case):
    factory, config, ratio = CASES[case]
    torch.manual_seed(0)
    objective, stand_in, teacher = factory(config, CTX), StandInStudent(), fixed_teacher_output(B, S, C)
    batch = Batch(frames=torch.rand(B, S, 3, 16, 16), sample_ids=["s"], questions=[""], answers=[""])
    opt = torch.optim.Adam([*objective.parameters(), *stand_in.parameters()], lr=5e-3)
    losses = []
    for _ in range(30):
        out = objective(stand_in(), teacher, batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    final = float(objective(stand_in(), teacher, batch).loss.detach())
    assert final < ratio * losses[0], f"{case}: loss {losses[0]:.4f} → {final:.4f} (needed < {ratio}×)"
    assert all(t.grad is None for t in teacher.tensors().values())
