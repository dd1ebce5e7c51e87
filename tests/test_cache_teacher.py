"""Teacher-output cache: identical losses cached vs online, 'only' misses, stale keys, atomic writes."""

from __future__ import annotations

import pytest
import torch

from geovr.data.collate import collate
from geovr.errors import DataError
from geovr.testing import tiny
from geovr.train import teacher_cache as cache_mod
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlog import read_metrics
from geovr.train.teacher_cache import TeacherCache, TeacherSource, precompute
from geovr.train.trainer import build


def train(out, cache_dir, mode, **kw):
    ctx = tiny.tiny_context(output_dir=str(out), n=6)
    cfg = AccelerateTrainerConfig(
        batch_size=2, lr=1e-2, head_lr=1e-2, max_steps=6, progress=False, cache=mode, cache_dir=str(cache_dir), **kw
    )
    build(cfg, ctx).fit(ctx)
    return ctx, [{k: v for k, v in r.items() if "loss" in k or k.endswith("/cos")} for r in read_metrics(out)]


def test_cache_on_vs_off_identical_losses(tmp_path):
    off_ctx, off = train(tmp_path / "off", tmp_path / "c", "off")
    assert off_ctx.teacher.calls == 6 and not (tmp_path / "c").exists()
    auto_ctx, auto = train(tmp_path / "auto", tmp_path / "c", "auto")  # empty cache: computes + stores
    assert auto_ctx.teacher.calls == 3  # epoch 2 already reads what epoch 1 stored
    only_ctx, only = train(tmp_path / "only", tmp_path / "c", "only")  # served entirely from the cache
    assert only_ctx.teacher.calls == 0
    assert off == auto == only
    files = list((tmp_path / "c").rglob("*.safetensors"))
    assert len(files) == 6  # one per sample (6 samples, 2 epochs)


def test_only_mode_miss_and_stale_teacher_are_clear_errors(tmp_path):
    batch = collate([tiny.TinyVideos(n=2)[i] for i in range(2)])
    old = tiny.TinyTeacher(seed=1)
    src = TeacherSource(old, layers=(2,), cache=TeacherCache(tmp_path, old.cache_key(), (2,), mode="auto"))
    src.encode(batch)
    new = tiny.TinyTeacher(seed=2)  # "new weights": other cache key, the old entries are stale
    only = TeacherSource(new, layers=(2,), cache=TeacherCache(tmp_path, new.cache_key(), (2,), mode="only"))
    with pytest.raises(DataError) as err:
        only.encode(batch)
    msg = str(err.value)
    assert "teacher cache miss" in msg and "'tiny-0000'" in msg and "resolution 16x16" in msg
    assert "1 other teacher key(s)" in msg and "stale" in msg and "geovr cache RECIPE" in msg
    assert new.calls == 0


def test_stale_entry_recomputed_in_auto_and_rejected_in_only(tmp_path):
    batch = collate([tiny.TinyVideos(n=1)[0]])
    t = tiny.TinyTeacher()
    cache = TeacherCache(tmp_path, t.cache_key(), (2,), mode="auto")
    ref = TeacherSource(t, layers=(2,), cache=cache).encode(batch)
    meta = cache.meta_for(batch)
    path = cache.path_for(meta)
    from safetensors.torch import save_file

    save_file({"depth": torch.zeros(2, 8, 8)}, str(path), metadata={**meta, "teacher_key": "old"})
    with pytest.raises(DataError, match="is stale"):
        TeacherSource(t, layers=(2,), cache=TeacherCache(tmp_path, t.cache_key(), (2,), mode="only")).encode(batch)
    auto = TeacherCache(tmp_path, t.cache_key(), (2,), mode="auto")
    again = TeacherSource(t, layers=(2,), cache=auto).encode(batch)
    assert auto.stale == 1 and auto.writes == 1
    torch.testing.assert_close(again.depth, ref.depth, rtol=0, atol=0)
    hit = TeacherCache(tmp_path, t.cache_key(), (2,), mode="only")
    TeacherSource(t, layers=(2,), cache=hit).encode(batch)
    assert hit.hits == 1


def test_atomic_store_leaves_no_partial_entry(tmp_path, monkeypatch):
    t = tiny.TinyTeacher()
    cache = TeacherCache(tmp_path, t.cache_key(), (), mode="auto")

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("killed mid-write")

    monkeypatch.setattr(cache_mod, "save_file", broken)
    meta = cache.entry_meta("s", [0, 1], (16, 16))
    with pytest.raises(OSError):
        cache.store(meta, {"depth": torch.ones(2, 8, 8)})
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "teacher.json"]
    monkeypatch.undo()
    assert cache.load(meta) is None and cache.misses == 1


def test_frame_indices_resolution_and_layers_are_part_of_the_key(tmp_path):
    c = TeacherCache(tmp_path, "k", (2,))
    base = c.path_for(c.entry_meta("s", [0, 3], (16, 16)))
    assert base != c.path_for(c.entry_meta("s", [0, 4], (16, 16)))
    assert base != c.path_for(c.entry_meta("s", [0, 3], (32, 16)))
    assert base != c.path_for(c.entry_meta("t", [0, 3], (16, 16)))  # other pixels
    assert base != c.path_for(c.entry_meta("s", [0, 3], (16, 16), [0.0, 0.5]))  # frame times
    assert base != c.path_for(TeacherCache(tmp_path, "k", (2,), dtype="float16").entry_meta("s", [0, 3], (16, 16)))
    assert base != c.path_for(TeacherCache(tmp_path, "k", (2,), outputs=["depth"]).entry_meta("s", [0, 3], (16, 16)))
    assert base != TeacherCache(tmp_path, "k", (1, 2)).path_for(
        TeacherCache(tmp_path, "k", (1, 2)).entry_meta("s", [0, 3], (16, 16))
    )
    assert base.parent.parent != TeacherCache(tmp_path, "k2", (2,)).dir


def test_precompute_fills_then_hits(tmp_path):
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "run"), n=5, metric_teacher=tiny.TinyMetricTeacher())
    cfg = AccelerateTrainerConfig(batch_size=2, cache_dir=str(tmp_path / "c"))
    first = precompute(ctx, progress=False, config=cfg)
    assert first["samples"] == 5 and first["written"] == 10 and first["hits"] == 0  # teacher + metric teacher
    second = precompute(ctx, progress=False, config=cfg)
    assert second["written"] == 0 and second["hits"] == 10
    assert ctx.teacher.calls == 3  # 3 batches on the first pass, none on the second
