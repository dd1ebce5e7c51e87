"""Ragged batches (samples with different frame counts and aspect ratios) through tiny Qwen2.5-VL and
Qwen3-VL students, with the four GeoVR objectives against the oracle teacher."""

from __future__ import annotations

import types

import pytest
import torch

from geovr.data.collate import collate
from geovr.data.oracle import OracleTeacher
from geovr.objectives.configs import CameraPoseConfig, DepthConfig, FeatureDistillConfig, MetricScaleConfig
from geovr.objectives.objectives import build_camera_pose, build_depth, build_feature_distill, build_metric_scale
from geovr.protocols import GeometryRequest
from geovr_plugin_qwen_vl.testing import tiny_backbone


def _sample(i: int, S: int, H: int, W: int) -> dict:
    g = torch.Generator().manual_seed(i)
    K = torch.tensor([[0.8 * W, 0, W / 2], [0, 0.8 * W, H / 2], [0, 0, 1.0]]).expand(S, 3, 3).clone()
    E = torch.zeros(S, 3, 4)
    E[:, :3, :3] = torch.eye(3)
    E[:, 0, 3] = torch.linspace(0, 0.5, S)  # a sideways walk
    return {
        "frames": torch.rand(S, 3, H, W, generator=g),
        "frame_indices": torch.arange(S) * 15,
        "frame_times": torch.arange(S) * 0.5,
        "question": f"how far {i}?",
        "options": None,
        "answer": "2",
        "sample_id": f"s{i}",
        "depth": 1.5 + torch.rand(S, H, W, generator=g),
        "intrinsics": K,
        "extrinsics": E,
    }


def _objectives(backbone, teacher):
    ctx = types.SimpleNamespace(backbone=backbone, teacher=teacher, device="cpu")
    L = backbone.num_layers
    return [
        build_camera_pose(CameraPoseConfig(hidden_dim=16), ctx),
        build_depth(DepthConfig(width_scale=1 / 32, student_layers=[0, 1, L, L]), ctx),
        build_metric_scale(MetricScaleConfig(hidden_dim=16), ctx),
        build_feature_distill(FeatureDistillConfig(teacher_layers=[23], student_layers=[L]), ctx),
    ]


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl"])
def test_ragged_batch_through_backbone_and_all_objectives(kind):
    torch.manual_seed(0)
    bb = tiny_backbone(kind, min_pixels=16 * 16, max_pixels=128 * 128)
    batch = collate([_sample(0, 3, 64, 96), _sample(1, 4, 96, 64)])  # landscape 3 frames, portrait 4 frames
    assert batch.ragged and batch.frames.shape == (2, 4, 3, 96, 96)
    inputs = bb.prepare(batch)
    grids = inputs["_grids"]
    assert inputs["_grid"] is None and [g[0] for g in grids] == [3, 4]
    assert grids[0][1] < grids[0][2] and grids[1][1] > grids[1][2]  # each keeps its own aspect ratio
    teacher = OracleTeacher()
    objectives = _objectives(bb, teacher)
    request = GeometryRequest.union(o.student_needs for o in objectives)
    student = bb(inputs, geometry=request)
    assert student.ragged and [c.shape[0] for c in student.camera] == [3, 4]
    for layer in request.layers:
        assert [tuple(t.shape[:3]) for t in student.hidden[layer]] == grids
    t_out = teacher.encode(batch.frames, [23], batch=batch)
    assert t_out.ragged and [tuple(d.shape) for d in t_out.depth] == [(3, 64, 96), (4, 96, 64)]
    total = student.lm_loss
    for obj in objectives:
        out = obj(student, t_out, batch)
        assert torch.isfinite(out.loss), obj.name
        total = total + out.loss
    total.backward()
    grads = [p.grad for o in objectives for p in o.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert bb.camera_tokens.weight.grad is not None and torch.isfinite(bb.camera_tokens.weight.grad).all()
    assert bb.scale_token.weight.grad is not None and bb.scale_token.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl"])
def test_ragged_sample_equals_single_sample_run(kind):
    """Sample 1 of a ragged batch gets the same camera-token states as when it is run alone."""
    torch.manual_seed(0)
    bb = tiny_backbone(kind, min_pixels=16 * 16, max_pixels=128 * 128)
    samples = [_sample(0, 3, 64, 96), _sample(1, 4, 96, 64)]
    request = GeometryRequest(camera_tokens=True, scale_token=True, layers=(1,))
    with torch.no_grad():
        both = bb(bb.prepare(collate(samples)), geometry=request)
        alone = bb(bb.prepare(collate(samples[1:])), geometry=request)
    torch.testing.assert_close(both.camera[1], alone.camera[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both.hidden[1][1], alone.hidden[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both.scale[1], alone.scale[0], atol=1e-4, rtol=1e-4)


def test_trainer_steps_on_ragged_batches_with_teacher_cache(tmp_path):
    """The accelerate trainer on a dataset whose samples differ in frame count and aspect ratio (cached
    oracle teacher, the four objectives): finite losses, cache entries per sample, a second run from the
    cache gives the same first-step losses."""
    from geovr.protocols import BuildContext
    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.runlog import read_metrics
    from geovr.train.trainer import build
    from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint

    cached_tiny_checkpoint("qwen3_vl")  # written once, before the seeded runs
    data = [_sample(0, 3, 64, 96), _sample(1, 4, 96, 64), _sample(2, 2, 64, 64), _sample(3, 4, 96, 64)]

    def run(name):
        torch.manual_seed(0)
        bb = tiny_backbone("qwen3_vl", min_pixels=16 * 16, max_pixels=128 * 128)
        teacher = OracleTeacher()
        ctx = BuildContext(
            output_dir=str(tmp_path / name),
            seed=0,
            backbone=bb,
            teacher=teacher,
            objectives=_objectives(bb, teacher),
            datasets={"train": data},
        )
        cfg = AccelerateTrainerConfig(
            batch_size=2,
            max_steps=2,
            lr=1e-3,
            head_lr=1e-3,
            warmup_ratio=0.0,
            progress=False,
            cache="auto",
            cache_dir=str(tmp_path / "cache"),
            shuffle=False,
        )
        build(cfg, ctx).fit(ctx)
        return read_metrics(tmp_path / name)

    first = run("a")
    assert len(first) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in first)
    assert {"camera_pose/loss", "depth/loss", "metric_scale/loss", "feature_distill/loss"} <= set(first[0])
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 4  # one entry per sample
    again = run("b")
    assert again[0]["loss"] == pytest.approx(first[0]["loss"], rel=1e-5)
