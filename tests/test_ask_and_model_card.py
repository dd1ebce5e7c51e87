"""``geovr export`` writes a model card; ``geovr ask`` answers one question with an export or a run."""

from __future__ import annotations

import json

import pytest

from geovr.cli.main import main as geovr_main
from geovr.data.configs import SyntheticRoomsConfig
from geovr.data.synthetic.dataset import make_sample
from geovr.data.video import write_video
from geovr.recipe import load_recipe
from geovr.recipe.load import shipped_recipes
from geovr.train.export import export
from geovr.train.runner import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step tiny_synthetic run with one synthetic_qa evaluation, its export, and a synthetic room video."""
    root = tmp_path_factory.mktemp("ask")
    run = root / "run"
    recipe = load_recipe(
        shipped_recipes()["tiny_synthetic"],
        # token_dropout off: the two steps then train with the geometry tokens, and the 2-step model babbles
        # a non-empty answer, so comparing the export's answer with the run's is not comparing two empty strings
        [
            "trainer.max_steps=2",
            "trainer.save_every=0",
            "trainer.progress=false",
            "trainer.token_dropout=0",
            f'output_dir="{run}"',
        ],
        require_training=True,
    )
    train(recipe)
    assert geovr_main(["eval", str(run), "--evaluator", "synthetic_qa", "limit=2"]) == 0
    dest = export(run, root / "exported")
    sample = make_sample(7, 0, SyntheticRoomsConfig(num_frames=4, image_size=[64, 64]))
    video = root / "room.mp4"
    write_video(video, sample["frames"])  # [S,3,H,W] in [0,1]
    return run, dest, video


@pytest.mark.slow
def test_export_writes_a_model_card(trained):
    run, dest, _ = trained
    card = (dest / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "# tiny_synthetic" in card and "checkpoint `step-00000002`" in card
    assert "- `oracle` (feature_dim = 32" in card
    for row in (
        "| `camera_pose` | 2.5 | hidden_dim = 64 |",
        "| `depth` | 1.0 |",
        "| `metric_scale` | 1.0 |",
        "| `feature_distill` | 1.0 |",
    ):  # the method's default weights
        assert row in card
    assert "- data: `synthetic_rooms`" in card and "max_steps = 2" in card and "final losses (step 2)" in card
    results = sorted(run.glob("eval/step-00000002/*/results.json"))
    assert len(results) == 1
    doc = json.loads(results[0].read_text())
    assert f"### synthetic_qa, {doc['protocol']} protocol (`{results[0].relative_to(run)}`)" in card
    overall = doc["scores"]["overall"]
    assert f"| overall | {'n/a' if overall is None else f'{overall:.2f}'} |" in card
    assert (run / "recipe.toml").read_text().rstrip() in card


@pytest.mark.slow
def test_ask_answers_with_an_export_and_with_a_run_alike(trained, capsys):
    run, dest, video = trained
    question = "How many chairs are in the room?"
    answers = {}
    for model in (dest, run):
        capsys.readouterr()
        assert (
            geovr_main(
                [
                    "ask",
                    str(model),
                    str(video),
                    question,
                    "--num-frames",
                    "2",
                    "--frame-size",
                    "64",
                    "64",
                    "--max-new-tokens",
                    "4",
                    "--json",
                ]
            )
            == 0
        )
        out = json.loads(capsys.readouterr().out)
        assert out["question"] == question and out["frames"] == [0, 3]
        answers[model.name] = out["answer"]
    assert isinstance(answers["exported"], str) and answers["exported"]  # the tiny random model babbles, but answers
    assert answers["exported"] == answers["run"]  # greedy decoding, same weights: the export is the run


def test_ask_errors_name_the_missing_path(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    assert geovr_main(["ask", str(tmp_path), str(video), "q"]) == 2
    assert f"geovr: error: video not found: {video}" in capsys.readouterr().err
    video.write_bytes(b"")
    assert geovr_main(["ask", str(tmp_path / "nope"), str(video), "q"]) == 2
    assert f"geovr: error: model not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    assert geovr_main(["ask", str(tmp_path), str(video), "q"]) == 2
    assert "neither a training run directory (no recipe.toml) nor an exported model" in capsys.readouterr().err
