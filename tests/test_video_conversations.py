"""``video_conversations``: conversation records (JSON array, JSONL, tar shards) written by ``geovr data synth
--format wds``, prompt cleaning, multi-turn, 2-fps seeking, mixtures, splits, exact resume, bad records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from geovr.data.collate import collate
from geovr.data.configs import VideoConversationsConfig
from geovr.data.conversations import VideoConversationsDataset, clean_prompt, iter_json_records
from geovr.data.counts import DataCounter
from geovr.data.seek import read_video_rate
from geovr.data.synthetic.cli import synthesize
from geovr.data.video import read_video_timed
from geovr.data.writers import convert, write_conversations, write_shards
from geovr.errors import DataError
from geovr.train.data import batch_stream

FPS = 8  # source videos: 24 frames at 8 fps = 3 s -> 6 frames at 2 fps


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    synthesize(root, scenes=2, frames=24, size=(48, 64), seed=3, fps=FPS, progress=False)
    out = convert(root, "wds", shard_size=3)
    assert len(out["shards"]) >= 3
    return root


def dataset(synth, **kw) -> VideoConversationsDataset:
    if "sources" not in kw:
        kw.setdefault("annotations", str(synth / "conversations.jsonl"))
        kw.setdefault("video_root", str(synth))
    cfg = VideoConversationsConfig(**kw)
    assert cfg.check() == []
    return VideoConversationsDataset(cfg, seed=kw.pop("seed", 0) if "seed" in kw else 0)


def raw_records(synth):
    return [rec for _, rec, _ in iter_json_records(synth / "conversations.jsonl")]


def test_registry_reaches_the_component_and_builds_it(synth):
    from geovr.plugins import get_registry

    spec = get_registry().get("dataset", "video_conversations")
    config = spec.parse_config({"annotations": str(synth / "conversations.jsonl"), "video_root": str(synth)})
    ds = spec.build(config)
    assert len(ds) == sum("video" in r for r in raw_records(synth))


def test_prompts_cleaned_multi_turn_kept_and_frames_at_2_fps_with_times(synth):
    ds = dataset(synth)
    recs = [r for r in raw_records(synth) if "video" in r]
    assert any(len(r["conversations"]) == 4 for r in recs)
    for k, rec in enumerate(recs):
        s = ds[k]
        human = rec["conversations"][0]["value"]
        assert human.startswith("<image>\nThese are frames of a video.\n")
        assert s["question"] == human.removeprefix("<image>\nThese are frames of a video.\n").strip()
        assert "<image>" not in s["question"] and "frames of a video" not in s["question"]
        assert [t["role"] for t in s["conversations"]] == ["user", "assistant"] * (len(rec["conversations"]) // 2)
        assert [t["text"] for t in s["conversations"][1::2]] == [t["value"] for t in rec["conversations"][1::2]]
        assert s["answer"] == rec["conversations"][1]["value"]
        assert s["frames"].shape == (6, 3, 48, 64)  # 3 s x 2 fps
        assert torch.equal(s["frame_indices"], torch.tensor([0, 5, 9, 14, 18, 23]))
        torch.testing.assert_close(s["frame_times"], s["frame_indices"].float() / FPS)
        assert s["source"] == "conversations" and s["skipped"] == []
    b = collate([ds[0], ds[1]])
    assert b.frame_times.shape == (2, 6) and b.conversations[0] == ds[0]["conversations"]


def test_clean_prompt_variants():
    assert clean_prompt("<video>\nThese are frames of a video.\nWhere?") == "Where?"
    assert clean_prompt("<image>How many?") == "How many?"
    assert clean_prompt("No placeholder.") == "No placeholder."


def write_gop_video(path, frames: int, fps: int, gop: int) -> None:
    """An H.264 video with a key frame every ``gop`` frames (so that seeking has somewhere to jump)."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"}
        for t in range(frames):
            img = np.full((48, 64, 3), (t * 7) % 256, dtype=np.uint8)
            img[:, : (t % 64)] = 255 - img[:, : (t % 64)]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("gop", [4, 250])
