"""``geovr data synth`` run in-process through the plugin's register_commands hook."""

import argparse
import json

import pytest
from safetensors.torch import load_file

from geovr import load_plugins
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
