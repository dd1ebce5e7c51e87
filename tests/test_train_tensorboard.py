"""``trainer.tensorboard = true`` writes the same scalars as metrics.jsonl to RUN_DIR/tensorboard."""

from __future__ import annotations

import json

import pytest

from geovr.recipe import load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.train.runner import train

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is not installed (it is in the test extra: pip install -r requirements-dev.txt)",
)


def test_tensorboard_scalars_match_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    recipe = load_recipe(
        shipped_recipes()["tiny_synthetic"],
        [
            "trainer.max_steps=3",
            "trainer.log_every=1",
            "trainer.tensorboard=true",
            "trainer.progress=false",
            "trainer.save_every=0",
            f'output_dir="{run}"',
        ],
        require_training=True,
    )
    train(recipe)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    for key in ("loss", "lm_loss", "camera_pose/loss", "depth/loss", "metric_scale/loss", "feature_distill/loss"):
        # token_dropout leaves the token objectives out of some steps: those steps log no value for them
        logged = [r for r in rows if key in r]
        assert logged, f"{key} was never logged"
        events = acc.Scalars(key)
        assert [e.step for e in events] == [r["step"] for r in logged]
        assert [e.value for e in events] == pytest.approx([r[key] for r in logged], rel=1e-6)
    assert any("camera_pose/loss" not in r for r in rows)  # and a step without them is simply absent


@pytest.mark.slow
def test_log_with_goes_through_accelerate_trackers(tmp_path):
    """``trainer.log_with = ["tensorboard"]``: accelerate's tracker gets every logged step; metrics.jsonl stays."""
    run = tmp_path / "run"
    recipe = load_recipe(
        shipped_recipes()["tiny_synthetic"],
        [
            "trainer.max_steps=2",
            'trainer.log_with=["tensorboard"]',
            "trainer.progress=false",
            "trainer.save_every=0",
            f'output_dir="{run}"',
        ],
        require_training=True,
    )
    train(recipe)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("depth/loss")] == pytest.approx([r["depth/loss"] for r in rows], rel=1e-6)
    hparams = list((run / "tensorboard").glob("*/hparams.yml"))  # accelerate's store_init_configuration ran
    assert len(hparams) == 1 and f"trainer.lr: {recipe.trainer.config.lr}" in hparams[0].read_text()


def test_log_with_names_are_checked_against_accelerate():
    from geovr.errors import RecipeError
    from geovr.train.assembly import tracker_availability
    from geovr.train.configs import AccelerateTrainerConfig

    with pytest.raises(
        RecipeError,
        match=r"trainer: log_with: unknown tracker 'tensorbord' \(did you mean "
        r"'tensorboard'\?\); accelerate knows .*mlflow.*wandb",
    ):
        load_recipe(shipped_recipes()["tiny_synthetic"], ['trainer.log_with=["tensorbord"]'], require_training=True)
    from accelerate.tracking import get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    missing = next(n for n in ("aim", "clearml", "dvclive", "swanlab", "comet_ml") if n not in available)
    problems = tracker_availability(AccelerateTrainerConfig(log_with=[missing, "tensorboard"]))
    assert problems == [
        f"trainer.log_with: the {missing!r} tracker's package is not installed "
        f"(pip install '{missing.replace('_', '-')}')"
    ]