def test_seeking_gives_the_frames_of_a_full_decode(synth, tmp_path, gop):
    import io

    video = tmp_path / "gop.mp4"
    write_gop_video(video, frames=160, fps=8, gop=gop)  # 20 s -> 32 frames at 2 fps
    a = read_video_rate(video, seek=True)
    b = read_video_rate(video, seek=False)
    full, idx, times = read_video_timed(video, indices=b[1])
    assert len(a[1]) == 32 and torch.equal(a[1], b[1]) and torch.equal(a[1], idx)
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], full)
    torch.testing.assert_close(a[2], times)
    c = read_video_rate(io.BytesIO(video.read_bytes()), seek=True)  # in memory, as from a shard
    assert torch.equal(c[0], a[0])


def test_seeking_decodes_fewer_frames(tmp_path, monkeypatch):
    import av

    video = tmp_path / "gop.mp4"
    write_gop_video(video, frames=160, fps=8, gop=8)
    decoded = []
    real = av.container.InputContainer.decode

    def counting(self, *a, **k):
        for f in real(self, *a, **k):
            decoded.append(f.pts)
            yield f

    monkeypatch.setattr(av.container.InputContainer, "decode", counting)
    read_video_rate(video, fps=0.5, min_frames=4, max_frames=32, seek=True)  # 10 frames of 160
    seeking = len(decoded)
    decoded.clear()
    read_video_rate(video, fps=0.5, min_frames=4, max_frames=32, seek=False)
    assert len(decoded) == 160 and seeking < 160 // 2


def test_image_records_skipped_by_default_or_one_frame(synth):
    n_img = sum("image" in r for r in raw_records(synth))
    assert n_img == 2
    with_images = dataset(synth, video_only=False)
    assert len(with_images) == len(dataset(synth)) + n_img
    img = [with_images[k] for k in range(len(with_images)) if with_images[k]["question_type"] == "image_caption"]
    assert len(img) == 2 and all(s["frames"].shape == (1, 3, 48, 64) for s in img)
    assert img[0]["question"] == "What kind of place is this?"


def test_json_array_and_shards_read_the_same_samples_as_jsonl(synth, tmp_path):
    ref = dataset(synth, video_only=False)
    arr = write_conversations(synth, array=True)
    assert json.loads(arr.read_text())[0]["id"] == raw_records(synth)[0]["id"]
    as_array = dataset(synth, annotations=str(arr), video_only=False)
    before = {p for p in synth.rglob("*")}
    shards = VideoConversationsDataset(
        VideoConversationsConfig(shards=str(synth / "shards" / "shard-*.tar"), name="conversations", video_only=False)
    )
    assert len(ref) == len(as_array) == len(shards)
    for k in range(len(ref)):
        a, b, c = ref[k], as_array[k], shards[k]
        assert a["sample_id"] == b["sample_id"] == c["sample_id"]
        assert a["conversations"] == c["conversations"]
        assert torch.equal(a["frames"], c["frames"]) and torch.equal(a["frame_times"], c["frame_times"])
    assert {p for p in synth.rglob("*")} == before  # nothing extracted next to the shards


def test_mixture_weights_and_seeded_epoch_draws(synth):
    cfg = dict(
        sources=[
            {"name": "vsi", "annotations": str(synth / "conversations.jsonl"), "video_root": str(synth)},
            {"name": "vlm3r", "shards": str(synth / "shards" / "*.tar"), "weight": 0.5},
        ]
    )
    a, b = dataset(synth, **cfg), dataset(synth, **cfg)
    n = len(a.sources[0])
    assert a.counts == [n, round(0.5 * n)] and len(a) == n + round(0.5 * n)
    draws = []
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert [a.locate(k) for k in range(len(a))] == [b.locate(k) for k in range(len(b))]  # deterministic
        draws.append([a.locate(k)[1] for k in range(n, len(a))])
    assert draws[0] != draws[1] and all(len(set(d)) == len(d) for d in draws)
    sources = [
        s
        for _, _, batch in batch_stream(a, batch_size=4, seed=5, shuffle=True, world=1, rank=0, max_epochs=1)
        for s in batch.sources
    ]
    assert sources.count("vsi") == n and sources.count("vlm3r") == round(0.5 * n)
    assert sources != sorted(sources, key=["vsi", "vlm3r"].index)  # interleaved


