"""Recipes with the DA3 teachers: the shipped tiny VGGT recipe switches to DA3 with one override, and
``recipes/tiny_da3.toml`` (DA3 + DA3METRIC with focal rescaling and sky) validates and trains."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from geovr.recipe import load_recipe
from geovr.recipe.load import find_shipped
from geovr.testing.distributions import run_cli
from geovr.train.runlog import read_metrics
from geovr.train.runner import build_seeded

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


def _train(recipe_name, overrides, tmp_path, steps):
    base = [
        f'output_dir="{tmp_path / "run"}"',
        f"trainer.max_steps={steps}",
        "trainer.save_every=0",
        "trainer.progress=false",
    ]
    recipe = load_recipe(find_shipped(recipe_name), [*overrides, *base], require_training=True)
    ctx = build_seeded(recipe)
    assert ctx.trainer.fit(ctx)["steps"] == steps
    return ctx, read_metrics(tmp_path / "run")


def test_switching_tiny_vggt_to_da3_is_one_line(da3_registered, tmp_path):
    ctx, rows = _train("tiny_vggt", ['teacher.component="da3"'], tmp_path, 12)
    assert type(ctx.teacher).__name__ == "DA3Teacher"
    for key in ("loss", "camera_pose/loss", "depth/loss", "feature_distill/loss", "metric_scale/loss"):
        assert all(math.isfinite(r[key]) for r in rows), key
    for key in ("depth/loss", "feature_distill/loss"):
        first, last = sum(r[key] for r in rows[:3]) / 3, sum(r[key] for r in rows[-3:]) / 3
        assert last < first, f"{key}: {first:.4f} -> {last:.4f}"


def test_tiny_da3_recipe_trains_with_the_da3_metric_teacher(da3_registered, tmp_path):
    ctx, rows = _train("tiny_da3", [], tmp_path, 6)
    assert type(ctx.metric_teacher).__name__ == "DA3MetricTeacher"
    assert all(math.isfinite(r["metric_scale/loss"]) for r in rows)
    assert all(math.isfinite(r["loss"]) for r in rows)


def _dist_info(root: Path) -> Path:
    """An installed-looking ``geovr-plugin-da3`` distribution pointing at this source tree."""
    info = root / "geovr_plugin_da3-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: geovr-plugin-da3\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[geovr]\nda3 = geovr_plugin_da3.plugin\n")
    return root


@pytest.mark.skipif(os.environ.get("GEOVR_LOAD_PLUGINS") == "", reason="external plugins disabled")
def test_entry_point_discovery_and_cli(tmp_path):
    paths = (_dist_info(tmp_path / "site"), PLUGIN_ROOT)
    res = run_cli("list-components", "--kind", "teacher", "--json", paths=paths)
    assert res.returncode == 0, res.stderr
    assert '"da3"' in res.stdout and '"da3_metric"' in res.stdout
    res = run_cli("da3", "convert", "--help", paths=paths)
    assert res.returncode == 0 and "geovr da3 convert" in res.stdout, res.stderr
    res = run_cli("validate", str(find_shipped("tiny_da3")), paths=paths)
    assert res.returncode == 0, res.stdout + res.stderr
