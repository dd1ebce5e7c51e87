"""The shipped tiny recipe with DUSt3R as its teacher: validation explains what has to change, and the
switched recipe validates and trains end to end (tiny Qwen2.5-VL student, synthetic rooms)."""

from __future__ import annotations

import math

import pytest

from geovr.errors import RecipeError
from geovr.recipe import load_recipe
from geovr.recipe.load import find_shipped, load_raw
from geovr.recipe.validate import validate
from geovr.train.runlog import read_metrics
from geovr.train.runner import build_seeded

DUST3R_TINY = {"component": "dust3r", "pretrained": "", "model_config": "tiny", "image_size": 64, "square_ok": True}


@pytest.fixture
def tiny_raw():
    path = find_shipped("tiny_synthetic")
    assert path is not None, "recipes/tiny_synthetic.toml is not shipped"
    return load_raw(path)


def test_only_renaming_the_component_reports_the_oracle_options(tiny_raw):
    tiny_raw["teacher"]["component"] = "dust3r"
    with pytest.raises(RecipeError) as info:
        validate(tiny_raw)
    text = str(info.value)
    for key in ("feature_dim", "num_layers", "patch_size"):  # oracle-only options
        assert f"unknown option {key!r} for teacher 'dust3r'" in text
    tiny_raw["teacher"] = dict(DUST3R_TINY)
    with pytest.raises(RecipeError) as info:  # DUSt3R has no metric scale: metric_scale needs a metric teacher
        validate(tiny_raw)
    assert "objective 'metric_scale' requires metric_depth, which teacher 'dust3r'" in str(info.value)


@pytest.mark.parametrize("teacher", ["vggt", "dust3r"])
def test_switching_the_teacher_component_is_the_only_change(teacher, tmp_path):
    """recipes/tiny_vggt.toml names teacher "vggt"; "dust3r" drops in with no other change."""
    overrides = [
        f'teacher.component="{teacher}"',
        f'output_dir="{tmp_path / "run"}"',
        "trainer.max_steps=12",
        "trainer.save_every=0",
        "trainer.progress=false",
    ]
    recipe = load_recipe(find_shipped("tiny_vggt"), overrides, require_training=True)
    ctx = build_seeded(recipe)
    assert type(ctx.teacher).__name__ == {"vggt": "VGGTTeacher", "dust3r": "DUSt3RTeacher"}[teacher]
    assert ctx.trainer.fit(ctx)["steps"] == 12
    rows = read_metrics(tmp_path / "run")
    for key in ("loss", "camera_pose/loss", "depth/loss", "feature_distill/loss", "metric_scale/loss"):
        assert all(math.isfinite(r[key]) for r in rows), key
    for key in ("depth/loss", "feature_distill/loss"):
        first, last = sum(r[key] for r in rows[:3]) / 3, sum(r[key] for r in rows[-3:]) / 3
        assert last < first, f"{key}: {first:.4f} -> {last:.4f}"
