"""``geovr data synth --format conversations|wds`` and ``geovr data inspect`` through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from geovr.cli.main import main


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--scenes",
                "1",
                "--frames",
                "16",
                "--fps",
                "4",
                "--size",
                "32",
                "32",
                "--format",
                "wds",
                "--shard-size",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    return out


def test_synth_formats_write_conversations_and_shards(written):
    lines = (written / "conversations.jsonl").read_text().splitlines()
    assert len(sorted((written / "shards").glob("shard-*.tar"))) == -(-len(lines) // 3)
    first = json.loads(lines[0])
    assert first["video"] == "videos/scene_00000.mp4" and first["conversations"][0]["from"] == "human"


def test_inspect_json_counts_types_and_frames(written, capsys):
    assert main(["data", "inspect", str(written / "conversations.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    recs = [json.loads(x) for x in (written / "conversations.jsonl").read_text().splitlines()]
    assert report["records"] == report["valid"] == len(recs)
    assert report["images"] == 1 and report["videos"] == len(recs) - 1
    assert report["frame_histogram"] == {"1": 1, "8": len(recs) - 1}  # 4-s videos at 2 fps
    assert sum(report["question_types"].values()) == len(recs)
    assert report["first_records"][0]["id"] == recs[0]["id"]
    assert main(["data", "inspect", str(written / "shards"), "--json"]) == 0
    shards = json.loads(capsys.readouterr().out)
    assert {k: shards[k] for k in ("records", "videos", "frame_histogram", "question_types")} == {
        k: report[k] for k in ("records", "videos", "frame_histogram", "question_types")
    }


def test_inspect_reports_bad_records_and_a_wrong_path(written, tmp_path, capsys):
    lines = (written / "conversations.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["conversations"] = "not a list"
    (tmp_path / "bad.jsonl").write_text("\n".join([json.dumps(rec), *lines[1:], "{oops"]) + "\n")
    assert main(["data", "inspect", str(tmp_path / "bad.jsonl"), "--video-root", str(written)]) == 0
    out = capsys.readouterr().out
    assert "bad.jsonl:1: 'conversations' must be a list of turns, got str" in out
    assert f"bad.jsonl:{len(lines) + 1}: invalid JSON" in out
    assert main(["data", "inspect", str(tmp_path / "nothing_here")]) == 2


def test_inspect_reads_vsi_format_too(written, capsys):
    assert main(["data", "inspect", str(written / "qa.jsonl"), "--json", "--head", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    qa = [json.loads(x) for x in (written / "qa.jsonl").read_text().splitlines()]
    assert report["format"] == "vsi" and report["records"] == report["videos"] == len(qa)
    assert report["question_types"] == {
        t: sum(r["question_type"] == t for r in qa) for t in sorted({r["question_type"] for r in qa})
    }
    assert report["frame_histogram"] == {"8": len(qa)} and len(report["first_records"]) == 1
