"""Non-finite values never train silently: recipe options, losses, checkpoints (save, resume, export)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from geovr.errors import CheckpointError, RecipeError
from geovr.recipe import load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.testing import tiny
from geovr.train import checkpoint as ckpt_io
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlog import read_metrics
from geovr.train.trainer import NonFiniteLossError, build

CFG = {"batch_size": 2, "lr": 1e-2, "head_lr": 1e-2, "progress": False, "max_steps": 5}


def nan_on_calls(objective, calls):
    """Make ``objective`` return a ``nan`` loss on the given (1-based) forward calls."""
    real = objective.forward
    count = {"n": 0}

    def forward(student, teacher, batch):
        count["n"] += 1
        out = real(student, teacher, batch)
        if count["n"] in calls:
            out.loss = out.loss * float("nan")
        return out

    objective.forward = forward


def fit(out, objectives_nan=(), **kw):
    ctx = tiny.tiny_context(output_dir=str(out), n=6)
    if objectives_nan:
        nan_on_calls(ctx.objectives[1], objectives_nan)  # the depth objective
    return ctx, build(AccelerateTrainerConfig(**{**CFG, **kw}), ctx).fit(ctx)


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.lr=inf", "trainer: lr must be a finite number, got inf"),
        ("trainer.head_lr=nan", "trainer: head_lr must be a finite number, got nan"),
        ("trainer.max_grad_norm=inf", "trainer: max_grad_norm must be a finite number"),
        ("trainer.betas=[0.9, nan]", "trainer: betas must be a finite number"),
        ("objectives.1.weight=nan", "objectives.1: weight must be a finite number, got nan"),
        ("objectives.0.weight_T=-inf", "objectives.0: weight_T must be a finite number, got -inf"),
    ],
)
def test_nonfinite_recipe_options_are_validation_errors(override, key):
    with pytest.raises(RecipeError) as err:
        load_recipe(shipped_recipes()["tiny_synthetic"], [override], require_training=True)
    assert key in str(err.value)
    assert err.value.exit_code == 2


def test_nonfinite_options_are_listed_with_the_other_problems():
    with pytest.raises(RecipeError) as err:
        load_recipe(
            shipped_recipes()["tiny_synthetic"], ["trainer.lr=nan", "trainer.batch_size=0"], require_training=True
        )
    assert "lr must be a finite number" in str(err.value) and "batch_size must be >= 1" in str(err.value)


def test_nonfinite_loss_stops_naming_step_and_objective(tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        fit(tmp_path / "r", objectives_nan={3}, save_every=1)
    msg = str(err.value)
    assert msg.startswith("step 3 ") and "objective 'depth'" in msg and "nan" in msg
    assert err.value.exit_code == 1
    # steps 1-2 were trained and saved; nothing of step 3 was applied or saved
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path / "r")][-1] == "step-00000002"
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]


def test_skip_step_skips_the_optimizer_step_and_counts_it(tmp_path):
    ctx, result = fit(tmp_path / "r", objectives_nan={2, 4}, on_nonfinite="skip_step")
    rows = read_metrics(tmp_path / "r")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [bool(r.get("skipped")) for r in rows] == [False, True, False, True, False]
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 2, 2]
    assert "'depth'" in rows[1]["nonfinite"]
    assert result["steps"] == 5
    for p in ctx.backbone.parameters():
        assert torch.isfinite(p).all()
    json.dumps(rows, allow_nan=False)  # metrics.jsonl stays strict JSON


def test_skipped_step_leaves_the_weights_unchanged(tmp_path):
    ref, _ = fit(tmp_path / "a", max_steps=1)
    ctx, _ = fit(tmp_path / "b", objectives_nan={2}, on_nonfinite="skip_step", max_steps=2)
    for a, b in zip(ref.backbone.parameters(), ctx.backbone.parameters(), strict=False):
        assert torch.equal(a, b)


def test_nonfinite_weights_are_never_written_and_never_loaded(tmp_path):
    fit(tmp_path / "r", max_steps=2)
    ckpt = ckpt_io.find_checkpoint(tmp_path / "r")
    model = load_file(str(ckpt / "model.safetensors"))
    name = sorted(model)[0]
    model[name] = model[name].clone()
    model[name].view(-1)[0] = float("inf")
    with pytest.raises(CheckpointError, match=rf"step-00000009/model.safetensors: tensor '{name}' holds non-finite"):
        ckpt_io.save_checkpoint(
            tmp_path / "r", 9, model=model, objectives={}, optimizer={}, scheduler={}, rng=[], state={}
        )
    assert not (tmp_path / "r" / "checkpoints" / "step-00000009").exists()
    save_file(model, str(ckpt / "model.safetensors"))  # corrupt the saved checkpoint behind geovr's back
    with pytest.raises(CheckpointError, match=rf"{ckpt}/model.safetensors: tensor '{name}' holds non-finite"):
        fit(tmp_path / "r", resume=True, max_steps=2)
    with pytest.raises(CheckpointError, match="cannot be resumed, exported or evaluated"):
        ckpt_io.load_checkpoint(tmp_path / "r")


def test_cli_validate_and_run_refuse_nonfinite_options(capsys):
    from geovr.cli.main import main

    recipe = str(shipped_recipes()["tiny_synthetic"])
    assert main(["validate", recipe, "trainer.lr=inf", "objectives.0.weight=nan"]) == 2
    err = capsys.readouterr().err
    assert "trainer: lr must be a finite number, got inf" in err
    assert "objectives.0: weight must be a finite number, got nan" in err and "Traceback" not in err
    assert main(["run", recipe, "trainer.lr=nan"]) == 2
    assert "trainer: lr must be a finite number, got nan" in capsys.readouterr().err
