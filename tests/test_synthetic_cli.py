"""``geovr data synth`` run in-process through the plugin's register_commands hook."""

import argparse
import json

import pytest
from safetensors.torch import load_file

from geovr import load_plugins
from geovr.data.synthetic.cli import MARKER
from geovr.errors import UsageError


def _parser():
    parser = argparse.ArgumentParser(prog="geovr")
    load_plugins().add_commands(parser.add_subparsers(dest="command"))
    return parser


def _run(*argv):
    args = _parser().parse_args(["data", "synth", "--no-progress", *argv])
    return args.func(args)


def test_synth_writes_layout_and_is_idempotent(tmp_path):
    out = tmp_path / "ds"
    assert _run("--out", str(out), "--scenes", "2", "--frames", "4", "--size", "24", "32", "--seed", "1") == 0
    for name in ("scene_00000", "scene_00001"):
        assert (out / "videos" / f"{name}.mp4").stat().st_size > 0
        geo = load_file(str(out / "geometry" / f"{name}.safetensors"))
        assert geo["depth"].shape == (4, 24, 32) and geo["ids"].shape == (4, 24, 32)
        assert geo["intrinsics"].shape == (4, 3, 3) and geo["extrinsics"].shape == (4, 3, 4)
        meta = json.loads((out / "scenes" / f"{name}.json").read_text())
        assert meta["name"] == name and meta["objects"] and meta["camera"]["num_frames"] == 4
    lines = (out / "qa.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["id"] for r in recs] == list(range(len(recs))) and len(recs) >= 10
    assert {r["scene_name"] for r in recs} == {"scene_00000", "scene_00001"}
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    assert _run("--out", str(out), "--scenes", "2", "--frames", "4", "--size", "24", "32", "--seed", "1") == 0
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in before if p.suffix in (".mp4", ".safetensors"))


def test_synth_refuses_foreign_or_mismatched_directories(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="non-empty directory"):
        _run("--out", str(foreign), "--scenes", "1", "--frames", "2", "--size", "16", "16")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    out = tmp_path / "ds"
    _run("--out", str(out), "--scenes", "1", "--frames", "2", "--size", "16", "16")
    with pytest.raises(UsageError, match="different options"):
        _run("--out", str(out), "--scenes", "1", "--frames", "3", "--size", "16", "16")
    with pytest.raises(UsageError, match="even"):
        _run("--out", str(tmp_path / "odd"), "--scenes", "1", "--frames", "2", "--size", "15", "16")


def test_synth_walls_compass_paints_the_walls_and_keys_the_directory(tmp_path):
    plain, comp = tmp_path / "plain", tmp_path / "compass"
    common = ("--scenes", "1", "--frames", "2", "--size", "16", "16", "--seed", "3")
    assert _run("--out", str(plain), *common) == 0 and _run("--out", str(comp), *common, "--walls", "compass") == 0
    a = json.loads((plain / "scenes" / "scene_00000.json").read_text())["room"]
    b = json.loads((comp / "scenes" / "scene_00000.json").read_text())["room"]
    assert a["wall_colors"] is None and len({tuple(c) for c in b["wall_colors"]}) == 4
    assert {k: v for k, v in a.items() if k != "wall_colors"} == {k: v for k, v in b.items() if k != "wall_colors"}
    ga, gb = (load_file(str(d / "geometry" / "scene_00000.safetensors")) for d in (plain, comp))
    assert (ga["depth"] == gb["depth"]).all() and (ga["ids"] == gb["ids"]).all()
    assert (plain / "qa.jsonl").read_text() == (comp / "qa.jsonl").read_text()
    assert "walls" not in json.loads((plain / MARKER).read_text())  # the default keeps existing markers valid
    assert json.loads((comp / MARKER).read_text())["walls"] == "compass"
    with pytest.raises(UsageError, match="different options"):  # never mixes paintings in one directory
        _run("--out", str(comp), *common)


def test_synth_help_has_examples():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    data = sub.choices["data"]
    synth = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction)).choices["synth"]
    assert "geovr data synth --out" in synth.format_help()


