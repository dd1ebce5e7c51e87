"""Content-addressed teacher cache: shared entries for shared pixels, new entries for changed pixels (the
trajectory case), what is stored (output groups, dtype), restartable fill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geovr.data.collate import collate
from geovr.errors import DataError
from geovr.recipe import load_recipe
from geovr.testing import tiny
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runner import build_seeded
from geovr.train.teacher_cache import TeacherCache, TeacherSource, make_sources, precompute

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny_synthetic.toml"
SMALL = [
    "data.train.num_samples=2",
    "data.train.questions_per_scene=1",
    "data.train.num_frames=2",
    "data.train.image_size=[32,32]",
]


def synthetic(tmp_path, *extra):
    recipe = load_recipe(RECIPE, [*SMALL, f'trainer.cache_dir="{tmp_path / "c"}"', *extra], require_training=True)
    return build_seeded(recipe, stages=("teacher", "metric_teacher", "data"))


def entries(root) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.safetensors"))


def test_questions_sharing_a_video_and_frames_share_one_entry(tmp_path):
    videos = tiny.TinyVideos(n=2)
    a, b = videos[0], videos[1]
    q1 = {**a, "sample_id": "vid0:q1", "question": "how many chairs?", "pixel_key": "video0|frames"}
    q2 = {**a, "sample_id": "vid0:q2", "question": "how far is the door?", "pixel_key": "video0|frames"}
    other = {**b, "sample_id": "vid1:q1", "pixel_key": "video1|frames"}
    t = tiny.TinyTeacher()
    cache = TeacherCache(tmp_path, t.cache_key(), (2,), mode="auto")
    src = TeacherSource(t, layers=(2,), cache=cache)
    src.encode(collate([q1, other]))
    assert cache.writes == 2
    again = src.encode(collate([q2]))  # another question on the same video and frames: a hit
    assert cache.writes == 2 and cache.hits == 1 and len(entries(tmp_path)) == 2
    torch.testing.assert_close(again.depth[0], src.encode(collate([q1])).depth[0], rtol=0, atol=0)
    # without a pixel_key the frames themselves are hashed: equal pixels share, changed pixels do not
    plain = TeacherCache(tmp_path / "plain", t.cache_key(), (2,))
    m1 = plain.meta_for(collate([{k: v for k, v in q1.items() if k != "pixel_key"}]))
    m2 = plain.meta_for(collate([{k: v for k, v in q2.items() if k != "pixel_key"}]))
    changed = {k: v for k, v in q2.items() if k != "pixel_key"}
    changed["frames"] = changed["frames"].clone()
    changed["frames"][0, 0, 0, 0] += 0.01
    assert m1 == m2 and m1["pixels"].startswith("sha256:")
    assert plain.meta_for(collate([changed]))["pixels"] != m1["pixels"]


def test_trajectory_change_is_a_miss_not_a_silent_reuse(tmp_path):
    """The issue's case: fill on the default trajectory, then train on trajectory = "orbit" from the cache.
    Decision: "only" stops with a clear missing-entry error; "auto" computes and stores the new entries."""
    ctx = synthetic(tmp_path)
    cfg = ctx.recipe.trainer.config
    stats = precompute(ctx, progress=False, config=cfg)
    assert stats["written"] == 2 and len(entries(tmp_path / "c")) == 2
    orbit = synthetic(tmp_path, 'data.train.trajectory="orbit"')
    assert orbit.datasets["train"][0]["sample_id"] == ctx.datasets["train"][0]["sample_id"]  # same ids, new pixels
    batch = collate([orbit.datasets["train"][0]])
    teacher, _ = make_sources(orbit, mode="only", cache_dir=cfg.resolved_cache_dir(), device="cpu", config=cfg)
    with pytest.raises(DataError) as err:
        teacher.encode(batch)
    msg = str(err.value)
    assert "teacher cache miss" in msg and '"trajectory":"orbit"' in msg and "geovr cache RECIPE" in msg
    auto, _ = make_sources(orbit, mode="auto", cache_dir=cfg.resolved_cache_dir(), device="cpu", config=cfg)
    got = auto.encode(batch)
    assert auto.cache.writes == 1 and len(entries(tmp_path / "c")) == 3
    online = orbit.teacher.encode(batch.frames, auto.layers, batch=batch)
    torch.testing.assert_close(got.depth, online.depth, rtol=0, atol=0)  # the orbit's own teacher output
    first = make_sources(ctx, mode="only", cache_dir=cfg.resolved_cache_dir(), device="cpu", config=cfg)[0]
    old = first.encode(collate([ctx.datasets["train"][0]]))
    assert not torch.equal(old.depth, got.depth)


def test_cache_outputs_and_dtype(tmp_path):
    batch = collate([tiny.TinyVideos(n=2)[i] for i in range(2)])
    t = tiny.TinyTeacher()
    ref = TeacherSource(t, layers=(2,)).encode(batch)
    half = TeacherCache(tmp_path / "h", t.cache_key(), (2,), outputs=["depth", "features"], dtype="float16")
    src = TeacherSource(t, layers=(2,), cache=half)
    first = src.encode(batch)
    assert src.online_groups == {"pose"}
    from safetensors import safe_open

    with safe_open(str(entries(tmp_path / "h")[0]), "pt") as fh:
        assert sorted(fh.keys()) == ["depth", "depth_conf", "features.2"]
        assert fh.get_tensor("depth").dtype == torch.float16
    calls = t.calls
    second = src.encode(batch)  # hits for depth/features, but pose is not cached: the teacher runs again
    assert t.calls == calls + 1 and half.hits == 2
    for out in (first, second):
        torch.testing.assert_close(out.pose_enc, ref.pose_enc, rtol=0, atol=0)  # online, exact
        torch.testing.assert_close(out.depth, ref.depth.half().float(), rtol=0, atol=0)  # stored as fp16
    TeacherSource(t, layers=(2,), cache=TeacherCache(tmp_path / "b", t.cache_key(), (2,), dtype="bfloat16")).encode(
        batch
    )
    size_bf16 = sum(p.stat().st_size for p in entries(tmp_path / "b"))
    f32 = TeacherCache(tmp_path / "f", t.cache_key(), (2,))
    TeacherSource(t, layers=(2,), cache=f32).encode(batch)
    size_f32 = sum(p.stat().st_size for p in entries(tmp_path / "f"))
    assert size_bf16 < 0.75 * size_f32
    if hasattr(torch, "float8_e4m3fn"):
        f8 = TeacherCache(tmp_path / "8", t.cache_key(), (2,), dtype="float8_e4m3fn")
        out = TeacherSource(t, layers=(2,), cache=f8).encode(batch)
        torch.testing.assert_close(out.depth, ref.depth, rtol=0.07, atol=0.0)
    with pytest.raises(DataError, match="cache_dtype"):
        TeacherCache(tmp_path, "k", dtype="float4")
    with pytest.raises(DataError, match="cache_outputs"):
        TeacherCache(tmp_path, "k", outputs=["normals"])


def test_interrupted_fill_restarts_where_it_stopped(tmp_path):
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "run"), n=5)
    cfg = AccelerateTrainerConfig(batch_size=2, cache_dir=str(tmp_path / "c"))
    real = ctx.teacher.encode
    budget = {"calls": 2}

    def dies(*args, **kw):
        if budget["calls"] == 0:
            raise KeyboardInterrupt
        budget["calls"] -= 1
        return real(*args, **kw)

    ctx.teacher.encode = dies
    with pytest.raises(KeyboardInterrupt):
        precompute(ctx, progress=False, config=cfg)
    assert len(entries(tmp_path / "c")) == 4
    ctx.teacher.encode = real
    again = precompute(ctx, progress=False, config=cfg)
    assert again["written"] == 1 and again["hits"] == 4 and len(entries(tmp_path / "c")) == 5
