"""The accelerate trainer on tiny real torch components (geovr.testing.tiny): losses, groups, checks."""

from __future__ import annotations

import json

import pytest
import torch

from geovr.errors import CheckpointError, RecipeError
from geovr.testing import tiny
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlog import read_metrics
from geovr.train.teacher_cache import merge_metric
from geovr.train.trainer import build, parameter_groups

FAST = {"batch_size": 2, "lr": 1e-2, "head_lr": 1e-2, "warmup_ratio": 0.0, "progress": False}


def fit(ctx, **kw):
    cfg = AccelerateTrainerConfig(**{**FAST, **kw})
    return build(cfg, ctx).fit(ctx)


def test_end_to_end_losses_decrease_and_run_dir(tmp_path):
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "run"), n=8)
    ctx.teacher.train()  # the trainer must put the teacher in eval mode itself
    result = fit(ctx, max_steps=24, save_every=8, keep_last=2)
    assert result["steps"] == 24
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 25))
    keys = ["loss", "lm_loss", "feature_distill/loss", "depth/loss", "camera_pose/loss"]
    for key in keys:
        first = sum(r[key] for r in rows[:4]) / 4
        last = sum(r[key] for r in rows[-4:]) / 4
        assert last < 0.8 * first, f"{key} did not decrease: {first:.4f} -> {last:.4f}"
    assert "feature_distill/cos" in rows[0] and "depth/abs_rel" in rows[0]
    assert all(r["grad_norm"] > 0 and r["lr"] > 0 for r in rows[:-1])
    # total = lm + Σ weight·L_k (weights 1)
    r = rows[3]
    assert r["loss"] == pytest.approx(
        r["lm_loss"] + r["feature_distill/loss"] + r["depth/loss"] + r["camera_pose/loss"], rel=1e-5
    )
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-00000016", "step-00000024"]  # keep_last=2, saved every 8 and at the end
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert torch.__version__.startswith(env["packages"]["torch"]) and env["packages"]["accelerate"]
    assert any(p["name"] == "geovr.train.plugin" for p in env["plugins"])
    assert not ctx.teacher.training and not any(p.requires_grad for p in ctx.teacher.parameters())


def test_parameter_groups_rates_and_frozen_excluded():
    torch.manual_seed(0)
    bb = tiny.TinyBackbone()
    objs = [tiny.TinyFeatureObjective(), tiny.TinyCameraObjective()]
    groups = {g["name"]: g for g in parameter_groups(bb, objs, lr=2e-5, head_lr=1e-4, weight_decay=0.0)}
    assert groups["base"]["lr"] == 2e-5 and groups["new"]["lr"] == 1e-4 and groups["heads"]["lr"] == 1e-4
    ids = {id(p) for g in groups.values() for p in g["params"]}
    assert id(bb.embed.weight) not in ids  # frozen
    assert {id(bb.camera_token), id(bb.scale_token)} == {id(p) for p in groups["new"]["params"]}
    assert {id(p) for o in objs for p in o.parameters()} == {id(p) for p in groups["heads"]["params"]}
    n_trainable = sum(1 for p in bb.parameters() if p.requires_grad) + sum(1 for o in objs for _ in o.parameters())
    assert len(ids) == n_trainable


def test_cosine_warmup_schedule(tmp_path):
    ctx = tiny.tiny_context(output_dir=str(tmp_path), n=4, objectives=("camera",))
    fit(ctx, max_steps=10, warmup_ratio=0.2, lr=1e-3, head_lr=1e-2)
    lrs = [r["lr"] for r in read_metrics(tmp_path)]
    head = [r["head_lr"] for r in read_metrics(tmp_path)]
    # lr logged after step k is the one for step k+1: warm-up 2 steps, then cosine to 0
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 4 / 8)).item()))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and head[1] == pytest.approx(1e-2)


def test_schedule_factors_equal_transformers_cosine_with_warmup():
    from transformers import get_cosine_schedule_with_warmup

    from geovr.train.schedule import cosine_with_warmup

    for warmup, total in ((0, 7), (3, 20), (5, 5)):
        mine = cosine_with_warmup(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), warmup, total)
        ref = get_cosine_schedule_with_warmup(
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), warmup, total
        )
        for _ in range(total + 2):
            assert mine.get_last_lr() == ref.get_last_lr()
            mine.optimizer.step(), ref.optimizer.step()
            mine.step(), ref.step()


def test_gradient_accumulation_matches_larger_batch(tmp_path):
    def params_after(**kw):
        ctx = tiny.tiny_context(output_dir=str(tmp_path / str(kw)), n=8)
        for m in ctx.backbone.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        fit(ctx, max_steps=3, max_grad_norm=0.0, **kw)
        return {k: v.detach().clone() for k, v in ctx.backbone.named_parameters()}

    a = params_after(batch_size=4, grad_accum=1)
    b = params_after(batch_size=2, grad_accum=2)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    assert any(not torch.equal(a[k], tiny.TinyBackbone().state_dict()[k]) for k in a)