def test_synth_ends_with_a_summary(tmp_path, capsys):
    out = tmp_path / "ds"
    assert _run("--out", str(out), "--scenes", "2", "--frames", "4", "--size", "24", "32") == 0
    err = capsys.readouterr().err
    n = len((out / "qa.jsonl").read_text().splitlines())
    assert f"2 scenes (2 rendered now, 0 already there), 8 frames of 24x32, {n} questions" in err
    assert "room_size_estimation 2" in err and "frames/s" in err and "annotations =" in err
    assert _run("--out", str(out), "--scenes", "2", "--frames", "4", "--size", "24", "32") == 0
    assert "(0 rendered now, 2 already there)" in capsys.readouterr().err


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synth_output_is_identical_for_any_worker_count(tmp_path):
    """One worker (rendering here with torch's threads, a writer thread encoding) and two forked workers
    (one thread each) write the same bytes: videos, geometry, scene files, qa.jsonl, images, tar shards."""
    from geovr.data.synthetic.cli import synthesize

    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary = synthesize(
            out,
            scenes=3,
            frames=6,
            size=(32, 48),
            seed=7,
            progress=False,
            workers=workers,
            compiled=False,
            fmt="wds",
            shard_size=4,
        )
        assert summary["workers"] == workers and summary["written"] == 3 and not summary["compiled"]
        runs[workers] = _files(out)
    assert sorted(runs[1]) == sorted(runs[2])
    assert any(k.startswith("shards/") for k in runs[1]) and any(k.startswith("images/") for k in runs[1])
    assert [k for k in runs[1] if runs[1][k] != runs[2][k]] == []


def test_synth_resumes_with_workers(tmp_path):
    """A second run with more workers than scenes left renders nothing and rewrites qa.jsonl identically."""
    from geovr.data.synthetic.cli import synthesize

    out = tmp_path / "ds"
    synthesize(out, scenes=2, frames=4, size=(16, 24), seed=2, progress=False, workers=2, compiled=False)
    before = _files(out)
    (out / "videos" / "scene_00001.mp4").unlink()
    summary = synthesize(out, scenes=2, frames=4, size=(16, 24), seed=2, progress=False, workers=2, compiled=False)
    assert summary["written"] == 1 and summary["workers"] == 1  # capped at the scenes to render
    assert _files(out) == before


def test_synth_reports_every_bad_option_at_once(tmp_path):
    from geovr.data.synthetic.cli import synthesize

    with pytest.raises(UsageError) as err:
        synthesize(
            tmp_path / "x",
            scenes=0,
            frames=2,
            size=(15, 16),
            seed=0,
            workers=0,
            preset="turbo",
            fmt="parquet",
            shard_size=0,
            fps=0,
            walls="striped",
        )
    msg = str(err.value)
    for part in (
        "--scenes",
        "--size",
        "--workers",
        "--preset",
        "turbo",
        "--format",
        "parquet",
        "--shard-size",
        "--fps",
        "--walls",
    ):
        assert part in msg, part
    assert not (tmp_path / "x").exists()  # nothing written for a bad command
    with pytest.raises(UsageError, match="--workers must be an integer >= 1"):
        _run("--out", str(tmp_path / "y"), "--scenes", "1", "--frames", "2", "--size", "16", "16", "--workers", "0")
    with pytest.raises(SystemExit):  # argparse: invalid choice
        _run("--out", str(tmp_path / "z"), "--scenes", "1", "--preset", "turbo")


