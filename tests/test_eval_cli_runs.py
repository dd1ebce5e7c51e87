"""``geovr eval`` on a training run directory and on its ``geovr export`` output (tiny Qwen student,
one training step on synthetic rooms)."""

from __future__ import annotations

import json

import pytest

qwen_testing = pytest.importorskip(
    "geovr_plugin_qwen_vl.testing",
    reason="geovr-plugin-qwen-vl is not installed (pip install -e plugins/geovr-plugin-qwen-vl)",
)


def tiny_recipe(tmp_path, name: str, max_steps: int, tail: str):
    """Write a tiny training recipe (tiny Qwen2.5-VL, synthetic rooms) ending with ``tail``; returns
    ``(recipe_path, run_dir)``."""
    run = tmp_path / "run"
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        f'''
name = "{name}"
output_dir = "{run}"

[backbone]
component = "qwen2_5_vl"
pretrained = "{qwen_testing.cached_tiny_checkpoint("qwen2_5_vl")}"

[data.train]
component = "synthetic_rooms"
num_samples = 2
num_frames = 2
image_size = [32, 32]

[trainer]
component = "accelerate"
max_steps = {max_steps}
progress = false
'''
        + tail
    )
    return recipe, run


@pytest.mark.slow
def test_eval_run_dir_and_export(tmp_path, capsys):
    from geovr.cli.main import main

    recipe, run = tiny_recipe(
        tmp_path,
        "tiny_eval_run",
        1,
        """
[[evaluators]]
component = "synthetic_qa"
max_new_tokens = 2
progress = false
dataset_options = {num_samples = 2, num_frames = 2, image_size = [32, 32]}
""",
    )
    assert main(["run", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert "loaded the student of" in captured.err and "step-00000001" in captured.err
    scores = json.loads(captured.out)["synthetic_qa"]
    saved = json.loads((run / "eval" / "step-00000001" / "synthetic_qa-lmms-eval" / "results.json").read_text())
    assert saved["num_questions"] == 2 and scores["overall"] == pytest.approx(saved["scores"]["overall"])

    # on the run, an evaluator other than the recipe's, with its options as key=value
    assert (
        main(
            [
                "eval",
                str(run),
                "--evaluator",
                "geometry_probe",
                "--json",
                "num_samples=2",
                "progress=false",
                "dataset_options={num_frames = 2, image_size = [32, 32]}",
            ]
        )
        == 0
    )
    assert "depth_absrel_L1" in json.loads(capsys.readouterr().out)["geometry_probe"]
    assert (run / "eval" / "step-00000001" / "geometry_probe" / "probe.json").is_file()

    # the exported plain checkpoint is evaluated like any transformers directory (evaluator options as key=value)
    dest = tmp_path / "exported"
    assert main(["export", str(run), str(dest)]) == 0
    assert (
        main(
            [
                "eval",
                str(dest),
                "--evaluator",
                "synthetic_qa",
                "--output",
                str(tmp_path / "ev"),
                "--json",
                "max_new_tokens=2",
                "progress=false",
                "dataset_options={num_samples = 2, num_frames = 2, image_size = [32, 32]}",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"synthetic_qa"} and "overall" in out["synthetic_qa"]
    assert (tmp_path / "ev" / "synthetic_qa-lmms-eval" / "predictions.jsonl").is_file()
    # a directory that is neither a run nor a checkpoint is a usage error
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 2
    assert "neither a transformers checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_callback_during_and_after_training(tmp_path, capsys):
    from geovr.cli.main import main

    recipe, run = tiny_recipe(
        tmp_path,
        "tiny_eval_callback",
        3,
        """
[[evaluators]]
component = "geometry_probe"
num_samples = 3
progress = false
dataset_options = {num_frames = 2, image_size = [32, 32]}

[[callbacks]]
component = "evaluate"
every = 2
""",
    )
    assert main(["run", str(recipe)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "eval" / "summary.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]
    assert all("geometry_probe/depth_absrel_L2" in r for r in rows)
    assert (run / "eval" / "step-00000002" / "geometry_probe" / "probe.json").is_file()
    assert (run / "eval" / "step-00000003" / "geometry_probe" / "probe.json").is_file()
