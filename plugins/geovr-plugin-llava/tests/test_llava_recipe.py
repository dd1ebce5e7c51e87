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
        'backbone.component="llava_onevision"', f'backbone.pretrained="{ckpt}"', 'backbone.dtype="float32"',
        f'output_dir="{tmp_path / "run"}"', "trainer.progress=false", "trainer.save_every=0",
    ]
    recipe = load_recipe(shipped_recipes()["tiny_synthetic"], overrides, require_training=True)
    assert recipe.backbone.spec.distribution == "geovr-plugin-llava"
    result = train(recipe)
    assert result["steps"] == recipe.trainer.config.max_steps
    rows = [json.loads(line) for line in Path(tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("lm_loss", *(f"{o}/loss" for o in OBJECTIVES)):
        first = sum(r[key] for r in rows[:10]) / 10
        last = sum(r[key] for r in rows[-10:]) / 10
        assert last < 0.8 * first, f"{key}: {first:.4f} -> {last:.4f}"