def ids(stream):
    return [sid for _, _, b in stream for sid in b.sample_ids]


@pytest.mark.parametrize("workers", [0, 2])
def test_processes_and_workers_split_without_overlap_and_resume_exactly(synth, workers):
    ds = dataset(synth, shards=str(synth / "shards" / "*.tar"), annotations=None, video_root=None, name="wds")
    n = len(ds)
    per_rank = [
        ids(batch_stream(ds, batch_size=2, seed=1, shuffle=True, world=2, rank=r, num_workers=workers, max_epochs=1))
        for r in (0, 1)
    ]
    # disjoint except for the wrap-around padding that gives both ranks the same count (n odd: one sample)
    pad = -n % 2
    assert len(set(per_rank[0]) & set(per_rank[1])) <= pad
    assert len(per_rank[0]) == len(per_rank[1]) and len(per_rank[0]) + len(per_rank[1]) == n + pad
    assert len(set(per_rank[0]) | set(per_rank[1])) == n
    # an interrupted run read 2 batches of rank 0; the resumed one reads exactly the rest
    resumed = ids(
        batch_stream(
            ds, batch_size=2, seed=1, shuffle=True, world=2, rank=0, num_workers=workers, epoch=0, batch=2, max_epochs=1
        )
    )
    assert resumed == per_rank[0][4:]


