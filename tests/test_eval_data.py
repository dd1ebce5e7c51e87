"""Reading VSI-Bench records (jsonl, parquet) and video frames (PyAV)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geovr.data.video import write_video
from geovr.errors import DataError
from geovr.eval.video import count_frames, read_frames, uniform_indices
from geovr.eval.vsibench import load_docs, missing_videos, video_path

REC = {
    "id": 7,
    "dataset": "scannet",
    "scene_name": "scene0001_00",
    "question_type": "route_planning",
    "question": "Route?",
    "options": ["A. left", "B. right"],
    "ground_truth": "A",
}


def test_jsonl_records_and_errors(tmp_path):
    (tmp_path / "test.jsonl").write_text(
        json.dumps(REC)
        + "\n\n"
        + json.dumps(dict(REC, id=8, options=None, question_type="object_counting", ground_truth=3))
        + "\n"
    )
    docs = load_docs(tmp_path)
    assert [d["id"] for d in docs] == ["7", "8"] and docs[1]["ground_truth"] == "3"
    assert video_path(tmp_path, docs[0]) == tmp_path / "scannet" / "scene0001_00.mp4"
    assert missing_videos(tmp_path, docs) == [tmp_path / "scannet" / "scene0001_00.mp4"]
    (tmp_path / "bad.jsonl").write_text(json.dumps(REC) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_docs(tmp_path, "bad.jsonl")
    (tmp_path / "noopt.jsonl").write_text(json.dumps(dict(REC, options=None)) + "\n")
    with pytest.raises(DataError, match="has no options"):
        load_docs(tmp_path, "noopt.jsonl")
    with pytest.raises(DataError, match="records file not found"):
        load_docs(tmp_path, "other.jsonl")


def test_parquet_records(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed; parquet VSI-Bench files need it")
    import pyarrow.parquet as pq

    rows = [REC, dict(REC, id=9, question_type="room_size_estimation", options=None, ground_truth="20.5")]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    docs = load_docs(tmp_path)
    assert [d["id"] for d in docs] == ["7", "9"] and docs[0]["options"] == ["A. left", "B. right"]
    assert docs[1]["options"] is None and docs[1]["ground_truth"] == "20.5"
    (tmp_path / "debiased").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp_path / "debiased" / "test.parquet")
    with pytest.raises(DataError, match="parquet files in 2 directories"):
        load_docs(tmp_path)
    assert len(load_docs(tmp_path, "debiased/test.parquet")) == 1


def test_uniform_indices():
    assert uniform_indices(100, 4).tolist() == [0, 33, 66, 99]
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]
    assert uniform_indices(0, 8).tolist() == []


def test_read_frames_roundtrip(tmp_path):
    # each frame is a flat grey level 10·i so decoded frames identify their index despite lossy coding
    frames = np.stack([np.full((32, 48, 3), 10 * i, np.uint8) for i in range(20)])
    path = tmp_path / "v.mp4"
    write_video(path, frames)
    assert count_frames(path) == 20
    got, idx = read_frames(path, 5)
    assert tuple(got.shape) == (5, 3, 32, 48) and 0 <= float(got.min()) and float(got.max()) <= 1
    assert idx.tolist() == [0, 4, 9, 14, 19]
    assert np.abs(got.reshape(5, -1).mean(1).numpy() * 255 - 10 * idx.numpy()).max() < 3
    assert read_frames(path, 50)[1].tolist() == list(range(20))
    with pytest.raises(DataError, match="video not found"):
        read_frames(tmp_path / "missing.mp4", 4)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="cannot decode video .*junk.mp4"):
        read_frames(tmp_path / "junk.mp4", 4)
