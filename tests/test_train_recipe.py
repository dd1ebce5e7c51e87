"""The engine on the real tiny parts through a recipe: tiny Qwen3-VL student, oracle teacher, all four
objectives, synthetic rooms. Losses decrease, the run directory is complete, ``geovr cache`` feeds a
cache-only run with identical losses, and user mistakes stop the run before its first step."""

from __future__ import annotations

import json
import tomllib

import pytest

from geovr.cli.main import main as geovr_main
from geovr.errors import GeovrError, RecipeError
from geovr.recipe import load_recipe
from geovr.train.runlog import read_metrics
from geovr.train.runner import build_seeded, train

RECIPE = """\
name = "tiny_engine"
seed = 0
output_dir = "{out}"

[backbone]
component = "qwen3_vl"
pretrained = "{pretrained}"
freeze = ["vision"]
max_new_tokens = 4

[teacher]
component = "oracle"
feature_dim = 16
num_layers = 4
layers = [1, 3]
patch_size = 16

[[objectives]]
component = "camera_pose"
hidden_dim = 32

[[objectives]]
component = "depth"
channels = [8, 8, 16, 16]
features = 8
teacher_layers = [0, 1, 2, 3]

[[objectives]]
component = "metric_scale"
hidden_dim = 16

[[objectives]]
component = "feature_distill"
teacher_layers = [1, 3]
hidden_dim = 16

[data.train]
component = "synthetic_rooms"
num_samples = 4
num_frames = 2
image_size = [64, 64]
num_objects = [3, 6]

[trainer]
component = "accelerate"
max_steps = 40
batch_size = 2
lr = 1e-3
head_lr = 5e-3
warmup_ratio = 0.1
progress = false
cache_dir = "{cache}"
"""

OBJECTIVES = ("camera_pose", "depth", "metric_scale", "feature_distill")


@pytest.fixture(scope="module")
def pretrained():
    from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint

    return cached_tiny_checkpoint("qwen3_vl")


@pytest.fixture
def recipe_file(tmp_path, pretrained):
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE.format(out=tmp_path / "run", pretrained=pretrained, cache=tmp_path / "cache"))
    return path


def test_all_four_objectives_and_lm_loss_decrease(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file, require_training=True)
    result = train(recipe)
    assert result["steps"] == 40
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 40
    for key in ("loss", "lm_loss", *(f"{o}/loss" for o in OBJECTIVES)):
        first = sum(r[key] for r in rows[:8]) / 8
        last = sum(r[key] for r in rows[-8:]) / 8
        assert last < 0.9 * first, f"{key}: {first:.4f} -> {last:.4f}"
    # objective metrics are logged too (e.g. depth delta1, camera rotation error)
    assert {"depth/delta1", "camera_pose/rot_err_deg", "metric_scale/scale_ratio_err"} <= set(rows[-1])
    # total = lm + Σ w_k L_k with the recipe-default weights (camera 2.5, others 1)
    r = rows[-1]
    expect = (
        r["lm_loss"]
        + 2.5 * r["camera_pose/loss"]
        + r["depth/loss"]
        + r["metric_scale/loss"]
        + r["feature_distill/loss"]
    )
    assert r["loss"] == pytest.approx(expect, rel=1e-5)
    # run directory: the merged recipe (round-trips through TOML), environment with plugins
    assert tomllib.loads((tmp_path / "run" / "recipe.toml").read_text()) == recipe.raw
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert any(p["distribution"] == "geovr-plugin-qwen-vl" for p in env["plugins"])
    assert env["packages"]["transformers"]