def _bad_copy(synth, tmp_path) -> Path:
    """The synthetic set with three broken records and one missing video (written as JSONL and as shards)."""
    root = tmp_path / "bad"
    shutil.copytree(synth / "videos", root / "videos")
    shutil.copytree(synth / "images", root / "images")
    lines = (synth / "conversations.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["conversations"][1]["value"] = None  # null answer
    lines[1] = json.dumps(rec)
    rec = json.loads(lines[2])
    rec["conversations"][0]["value"] = ["a", "list"]  # list where a string belongs
    lines[2] = json.dumps(rec)
    lines[3] = lines[3][:40]  # truncated JSON
    rec = json.loads(lines[4])
    rec["video"] = "videos/missing.mp4"
    lines[4] = json.dumps(rec)
    (root / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_bad_records_raise_with_file_line_or_are_skipped_and_counted(synth, tmp_path):
    root = _bad_copy(synth, tmp_path)
    ann = str(root / "conversations.jsonl")
    with pytest.raises(DataError, match=r"conversations.jsonl:2: conversations\[1\]\.value must be a string, got null"):
        dataset(root, annotations=ann, on_error="raise")
    with pytest.raises(DataError, match=r"max_skip_fraction"):
        dataset(root, annotations=ann, max_skip_fraction=0.05)
    ds = dataset(root, annotations=ann, max_skip_fraction=0.5)
    assert ds.load_skip_counts() == {"conversations/bad_record": 2, "conversations/invalid_json": 1}
    batch = collate([ds[k] for k in range(len(ds))])  # record 5's video is missing
    assert batch.skipped == {"conversations/missing_media": 1}
    assert len(set(batch.sample_ids)) == len(ds) - 1  # replaced by the next good record
    counter = DataCounter(ds)
    counter.update(batch)
    m = counter.metrics()
    assert m["data/conversations/samples"] == len(ds)
    assert m["data/skipped/conversations/missing_media"] == 1 and m["data/skipped/conversations/bad_record"] == 2
    tight = dataset(root, annotations=ann, max_skip_fraction=0.25)  # 3 of 14 allowed: all used on load
    with pytest.raises(DataError, match="exceed max_skip_fraction"):
        DataCounter(tight).update(batch)
    # the same bad records in shards: named shard:key
    shards = write_shards(root, shard_size=4)
    with pytest.raises(DataError, match=r"shard-000000\.tar:000003: no video or image member"):
        VideoConversationsDataset(VideoConversationsConfig(shards=[str(p) for p in shards], on_error="raise"))
    sh = VideoConversationsDataset(
        VideoConversationsConfig(shards=[str(p) for p in shards], name="shards", max_skip_fraction=0.5)
    )
    assert sh.load_skip_counts() == {"shards/missing_media": 2}  # records 4 (bad JSON) and 5
    s = sh[1]
    assert [(b["reason"], b["where"].rsplit("/", 1)[-1]) for b in s["skipped"]] == [
        ("bad_record", "shard-000000.tar:000001"),
        ("bad_record", "shard-000000.tar:000002"),
    ]
    assert s["skipped"][0]["problem"] == "conversations[1].value must be a string, got null"
    assert s["sample_id"] == "shards:" + json.loads((root / "conversations.jsonl").read_text().splitlines()[5])["id"]
    with pytest.raises(DataError, match=r"shard-000000\.tar:000001: conversations\[1\]\.value must be a string"):
        sh.load(0, 1)


def test_evaluation_data_always_raises(synth, tmp_path):
    from geovr.data.conversations import build
    from geovr.protocols import BuildContext
    from geovr.recipe.schema import ComponentChoice

    root = _bad_copy(synth, tmp_path)
    cfg = VideoConversationsConfig(
        annotations=str(root / "conversations.jsonl"), video_root=str(root), max_skip_fraction=1.0
    )
    build(cfg, BuildContext())  # training: skipped
    choice = ComponentChoice(where="data.eval", kind="dataset", component="video_conversations", options={}, config=cfg)
    ctx = BuildContext(recipe=type("Recipe", (), {"data": {"eval": choice}})())
    with pytest.raises(DataError, match="conversations.jsonl:2"):
        build(cfg, ctx)


def test_config_problems_listed():
    cfg = VideoConversationsConfig(
        sources=[{"name": "a", "annotations": "x.jsonl"}, {"name": "a", "shards": "s/*.tar", "weight": 0, "colour": 1}],
        min_frames=8,
        max_frames=4,
    )
    problems = "\n".join(cfg.check())
    assert "unknown option 'colour'" in problems and "min_frames <= max_frames" in problems
    cfg = VideoConversationsConfig(
        sources=[{"name": "a", "annotations": "x.jsonl"}, {"name": "a", "shards": "s/*.tar", "weight": 0}]
    )
    problems = "\n".join(cfg.check())
    assert "needs a video_root" in problems or "need a video_root" in problems
    assert "weight must be > 0" in problems and "unique" in problems


def test_vlm3r_records_located_by_data_source_and_scene_name(synth, tmp_path):
    """VLM-3R's layout: a JSON array whose records name ``data_source`` + ``scene_name`` instead of a file."""
    (tmp_path / "scannetppv2").symlink_to(synth / "videos")
    recs = []
    for rec in raw_records(synth):
        if "video" in rec:
            rec = {k: v for k, v in rec.items() if k != "video"}
            rec.update(data_source="scannetpp", scene_name=Path(raw_records(synth)[0]["video"]).stem)
            recs.append(rec)
    (tmp_path / "vlm3r.json").write_text(json.dumps(recs, indent=1))
    ds = dataset(
        synth,
        sources=[
            {
                "name": "vlm3r",
                "annotations": str(tmp_path / "vlm3r.json"),
                "video_root": str(tmp_path),
                "data_source_dirs": {"scannetpp": "scannetppv2"},
            }
        ],
    )
    ref = dataset(synth)
    assert len(ds) == len(recs)
    s = ds[0]
    assert s["scene_id"] == "scene_00000" and torch.equal(s["frames"], ref[0]["frames"])
    bare = dataset(
        synth,
        sources=[{"name": "vlm3r", "annotations": str(tmp_path / "vlm3r.json"), "video_root": str(tmp_path)}],
        on_error="raise",
    )
    with pytest.raises(DataError, match=r"vlm3r.json:2: media file not found: .*scannetpp/scene_00000.mp4"):
        bare[0]


def test_bad_record_in_a_worker_raises_data_error_naming_it(synth, tmp_path):
    root = _bad_copy(synth, tmp_path)
    ds = dataset(root, annotations=str(root / "conversations.jsonl"), max_skip_fraction=0.5)
    ds.on_error = "raise"  # records checked on load were left out; record 5's video is missing at read time
    with pytest.raises(DataError, match=r"conversations.jsonl:5: media file not found: .*missing.mp4"):
        ids(batch_stream(ds, batch_size=2, seed=0, shuffle=False, world=1, rank=0, num_workers=2, max_epochs=1))
