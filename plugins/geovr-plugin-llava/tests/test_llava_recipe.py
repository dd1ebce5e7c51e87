"""The shipped tiny recipe trains a LLaVA-OneVision student with only backbone options changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geovr.recipe import load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.train.runner import train
from geovr_plugin_llava.testing import save_tiny_checkpoint

OBJECTIVES = ("camera_pose", "depth", "metric_scale", "feature_distill")


@pytest.mark.slow
def test_tiny_synthetic_recipe_with_llava_backbone(tmp_path):
    ckpt = save_tiny_checkpoint(str(tmp_path / "llava"))
    overrides = [
        'backbone.component="llava_onevision"',
        f'backbone.pretrained="{ckpt}"',
        'backbone.dtype="float32"',
        f'output_dir="{tmp_path / "run"}"',
        "trainer.progress=false",
        "trainer.save_every=0",
        # the recipe at test size: 8 two-frame 64x64 samples, narrow heads, 200 steps
        "data.train.num_samples=8",
        "data.train.questions_per_scene=1",
        "data.train.num_frames=2",
        "data.train.image_size=[64,64]",
        "data.train.num_objects=[3,6]",
        "trainer.max_steps=200",
        "trainer.batch_size=2",
        "trainer.lr=2e-3",
        "trainer.head_lr=5e-3",
        "trainer.warmup_ratio=0.1",
        "teacher.feature_dim=16",
        "objectives.0.hidden_dim=32",
        "objectives.1.channels=[8,8,16,16]",
        "objectives.1.features=8",
        "objectives.2.hidden_dim=16",
        "objectives.3.hidden_dim=16",
    ]
    recipe = load_recipe(shipped_recipes()["tiny_synthetic"], overrides, require_training=True)
    assert recipe.backbone.spec.distribution == "geovr-plugin-llava"
    result = train(recipe)
    assert result["steps"] == recipe.trainer.config.max_steps
    rows = [json.loads(line) for line in Path(tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("lm_loss", *(f"{o}/loss" for o in OBJECTIVES)):
        values = [r[key] for r in rows if key in r]  # token_dropout: the token objectives skip some steps
        assert len(values) >= 15, f"{key} logged at {len(values)} steps"
        first = sum(values[:5]) / 5
        last = sum(values[-5:]) / 5
        assert last < 0.8 * first, f"{key}: {first:.4f} -> {last:.4f}"
