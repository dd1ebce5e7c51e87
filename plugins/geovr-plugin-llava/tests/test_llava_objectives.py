"""The four core objectives train through the llava_onevision backbone (nothing backbone-specific in
the core): 30 joint Adam steps of backbone + heads on one tiny batch against a fixed teacher output
reduce every objective's loss and the LM loss."""

from __future__ import annotations

import types

import torch

from geovr.objectives.configs import CameraPoseConfig, DepthConfig, FeatureDistillConfig, MetricScaleConfig
from geovr.objectives.objectives import build_camera_pose, build_depth, build_feature_distill, build_metric_scale
from geovr.protocols import BuildContext
from geovr.testing.tiny import fixed_teacher_output
from geovr.train.trainer import TrainModule
from geovr_plugin_llava.backbone import build
from geovr_plugin_llava.testing import tiny_batch

B, S, C = 1, 2, 8
TEACHER_LAYERS = (3, 7, 11, 15)


def test_four_objectives_losses_decrease_through_llava(llava_config):
    torch.manual_seed(0)
    backbone = build(llava_config(), BuildContext(seed=0))
    ctx = types.SimpleNamespace(
        backbone=backbone,
        device="cpu",
        teacher=types.SimpleNamespace(num_layers=16, layers=TEACHER_LAYERS, feature_dim=C),
    )
    objectives = [
        build_camera_pose(CameraPoseConfig(hidden_dim=32), ctx),
        build_depth(DepthConfig(width_scale=1 / 32, student_layers=[0, 1, 2, 2]), ctx),
        build_metric_scale(MetricScaleConfig(hidden_dim=16), ctx),
        build_feature_distill(FeatureDistillConfig(teacher_layers=[7, 15], student_layers=[1, 2]), ctx),
    ]
    module = TrainModule(backbone, objectives, lm_weight=1.0).train()
    assert module.request.camera_tokens and module.request.scale_token and module.request.layers == (0, 1, 2)
    teacher = fixed_teacher_output(B, S, C, TEACHER_LAYERS)
    batch = tiny_batch(batch_size=B, num_frames=S)
    inputs = backbone.prepare(batch)
    groups = backbone.parameter_groups()
    opt = torch.optim.Adam([*groups["base"], *groups["new"], *(p for o in objectives for p in o.parameters())], lr=3e-3)

    def losses():
        out = module(inputs, teacher, batch)
        return out, [float(out["lm"].detach())] + [float(o.loss.detach()) for o in out["objectives"]]

    first = None
    for _ in range(30):
        out, values = losses()
        first = first or values
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    with torch.no_grad():
        _, last = losses()
    names = ["lm"] + [o.name for o in objectives]
    for name, a, b in zip(names, first, last, strict=False):
        assert b < 0.5 * a, f"{name}: loss {a:.4f} → {b:.4f} after 30 steps (needed < 0.5×)"


def test_accelerate_trainer_runs_llava_with_the_four_objectives(llava_config, tmp_path):
    """The core trainer, unchanged, on llava_onevision + the four core objectives (tiny teachers and
    videos from :mod:`geovr.testing.tiny`): every loss decreases and checkpoints are written. Seeds 0–3
    gave last/first ≤ 0.72 for the LM loss and ≤ 0.49 for the geometric ones."""
    from geovr.testing import tiny
    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.runlog import read_metrics
    from geovr.train.trainer import build as build_trainer

    torch.manual_seed(0)
    ctx = BuildContext(
        output_dir=str(tmp_path / "run"),
        seed=0,
        teacher=tiny.TinyTeacher(),
        metric_teacher=tiny.TinyMetricTeacher(),
        datasets={"train": tiny.TinyVideos(n=4)},
    )
    ctx.backbone = build(llava_config(), ctx)
    ctx.objectives = [
        build_camera_pose(CameraPoseConfig(hidden_dim=32), ctx),
        build_depth(DepthConfig(width_scale=1 / 32, student_layers=[0, 1, 2, 2]), ctx),
        build_metric_scale(MetricScaleConfig(hidden_dim=16, use_teacher_conf=False), ctx),
        build_feature_distill(FeatureDistillConfig(), ctx),
    ]
    cfg = AccelerateTrainerConfig(
        batch_size=2, lr=3e-3, head_lr=3e-3, warmup_ratio=0.0, progress=False, max_steps=24, save_every=24
    )
    result = build_trainer(cfg, ctx).fit(ctx)
    assert result["steps"] == 24
    rows = read_metrics(tmp_path / "run")
    for key in ["lm_loss", "camera_pose/loss", "depth/loss", "metric_scale/loss", "feature_distill/loss"]:
        first = sum(r[key] for r in rows[:4]) / 4
        last = sum(r[key] for r in rows[-4:]) / 4
        assert last < 0.8 * first, f"{key} did not decrease: {first:.4f} -> {last:.4f}"
    assert (tmp_path / "run" / "checkpoints" / "step-00000024").is_dir()