def test_synth_compile_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch):
    """When torch.compile cannot work the run warns and renders eagerly (same files as --no-compile)."""
    import geovr.data.synthetic.render as render_mod
    from geovr.data.synthetic.cli import synthesize

    def broken(size, chunk=None):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(render_mod, "warm_up", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile does not work here.*InvalidCxxCompiler"):
        summary = synthesize(
            tmp_path / "c", scenes=2, frames=3, size=(16, 24), seed=1, progress=False, compiled=True, workers=2
        )
    assert summary["compiled"] is False and summary["written"] == 2
    synthesize(tmp_path / "e", scenes=2, frames=3, size=(16, 24), seed=1, progress=False, compiled=False, workers=2)
    assert _files(tmp_path / "c") == _files(tmp_path / "e")


def test_synth_compiles_by_default_only_for_big_jobs(tmp_path, monkeypatch):
    """Default (neither --compile nor --no-compile): a small job never tries to compile; a job of at least
    AUTO_COMPILE_PIXELS pixels does (here the attempt fails, which falls back to eager)."""
    import geovr.data.synthetic.cli as cli
    import geovr.data.synthetic.render as render_mod

    calls = []

    def record(size, chunk=None):
        calls.append(tuple(size))
        raise RuntimeError("compiler missing")

    monkeypatch.setattr(render_mod, "warm_up", record)
    monkeypatch.delenv("GEOVR_COMPILE_RENDERER", raising=False)
    assert (
        cli.synthesize(tmp_path / "a", scenes=2, frames=2, size=(16, 16), seed=0, progress=False, workers=1)["compiled"]
        is False
    )
    assert calls == []
    monkeypatch.setattr(cli, "AUTO_COMPILE_PIXELS", 2 * 2 * 16 * 16)
    with pytest.warns(RuntimeWarning, match="compiler missing"):
        cli.synthesize(tmp_path / "b", scenes=2, frames=2, size=(16, 16), seed=0, progress=False, workers=1)
    assert calls == [(16, 16)]
    with pytest.warns(RuntimeWarning):
        _run("--out", str(tmp_path / "c"), "--scenes", "1", "--frames", "2", "--size", "16", "16", "--compile")
    assert len(calls) == 2
    monkeypatch.setattr(cli, "AUTO_COMPILE_PIXELS", 1)
    _run("--out", str(tmp_path / "d"), "--scenes", "1", "--frames", "2", "--size", "16", "16", "--no-compile")
    assert len(calls) == 2


def test_synth_frames_per_second_covers_the_whole_job(tmp_path, monkeypatch):
    """The summary's time includes writing the conversation layouts, not only rendering."""
    import time

    import geovr.data.writers as writers
    from geovr.data.synthetic.cli import synthesize

    real = writers.convert

    def slow_convert(*args, **kwargs):
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr(writers, "convert", slow_convert)
    summary = synthesize(
        tmp_path / "s", scenes=1, frames=2, size=(16, 16), seed=0, progress=False, compiled=False, fmt="conversations"
    )
    assert summary["seconds"] >= 0.6
    assert summary["frames_per_second"] == pytest.approx(2 / summary["seconds"])
    assert (tmp_path / "s" / "conversations.jsonl").is_file() and (tmp_path / "s" / "images").is_dir()


def test_first_frame_equals_read_video(tmp_path):
    """``first_frame`` (uint8 straight from PyAV) is frame 0 of ``read_video`` without the float round trip."""
    import numpy as np
    import torch

    from geovr.data.video import first_frame, read_video, write_video

    rng = np.random.default_rng(0)
    write_video(tmp_path / "v.mp4", rng.integers(0, 256, (3, 16, 24, 3), dtype=np.uint8), fps=5)
    frames, _ = read_video(tmp_path / "v.mp4", indices=[0])
    expected = (frames[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()
    got = first_frame(tmp_path / "v.mp4")
    assert got.dtype == np.uint8 and got.shape == (16, 24, 3)
    assert np.array_equal(got, expected) and torch.is_tensor(frames)


def test_free_mask_matches_the_per_object_test():
    """The vectorised free-space mask equals testing one floor object at a time (bit for bit)."""
    import math

    import numpy as np

    from geovr.data.synthetic.camera import free_mask
    from geovr.data.synthetic.scene import generate_scene

    rng = np.random.default_rng(0)
    for seed in range(12):
        scene = generate_scene(seed)
        xy = rng.uniform([-0.5, -0.5], [scene.room.length + 0.5, scene.room.width + 0.5], size=(500, 2))
        ok = scene.room.contains(xy, 0.35)
        for o in scene.objects:
            if o.support:
                continue
            c, s = math.cos(o.yaw), math.sin(o.yaw)
            d = xy - np.asarray(o.center[:2])
            lx, ly = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
            ok &= ~((np.abs(lx) < o.size[0] / 2 + 0.25) & (np.abs(ly) < o.size[1] / 2 + 0.25))
        got = free_mask(scene, xy, 0.35, 0.25)
        assert got.dtype == bool and np.array_equal(got, ok) and 0 < ok.sum() < len(ok)