def test_geovr_cache_verb_then_cache_only_run_gives_identical_losses(recipe_file, tmp_path, capsys):
    short = ["trainer.max_steps=4"]
    assert geovr_main(["cache", str(recipe_file), *short, "--quiet"]) == 0
    assert "4 of 4 distinct entries" in capsys.readouterr().err
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 4
    off = load_recipe(recipe_file, [*short, 'trainer.cache="off"', f'output_dir="{tmp_path / "off"}"'])
    only = load_recipe(recipe_file, [*short, 'trainer.cache="only"', f'output_dir="{tmp_path / "only"}"'])
    train(off)
    ctx = build_seeded(only)
    calls = []
    original = ctx.teacher.encode
    ctx.teacher.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    ctx.trainer.fit(ctx)
    assert calls == []  # the oracle never ran: every output came from the cache
    strip = [{k: v for k, v in r.items() if "loss" in k} for r in read_metrics(tmp_path / "off")]
    assert strip == [{k: v for k, v in r.items() if "loss" in k} for r in read_metrics(tmp_path / "only")]


def test_bad_data_path_stops_before_training(recipe_file, tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    head, tail = recipe_file.read_text().split("[data.train]")
    data = f'[data.train]\ncomponent = "video_qa"\nannotations = "{missing}"\nvideo_root = "{tmp_path}"\n\n'
    recipe_file.write_text(head + data + "[trainer]" + tail.split("[trainer]")[1])
    with pytest.raises(GeovrError, match=f"data.train.annotations: file not found: {missing}"):
        train(load_recipe(recipe_file, require_training=True))
    assert geovr_main(["run", str(recipe_file)]) == 2  # the CLI route: a message, no traceback
    err = capsys.readouterr().err
    assert f"data.train.annotations: file not found: {missing}" in err and "nothing was built" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_out_of_range_layer_and_missing_checkpoint_stop_before_training(recipe_file, tmp_path, capsys):
    with pytest.raises(RecipeError) as err:
        train(load_recipe(recipe_file, ["objectives.3.student_layers=[1, 7]"], require_training=True))
    assert "feature_distill" in str(err.value) and "[7]" in str(err.value) and "0..2" in str(err.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    code = geovr_main(["run", str(recipe_file), "--resume", str(tmp_path / "never_ran")])
    err = capsys.readouterr().err
    assert code == 1 and "never_ran: no such run or checkpoint directory" in err


def test_resume_after_kill_matches_uninterrupted_run_on_real_parts(recipe_file, tmp_path):
    over = ["trainer.max_steps=5", "trainer.save_every=2"]
    train(load_recipe(recipe_file, [*over, f'output_dir="{tmp_path / "ref"}"']))

    class Kill:
        def on_step_end(self, state):
            if state.step == 3:
                raise KeyboardInterrupt

    cut = load_recipe(recipe_file, [*over, f'output_dir="{tmp_path / "cut"}"'])
    ctx = build_seeded(cut)
    ctx.callbacks = [Kill()]
    with pytest.raises(KeyboardInterrupt):
        ctx.trainer.fit(ctx)
    train(load_recipe(recipe_file, [*over, f'output_dir="{tmp_path / "cut"}"', "trainer.resume=true"]))
    ref, got = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "cut")
    losses = [k for k in ref[0] if "loss" in k]
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    assert [[r[k] for k in losses] for r in got] == [[r[k] for k in losses] for r in ref]


def test_gradient_checkpointing_passthrough_gives_the_same_losses(recipe_file, tmp_path):
    over = ["trainer.max_steps=2"]
    train(load_recipe(recipe_file, [*over, f'output_dir="{tmp_path / "plain"}"']))
    ctx = build_seeded(
        load_recipe(recipe_file, [*over, f'output_dir="{tmp_path / "gc"}"', "trainer.gradient_checkpointing=true"])
    )
    hf = ctx.backbone.hf
    flag = "is_activation_checkpointing" if hasattr(hf, "is_activation_checkpointing") else "is_gradient_checkpointing"
    assert not getattr(hf, flag)
    ctx.trainer.fit(ctx)
    assert getattr(hf, flag)
    a, b = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "gc")
    for ra, rb in zip(a, b, strict=False):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