def test_metric_teacher_merged_and_resized(tmp_path):
    ctx = tiny.tiny_context(
        output_dir=str(tmp_path), n=4, objectives=("depth", "metric_depth"), metric_teacher=tiny.TinyMetricTeacher()
    )
    result = fit(ctx, max_steps=3)
    assert result["metric_depth/loss"] > 0 and result["depth/loss"] > 0
    frames = torch.rand(2, 2, 3, 16, 16)
    base = ctx.teacher.encode(frames)
    merged = merge_metric(base, ctx.metric_teacher.encode(frames))
    assert merged.metric_depth.shape == merged.depth.shape == (2, 2, 8, 8)
    ref = torch.nn.functional.interpolate(
        (2.0 + frames.mean(2)).reshape(4, 1, 16, 16), size=(8, 8), mode="bilinear", align_corners=False
    ).reshape(2, 2, 8, 8)
    torch.testing.assert_close(merged.metric_depth, ref, rtol=0, atol=0)


def test_stops_before_training_with_named_problems(tmp_path):
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "a"), n=4, objectives=("feature",))
    ctx.objectives[0].student_needs = type(ctx.objectives[0].student_needs)(layers=(7,))
    ctx.objectives[0].teacher_layers = (9,)
    with pytest.raises(RecipeError) as err:
        fit(ctx, max_steps=2)
    msg = str(err.value)
    assert "objectives.0.student_layers: [7] outside 0..2 (hidden states of the 2-layer backbone)" in msg
    assert "objectives.0.teacher_layers: [9] outside 0..2 (the teacher has 3 layers)" in msg
    assert not (tmp_path / "a" / "metrics.jsonl").exists()

    empty = tiny.tiny_context(output_dir=str(tmp_path / "b"), n=4)
    empty.datasets["train"] = tiny.TinyVideos(n=0)
    with pytest.raises(RecipeError, match="data.train: the training dataset is empty"):
        fit(empty, max_steps=2)

    no_teacher = tiny.tiny_context(output_dir=str(tmp_path / "c"), n=4, objectives=("depth",))
    no_teacher.teacher = None
    with pytest.raises(
        RecipeError, match=r"objectives.0: objective 'depth' needs a teacher providing depth; add a \[teacher\] table"
    ):
        fit(no_teacher, max_steps=2)

    with pytest.raises(CheckpointError, match="no complete checkpoint found"):
        fit(tiny.tiny_context(output_dir=str(tmp_path / "d"), n=4), max_steps=2, resume=str(tmp_path))
    missing = tmp_path / "nope"
    with pytest.raises(CheckpointError, match=f"{missing}: no such run"):
        fit(tiny.tiny_context(output_dir=str(tmp_path / "d"), n=4), max_steps=2, resume=str(missing))


def test_fresh_run_refuses_to_mix_with_old_checkpoints(tmp_path):
    fit(tiny.tiny_context(output_dir=str(tmp_path), n=4, objectives=("camera",)), max_steps=1)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        fit(tiny.tiny_context(output_dir=str(tmp_path), n=4, objectives=("camera",)), max_steps=1)
    result = fit(tiny.tiny_context(output_dir=str(tmp_path), n=4, objectives=("camera",)), max_steps=1, overwrite=True)
    assert result["steps"] == 1


def test_config_check_reports_every_problem():
    cfg = AccelerateTrainerConfig(batch_size=0, warmup_ratio=1.5, betas=[0.9], accelerate_config="/no/such.yaml")
    problems = cfg.check()
    assert any("batch_size must be >= 1" in p for p in problems)
    assert any("warmup_ratio" in p for p in problems) and any("betas" in p for p in problems)
    assert any("accelerate_config: file not found: /no/such.yaml" in p for p in problems)


@pytest.mark.parametrize("precision,dtype", [("no", torch.float32), ("bf16", torch.bfloat16)])
def test_mixed_precision_autocasts_the_student(tmp_path, precision, dtype):
    ctx = tiny.tiny_context(output_dir=str(tmp_path), n=4, objectives=("feature",))
    seen = []
    obj = ctx.objectives[0]
    original = obj.forward
    obj.forward = lambda student, teacher, batch: (
        seen.append(student.hidden[1].dtype) or original(student, teacher, batch)
    )
    result = fit(ctx, max_steps=2, mixed_precision=precision)
    assert seen == [dtype, dtype] and torch.isfinite(torch.tensor(result["loss"]))
    assert all(p.dtype == torch.float32 for p in ctx.backbone.parameters())  # master weights stay fp32


