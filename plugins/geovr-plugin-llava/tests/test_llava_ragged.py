"""A ragged batch (different frame counts and aspect ratios) through the tiny LLaVA-OneVision student
and the four objectives against the oracle teacher."""

from __future__ import annotations

import types

import torch

from geovr.data.collate import collate
from geovr.data.oracle import OracleTeacher
from geovr.objectives.configs import CameraPoseConfig, DepthConfig, FeatureDistillConfig, MetricScaleConfig
from geovr.objectives.objectives import build_camera_pose, build_depth, build_feature_distill, build_metric_scale
from geovr.protocols import BuildContext, GeometryRequest
from geovr_plugin_llava.backbone import build


def _sample(i: int, S: int, H: int, W: int) -> dict:
    g = torch.Generator().manual_seed(i)
    K = torch.tensor([[0.8 * W, 0, W / 2], [0, 0.8 * W, H / 2], [0, 0, 1.0]]).expand(S, 3, 3).clone()
    E = torch.zeros(S, 3, 4)
    E[:, :3, :3] = torch.eye(3)
    E[:, 0, 3] = torch.linspace(0, 0.5, S)
    return {
        "frames": torch.rand(S, 3, H, W, generator=g),
        "frame_times": torch.arange(S) * 0.5,
        "question": f"how far {i}?",
        "options": None,
        "answer": "2",
        "sample_id": f"s{i}",
        "depth": 1.5 + torch.rand(S, H, W, generator=g),
        "intrinsics": K,
        "extrinsics": E,
    }


def test_ragged_batch_through_llava_and_all_objectives(llava_config):
    torch.manual_seed(0)
    bb = build(llava_config(), BuildContext(seed=0))
    batch = collate([_sample(0, 2, 32, 48), _sample(1, 3, 48, 32)])
    assert batch.ragged
    teacher = OracleTeacher()
    ctx = types.SimpleNamespace(backbone=bb, teacher=teacher, device="cpu")
    L = bb.num_layers
    objectives = [
        build_camera_pose(CameraPoseConfig(hidden_dim=16), ctx),
        build_depth(DepthConfig(width_scale=1 / 32, student_layers=[0, 1, L, L]), ctx),
        build_metric_scale(MetricScaleConfig(hidden_dim=16), ctx),
        build_feature_distill(FeatureDistillConfig(teacher_layers=[23], student_layers=[L]), ctx),
    ]
    request = GeometryRequest.union(o.student_needs for o in objectives)
    student = bb(bb.prepare(batch), geometry=request)
    assert student.ragged and [c.shape[0] for c in student.camera] == [2, 3]
    assert [t.shape[0] for t in student.hidden[L]] == [2, 3]
    t_out = teacher.encode(batch.frames, [23], batch=batch)
    total = student.lm_loss
    for obj in objectives:
        out = obj(student, t_out, batch)
        assert torch.isfinite(out.loss), obj.name
        total = total + out.loss
    total.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for o in objectives
        for p in o.parameters()
        if p.requires_grad
    )
    assert bb.camera_embed.weight.grad is not None and bb.camera_embed.weight.grad.abs().sum() > 0
    assert len(bb.generate(batch, max_new_tokens=2)) == 2
