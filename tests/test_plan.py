"""`geovr plan`: parameters of the shipped recipes' models on the meta device (no weights), the activation
estimate within 25 % of the activation bytes measured on real tiny forwards, the GPU-fit table and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geovr.cli.main import main as cli_main
from geovr.data.collate import collate
from geovr.recipe import load_recipe
from geovr.train.assembly import TrainModule
from geovr.train.plan import measured_activation_bytes, plan
from geovr.train.runner import build_seeded
from geovr.train.teacher_cache import make_sources

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("kind,frames,size", [("qwen2_5_vl", 4, 112), ("qwen3_vl", 2, 128)])
def test_activation_estimate_within_25_percent_of_measured(kind, frames, size):
    overrides = [
        f'backbone.component="{kind}"',
        f"data.train.num_frames={frames}",
        f"data.train.image_size=[{size},{size}]",
        "data.train.num_samples=1",
    ]
    recipe = load_recipe(RECIPES / "tiny_synthetic.toml", overrides, require_training=True)
    ctx = build_seeded(recipe, stages=("backbone", "teacher", "metric_teacher", "objectives", "data"))
    batch = collate([ctx.datasets["train"][0]])
    teacher, metric = make_sources(ctx, mode="off", cache_dir="", device="cpu")
    t_out = teacher.encode(batch)
    module = TrainModule(ctx.backbone, list(ctx.objectives), lm_weight=1.0)
    inputs = ctx.backbone.prepare(batch)
    measured = measured_activation_bytes(lambda: module(inputs, t_out, batch)["total"], [module])
    tokens = int(inputs["input_ids"].shape[1]) + frames + 1  # + camera tokens and the scale token
    est = plan(recipe, tokens=tokens)
    total = est["activations_per_sample"]["total"]
    assert est["activations_per_sample"]["visual_tokens"] == int(
        (inputs["input_ids"] == ctx.backbone.video_token_id).sum()
    )
    print(f"{kind}: estimate {total:.0f} B, measured {measured:.0f} B, ratio {total / measured:.3f}")
    assert total == pytest.approx(measured, rel=0.25), (total, measured, est["activations_per_sample"])


def test_plan_counts_the_reference_models_offline():
    p = plan(load_recipe(RECIPES / "qwen_vggt.toml", require_training=True), entries=100)
    params = p["params"]
    # published sizes: Qwen3-VL-2B 2.13 B (vision tower 0.41 B frozen), VGGT-1B without the tracking head
    # 1.16 B, DA3METRIC-LARGE 0.334 B (the metric teacher the recipe names)
    assert params["student_trainable"] + params["student_frozen"] == pytest.approx(2.13e9, rel=0.01)
    assert params["student_frozen"] == pytest.approx(0.306e9, rel=0.02)  # vision blocks (merger trainable)
    assert params["teacher_frozen"] == pytest.approx(1.158e9, rel=0.01)
    assert params["metric_teacher_frozen"] == pytest.approx(0.335e9, rel=0.01)
    assert p["params_trainable"] == params["student_trainable"] + params["heads_trainable"]
    assert p["params_frozen"] == params["student_frozen"] + params["teacher_frozen"] + params["metric_teacher_frozen"]
    b = p["bytes"]
    assert (
        b["optimizer"] == 2 * b["gradients"]
        and b["gradients"] == params["student_trainable"] * 2 + params["heads_trainable"] * 4
    )
    per = p["per_gpu_bytes"]
    assert per["fsdp"] < per["zero2"] < per["ddp"]
    assert set(p["fits_gb"]) == {"ddp", "zero2", "fsdp"} and p["cache"]["entries"] == 100
    q25 = plan(load_recipe(RECIPES / "qwen25_vggt.toml", require_training=True), entries=1, measure_heads=False)
    assert q25["params"]["student_trainable"] + q25["params"]["student_frozen"] == pytest.approx(3.75e9, rel=0.01)


def test_cli_plan_json(capsys):
    assert cli_main(["plan", str(RECIPES / "tiny_synthetic.toml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params_trainable"] > 0 and data["params_frozen"] >= 0
    # 1600 questions on 200 rooms (questions_per_scene = 8): one cache entry per room's frames
    assert {"ddp", "zero2", "fsdp"} <= set(data["per_gpu_bytes"]) and data["cache"]["entries"] == 200
    assert cli_main(["plan", str(RECIPES / "tiny_synthetic.toml"), 'backbone.pretrained="org/NoSuchModel"']) != 0
    assert "no shipped model config" in capsys.readouterr().err
