"""`geovr cache --estimate`: entries = distinct videos x frame choices, bytes per entry equal to what a fill
writes, `trainer.cache_max_bytes` stops an "auto" run before its first step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geovr.cli.main import main as cli_main
from geovr.data.configs import VideoQAConfig
from geovr.data.synthetic.cli import synthesize
from geovr.data.video_qa import VideoQADataset
from geovr.errors import DataError
from geovr.recipe import load_recipe
from geovr.train.estimate import estimate_cache
from geovr.train.runner import build_seeded
from geovr.train.teacher_cache import precompute

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny_synthetic.toml"
SMALL = [
    "data.train.num_samples=3",
    "data.train.questions_per_scene=1",
    "data.train.num_frames=2",
    "data.train.image_size=[32,48]",
]


@pytest.mark.parametrize("dtype,outputs", [("float32", None), ("bfloat16", '["depth","features"]')])
def test_estimate_matches_the_filled_cache(tmp_path, dtype, outputs):
    extra = [f'trainer.cache_dir="{tmp_path / "c"}"', f'trainer.cache_dtype="{dtype}"']
    if outputs:
        extra.append(f"trainer.cache_outputs={outputs}")
    recipe = load_recipe(RECIPE, SMALL + extra, require_training=True)
    ctx = build_seeded(recipe, stages=("teacher", "metric_teacher", "data"))
    est = estimate_cache(recipe, datasets=ctx.datasets)
    assert est["entries"] == 3 and est["frames"] == [2, 32, 48]
    precompute(ctx, progress=False)
    files = sorted((tmp_path / "c").rglob("*.safetensors"))
    assert len(files) == est["entries"]
    actual = sum(f.stat().st_size for f in files)
    assert est["total_bytes"] == pytest.approx(actual, rel=0.02)
    assert est["bytes_per_entry"] == pytest.approx(actual / 3, rel=0.02)


def test_questions_on_one_video_count_once(tmp_path):
    synthesize(tmp_path / "d", scenes=2, frames=4, size=(16, 24), seed=1, progress=False)
    cfg = VideoQAConfig(
        annotations=str(tmp_path / "d" / "qa.jsonl"), video_root=str(tmp_path / "d" / "videos"), num_frames=2
    )
    ds = VideoQADataset(cfg)
    assert len(ds) > 2  # several questions per scene
    keys = {ds.pixel_key(i) for i in range(len(ds))}
    assert len(keys) == 2
    assert ds[0]["pixel_key"] == ds.pixel_key(0)
    recipe = load_recipe(RECIPE, SMALL, require_training=True)
    est = estimate_cache(recipe, datasets={"train": ds})
    assert est["entries"] == 2
    video = Path(ds.video_path(ds.records[0]))
    video.touch()  # a new modification time: another video identity, another entry
    assert ds.pixel_key(0) not in keys


def test_cache_max_bytes_stops_auto_run_before_it_starts(tmp_path, capsys):
    from geovr.train.runner import train

    out = tmp_path / "run"
    recipe = load_recipe(
        RECIPE,
        SMALL
        + [
            f'output_dir="{out}"',
            f'trainer.cache_dir="{tmp_path / "c"}"',
            'trainer.cache="auto"',
            "trainer.cache_max_bytes=100000",
            "trainer.max_steps=1",
            "trainer.progress=false",
        ],
        require_training=True,
    )
    with pytest.raises(DataError) as err:
        train(recipe)
    msg = str(err.value)
    assert "3 entries" in msg and "cache_max_bytes = 100000" in msg and "stops before training" in msg
    assert 'cache_dtype = "bfloat16"' in msg and "cache_outputs" in msg
    assert not (out / "metrics.jsonl").exists() and not (tmp_path / "c").exists()


def test_cli_estimate_json_needs_no_teacher_run(tmp_path, capsys):
    code = cli_main(["cache", str(RECIPE), *SMALL, f'trainer.cache_dir="{tmp_path / "c"}"', "--estimate", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"] == 3 and data["total_bytes"] == 3 * data["bytes_per_entry"] > 0
    assert not (tmp_path / "c").exists()
    # the reference recipe's data is not on this machine: a clear error naming the fix, then --entries works
    ref = Path(__file__).resolve().parents[1] / "recipes" / "qwen_vggt.toml"
    assert cli_main(["cache", str(ref), "--estimate"]) == 1
    err = capsys.readouterr()
    assert "--entries" in (err.err + err.out)
    assert cli_main(["cache", str(ref), "--estimate", "--entries", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"] == 10 and data["bytes_by_output"]["teacher"]["features"] > 0
