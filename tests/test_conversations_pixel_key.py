"""`video_conversations` samples carry a `pixel_key`: questions on one video with the same frame choice share
it (one teacher-cache entry), another frame choice or another video does not."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

from geovr.data.configs import VideoConversationsConfig
from geovr.data.conversations import VideoConversationsDataset
from geovr.data.synthetic.cli import synthesize
from geovr.data.writers import convert
from geovr.train.teacher_cache import unique_groups


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("convkey")
    synthesize(root, scenes=2, frames=16, size=(32, 40), seed=5, fps=8, progress=False)
    convert(root, "conversations")
    return root


def _ds(synth, **kw):
    cfg = VideoConversationsConfig(annotations=str(synth / "conversations.jsonl"), video_root=str(synth), **kw)
    assert cfg.check() == []
    return VideoConversationsDataset(cfg)


def test_same_video_and_frames_share_the_key_other_frame_choice_does_not(synth):
    ds = _ds(synth)
    by_video = defaultdict(list)
    for i in range(len(ds)):
        _, j = ds.locate(i)
        _, rec = ds.sources[0].entries[j]
        by_video[rec["video"]].append(i)
    shared = [ix for ix in by_video.values() if len(ix) >= 2]
    assert shared and len(by_video) == 2, by_video  # several questions on each video
    a, b = shared[0][:2]
    sa, sb = ds[a], ds[b]
    assert sa["question"] != sb["question"] or sa["sample_id"] != sb["sample_id"]
    assert sa["pixel_key"] == sb["pixel_key"] == ds.pixel_key(a) == ds.pixel_key(b)
    assert torch.equal(sa["frames"], sb["frames"])  # the promise behind an equal key
    keys = {ds.pixel_key(i) for i in range(len(ds))}
    assert len(keys) == 2 and len(unique_groups(ds)) == 2
    # another frame choice of the same video: another key (and other frames)
    fewer = _ds(synth, max_frames=2, min_frames=2)
    assert fewer.pixel_key(a) != ds.pixel_key(a)
    assert fewer[a]["frames"].shape[0] != sa["frames"].shape[0]
    assert _ds(synth, fps=4.0).pixel_key(a) != ds.pixel_key(a)
    assert _ds(synth, image_size=[16, 20]).pixel_key(a) != ds.pixel_key(a)
    # another video: another key
    other = next(ix for v, ix in by_video.items() if a not in ix)[0]
    assert ds.pixel_key(other) != ds.pixel_key(a)
    assert json.loads(ds.pixel_key(a).split(":", 1)[1])["media"].endswith(".mp4")


def test_shard_samples_carry_a_key_without_decoding(synth):
    out = convert(synth, "wds", shard_size=3)
    ds = VideoConversationsDataset(VideoConversationsConfig(shards=[str(p) for p in out["shards"]]))
    keys = [ds.pixel_key(i) for i in range(len(ds))]
    assert ds[0]["pixel_key"] == keys[0]
    assert len(set(keys)) == len(keys)  # one member per sample in a shard: one identity each