def test_accelerate_config_launch_command_and_single_process_warning(tmp_path, monkeypatch):
    import sys

    from geovr.train.launch import launch_command, launched

    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\n")
    cmd = launch_command(str(cfg_file), ["run", "r.toml", "trainer.max_steps=2"])
    assert cmd == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(cfg_file),
        "-m",
        "geovr",
        "run",
        "r.toml",
        "trainer.max_steps=2",
    ]
    assert not launched({}) and launched({"LOCAL_RANK": "0"}) and launched({"GEOVR_LAUNCHED": "1"})
    for k in ("GEOVR_LAUNCHED", "LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(k, raising=False)
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "run"), n=4, objectives=("camera",))
    with pytest.warns(UserWarning, match="applied by the launcher"):
        fit(ctx, max_steps=1, accelerate_config=str(cfg_file))


def test_recipe_toml_writer_round_trips():
    import math
    import tomllib

    from geovr.recipe.dump import to_toml

    data = {
        "name": 'x "quoted" é',
        "seed": 3,
        "lr": 2e-5,
        "big": float("inf"),
        "flag": False,
        "list": [1, 2],
        "empty": [],
        "backbone": {"component": "qwen3_vl", "lora": {"rank": 4, "dotted.key": 1}},
        "objectives": [
            {"component": "depth", "channels": [8, 16], "extra": {"a": [0.5]}},
            {"component": "camera_pose"},
        ],
        "data": {"train": {"component": "synthetic_rooms", "image_size": [64, 64]}},
    }
    back = tomllib.loads(to_toml(data))
    assert math.isinf(back.pop("big")) and back == {k: v for k, v in data.items() if k != "big"}


def test_epochs_mode_log_every_and_workers_keep_the_data_order(tmp_path):
    runs = {}
    for workers in (0, 1):
        ctx = tiny.tiny_context(output_dir=str(tmp_path / f"w{workers}"), n=6)
        result = fit(ctx, max_steps=0, epochs=2, log_every=2, num_workers=workers)
        assert result["steps"] == 6 and result["epoch"] == 1  # 3 batches per epoch, 2 epochs
        runs[workers] = read_metrics(tmp_path / f"w{workers}")
    assert [r["step"] for r in runs[0]] == [2, 4, 6]
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]]


def test_token_dropout_trains_some_micro_batches_without_geometry_tokens(tmp_path):
    """``token_dropout``: the drawn micro-batches run without camera/scale tokens, the objectives that read
    them sit out (absent from the log, not logged as 0), the others and the LM loss always run, and the
    draw is the same in a second run."""
    from geovr.data.collate import collate
    from geovr.train.assembly import TrainModule

    def run(name):
        ctx = tiny.tiny_context(output_dir=str(tmp_path / name), n=8)
        fit(ctx, max_steps=16, token_dropout=0.5)
        return read_metrics(tmp_path / name)

    rows = run("a")
    plain = [r["step"] for r in rows if "camera_pose/loss" not in r]
    assert 0 < len(plain) < 16, plain  # 16 draws at p = 0.5: both kinds occur
    for r in rows:
        assert "depth/loss" in r and "feature_distill/loss" in r and "lm_loss" in r
        expected = r["lm_loss"] + r["feature_distill/loss"] + r["depth/loss"] + r.get("camera_pose/loss", 0.0)
        assert r["loss"] == pytest.approx(expected, rel=1e-5)
    assert [r["step"] for r in run("b") if "camera_pose/loss" not in r] == plain

    # where no objective inserts tokens the option changes nothing
    tokenless = {}
    for p in (0.0, 0.5):
        ctx = tiny.tiny_context(output_dir=str(tmp_path / f"t{p}"), n=8, objectives=("feature", "depth"))
        fit(ctx, max_steps=6, token_dropout=p)
        tokenless[p] = [r["loss"] for r in read_metrics(tmp_path / f"t{p}")]
    assert tokenless[0.5] == tokenless[0.0]

    # the module itself: plain=True asks the backbone for no tokens and skips the token objectives
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "m"), n=2)
    module = TrainModule(ctx.backbone, list(ctx.objectives), lm_weight=1.0)
    assert module.request.inserts_tokens and not module.request.without_tokens().inserts_tokens
    seen = []
    ctx.backbone.register_forward_hook(lambda m, args, kwargs, out: seen.append(out), with_kwargs=True)
    batch = collate([ctx.datasets["train"][i] for i in range(2)])
    inputs = ctx.backbone.prepare(batch)
    teacher = ctx.teacher.encode(batch.frames)
    out = module(inputs, teacher, batch, plain=True)
    assert seen[-1].camera is None and seen[-1].scale is None
    assert [o is None for o in out["objectives"]] == [
        bool(o.student_needs.camera_tokens or o.student_needs.scale_token) for o in ctx.objectives
    ]
    full = module(inputs, teacher, batch)
    assert seen[-1].camera is not None and all(o is not None for o in full["objectives"])


def test_token_dropout_must_be_a_probability_below_one():
    assert any("token_dropout" in p for p in AccelerateTrainerConfig(token_dropout=1.0).check())
    assert any("token_dropout" in p for p in AccelerateTrainerConfig(token_dropout=-0.1).check())
    assert not any("token_dropout" in p for p in AccelerateTrainerConfig(token_dropout=0.3).check())
