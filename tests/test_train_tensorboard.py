"""``trainer.tensorboard = true`` writes the same scalars as metrics.jsonl to RUN_DIR/tensorboard."""

from __future__ import annotations

import json

import pytest

from geovr.recipe import load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.train.runner import train

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is not installed (it is in the test extra: pip install -r requirements-dev.txt)")


def test_tensorboard_scalars_match_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    recipe = load_recipe(shipped_recipes()["tiny_synthetic"],
                         ["trainer.max_steps=3", "trainer.tensorboard=true", "trainer.progress=false",
                          "trainer.save_every=0", f'output_dir="{run}"'], require_training=True)
    train(recipe)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    for key in ("loss", "lm_loss", "camera_pose/loss", "depth/loss", "metric_scale/loss", "feature_distill/loss"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == [r["step"] for r in rows]
        assert [e.value for e in events] == pytest.approx([r[key] for r in rows], rel=1e-6)
