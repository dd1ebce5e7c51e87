"""``video_qa`` over a directory written by ``geovr data synth``: frames within codec tolerance of the
renderer, exact geometry, resizing, and errors naming the path."""

import json

import pytest
import torch

from geovr import get_registry
from geovr.data.collate import collate
from geovr.data.synthetic.camera import make_trajectory
from geovr.data.synthetic.cli import synthesize
from geovr.data.synthetic.dataset import scene_seed
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import generate_scene
from geovr.errors import DataError


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa") / "ds"
    synthesize(out, scenes=2, frames=6, size=(32, 48), seed=4, progress=False)
    return out


def _build(synth_dir, **kw):
    opts = {
        "annotations": str(synth_dir / "qa.jsonl"),
        "video_root": str(synth_dir / "videos"),
        "geometry_root": str(synth_dir / "geometry"),
        "num_frames": 3,
        **kw,
    }
    return get_registry().get("dataset", "video_qa").build(opts)


def test_reads_frames_and_geometry(synth_dir):
    ds = _build(synth_dir)
    recs = [json.loads(x) for x in (synth_dir / "qa.jsonl").read_text().splitlines()]
    assert len(ds) == len(recs)
    s = ds[0]
    assert s["frame_indices"].tolist() == [0, 2, 5] and s["frames"].shape == (3, 3, 32, 48)
    assert s["question"] == recs[0]["question"] and s["answer"] == recs[0]["ground_truth"]
    scene = generate_scene(scene_seed(4, 0), name="scene_00000")
    traj = make_trajectory(scene, 6, (32, 48), scene_seed(4, 0))
    ref = render(scene, traj.intrinsics, traj.extrinsics, (32, 48))
    idx = s["frame_indices"]
    err = (s["frames"] - ref["rgb"][idx]).abs()
    assert err.mean() < 0.03, err.mean()  # H.264 round trip
    assert torch.equal(s["depth"], ref["depth"][idx])
    torch.testing.assert_close(s["extrinsics"], torch.as_tensor(traj.extrinsics[idx.numpy()], dtype=torch.float32))
    batch = collate([ds[0], ds[1]])
    assert batch.depth.shape == (2, 3, 32, 48) and batch.intrinsics.shape == (2, 3, 3, 3)


def test_resize_scales_intrinsics(synth_dir):
    s = _build(synth_dir, image_size=[16, 24], question_types=["room_size_estimation"])[0]
    full = _build(synth_dir, question_types=["room_size_estimation"])[0]
    assert s["frames"].shape == (3, 3, 16, 24) and s["depth"].shape == (3, 16, 24)
    K, K0 = s["intrinsics"], full["intrinsics"]
    torch.testing.assert_close(K[:, 0, 0], K0[:, 0, 0] / 2)
    torch.testing.assert_close(K[:, 0, 2], (K0[:, 0, 2] + 0.5) / 2 - 0.5)
    assert s["question_type"] == "room_size_estimation"


def test_missing_video_and_bad_jsonl_name_the_path(synth_dir, tmp_path):
    bad = tmp_path / "qa.jsonl"
    rec = {
        "id": 0,
        "dataset": "x",
        "scene_name": "ghost",
        "question_type": "room_size_estimation",
        "question": "?",
        "options": None,
        "ground_truth": "1",
    }
    bad.write_text(json.dumps(rec) + "\n")
    ds = _build(synth_dir, annotations=str(bad))
    with pytest.raises(DataError, match="ghost.mp4"):
        ds[0]
    bad.write_text(json.dumps(rec) + "\n{not json\n")
    with pytest.raises(DataError, match=r"qa.jsonl:2"):
        _build(synth_dir, annotations=str(bad))
    with pytest.raises(DataError, match="nothere.jsonl"):
        _build(synth_dir, annotations=str(tmp_path / "nothere.jsonl"))


def test_dataset_subdirectory_layout_and_frame_repeats(synth_dir, tmp_path):
    import shutil

    root = tmp_path / "videos"
    (root / "arkitscenes").mkdir(parents=True)
    shutil.copy(synth_dir / "videos" / "scene_00001.mp4", root / "arkitscenes" / "41069025.mp4")
    ann = tmp_path / "vsi.jsonl"
    rec = {
        "id": 7,
        "dataset": "arkitscenes",
        "scene_name": "41069025",
        "question_type": "object_rel_direction_easy",
        "question": "left or right?",
        "options": ["A. left", "B. right"],
        "ground_truth": "B",
    }
    ann.write_text(json.dumps(rec) + "\n")
    ds = (
        get_registry()
        .get("dataset", "video_qa")
        .build({"annotations": str(ann), "video_root": str(root), "num_frames": 8})
    )
    s = ds[0]
    assert s["frame_indices"].tolist() == [0, 1, 1, 2, 3, 4, 4, 5]  # 6-frame video, 8 uniform samples
    assert s["options"] == ["A. left", "B. right"] and s["answer"] == "B" and s["sample_id"] == "41069025:7"
    assert "depth" not in s
    assert torch.equal(s["frames"][1], s["frames"][2])
